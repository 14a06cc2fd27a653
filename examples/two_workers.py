"""Two workers share a PostgreSQL journal; one dies, the other finishes its run.

Worker A (a child process) starts an order saga and is SIGKILLed while the
"charge" step runs. Worker B, in this process, polls for runs whose worker's
lease lapsed, takes A's run over (its epoch goes 1 -> 2) and rolls it back
exactly as ``recover`` does: the completed "reserve" and the uncertain
"charge" are undone, once (``trio_sagas.run_worker``).

Uses ``TRIO_SAGAS_POSTGRES_DSN`` when set; otherwise starts a throwaway
PostgreSQL (``initdb`` + ``pg_ctl`` from /usr/lib/postgresql/*/bin, as the
``postgres`` user when run as root) in a temporary directory and removes it
at the end. Real time: leases run on the database server's clock.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import trio

import trio_sagas
from trio_sagas import Act, RunStatus, Scene, StepContext

LEASE = 2.0


async def reserve(ctx: StepContext, state: dict[str, Any]) -> None:
    state["reserved"] = True


async def charge(ctx: StepContext, state: dict[str, Any]) -> None:
    print("worker A: charging ... (and about to be killed)", flush=True)
    await trio.sleep_forever()


async def undo(ctx: StepContext, state: dict[str, Any]) -> None:
    print(f"worker B: undo {ctx.name}", flush=True)


ORDER = Scene(
    "order",
    saga=True,
    steps=[
        Act("reserve", run=reserve, compensate=undo),
        Act("charge", run=charge, compensate=undo),
    ],
)


async def worker_a(dsn: str, schema: str) -> None:
    async with trio_sagas.PostgresJournal(dsn, lease=LEASE, schema=schema) as journal:
        await trio_sagas.run_scene(ORDER, {}, journal=journal, run_id="order-42")


async def charging(journal: trio_sagas.PostgresJournal) -> bool:
    return any(
        e.kind == "ActStarted" and e.step.endswith("charge")
        for e in await journal.events("order-42")
    )


async def status(journal: trio_sagas.PostgresJournal) -> RunStatus | None:
    record = await journal.get_run("order-42")
    return None if record is None else record.status


async def worker_b(dsn: str, schema: str, child: subprocess.Popen[str]) -> None:
    async with trio_sagas.PostgresJournal(dsn, lease=LEASE, schema=schema) as journal:
        # Wait until A is inside "charge", then kill it without warning.
        # (Polling the database: the event happens in another process.)
        while not await charging(journal):  # noqa: ASYNC110
            await trio.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed = trio.current_time()
        print("worker A: SIGKILLed", flush=True)
        # The takeover loop (polls every lease/2 for runs whose lease lapsed).
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(trio_sagas.run_worker, poll=LEASE / 2),
                journal,
                {"order": ORDER},
            )
            while await status(journal) is RunStatus.RUNNING:  # noqa: ASYNC110
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        record = await journal.get_run("order-42")
        assert record is not None
        waited = trio.current_time() - killed
        print(
            f"worker B: took the run over (epoch {record.epoch}) {waited:.1f} s "
            f"after the kill (lease {LEASE} s, poll every {LEASE / 2} s); "
            f"the run is {record.status.value}",
            flush=True,
        )


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A DSN: the given one, or a temporary cluster started here."""
    given = os.environ.get("TRIO_SAGAS_POSTGRES_DSN")
    if given:
        yield given
        return
    bindir = pathlib.Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    top = pathlib.Path(tempfile.mkdtemp(prefix="two_workers_"))
    if owner:
        shutil.chown(top, "postgres", "postgres")
    data, log = top / "data", top / "server.log"

    def run(*cmd: str) -> None:
        subprocess.run([*owner, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "-N", "--no-instructions")  # fmt: skip
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = ''\nunix_socket_directories = '{top}'\n")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start")
        yield f"host={top} user=postgres dbname=postgres"
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(top, ignore_errors=True)


def missing() -> str | None:
    """Why this example cannot run here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install '.[postgres]')"
    if not os.environ.get("TRIO_SAGAS_POSTGRES_DSN") and not glob.glob(
        "/usr/lib/postgresql/*/bin/initdb"
    ):
        return "no PostgreSQL server binaries (or set TRIO_SAGAS_POSTGRES_DSN)"
    return None


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker-a":
        trio.run(worker_a, sys.argv[2], sys.argv[3])
        return
    why = missing()
    if why is not None:
        print(f"two_workers.py needs PostgreSQL and is skipped here: {why}")
        return
    with throwaway_postgres() as dsn:
        schema = f"two_workers_{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, __file__, "--worker-a", dsn, schema], text=True
        )
        try:
            trio.run(worker_b, dsn, schema, child)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        print(f"done ({time.monotonic() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
