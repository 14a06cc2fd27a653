"""PostgreSQL takeover latency and multi-process durable steps/s (issue 14).

Wall time (``time.perf_counter``), real processes, a throwaway PostgreSQL
(``fsync=on``) or ``TRIO_SAGAS_POSTGRES_DSN``.

* **takeover**: a worker process starts runs that park in a step; it is
  SIGKILLed; a live worker running ``run_worker`` (lease 2 s, poll every
  lease/2 with jitter) takes them over. Reported: seconds from the kill to
  each run's claim (epoch 2), as a distribution, against the bound
  lease + one poll interval.
* **steps/s**: 1, 4 and 8 worker processes each run 10-step sagas (eight
  at once) for a fixed window; durable steps/s counts the ActCompleted
  events the journal holds at the end. Interleaved with the same number of
  DBOS 3.4 processes (when ``dbos`` is installed: the ``bench`` group) doing
  the same 10 steps with its own ``@DBOS.workflow``/``@DBOS.step``, eight
  threads each, its system database on the same server.
"""

from __future__ import annotations

import functools
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time
import uuid

import psycopg
import trio

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg_server import start_server, stop_server  # noqa: E402

import trio_sagas  # noqa: E402

LEASE = 2.0
TRIALS = 5
RUNS_PER_TRIAL = 4
WINDOW = 5.0
PROCESSES = (1, 4, 8)
CONCURRENT = 8


async def _step(ctx: trio_sagas.StepContext, state: object) -> None:
    pass


async def _park(ctx: trio_sagas.StepContext, state: object) -> None:
    await trio.sleep_forever()


PARKED = trio_sagas.Scene(
    "parked", saga=True, steps=[trio_sagas.Act("wait", run=_park, compensate=_step)]
)
TEN = trio_sagas.Scene(
    "ten",
    saga=True,
    steps=[trio_sagas.Act(f"s{i}", run=_step, compensate=_step) for i in range(10)],
)


async def child_parked(dsn: str, schema: str) -> None:
    async with (
        trio_sagas.PostgresJournal(dsn, lease=LEASE, schema=schema) as journal,
        trio.open_nursery() as nursery,
    ):
        for i in range(RUNS_PER_TRIAL):
            run = functools.partial(
                trio_sagas.run_scene, PARKED, {}, journal=journal, run_id=f"p{i}"
            )
            nursery.start_soon(run)
        await trio.sleep(0.5)
        print("ready", flush=True)


async def child_steps(dsn: str, schema: str, tag: str) -> None:
    async with trio_sagas.PostgresJournal(dsn, lease=LEASE, schema=schema) as journal:
        # Started and registered: wait for the common window (on stdin).
        print("ready", flush=True)
        until = float(await trio.to_thread.run_sync(sys.stdin.readline))

        async def loop(k: int) -> None:
            n = 0
            while time.time() < until:
                await trio_sagas.run_scene(
                    TEN, {}, journal=journal, run_id=f"{tag}-{k}-{n}"
                )
                n += 1

        async with trio.open_nursery() as nursery:
            for k in range(CONCURRENT):
                nursery.start_soon(loop, k)


async def takeover_trial(dsn: str) -> list[float]:
    schema = f"b_{uuid.uuid4().hex[:10]}"
    child = subprocess.Popen(  # noqa: ASYNC220 -- started once, before timing
        [sys.executable, __file__, "parked", dsn, schema],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    async with (
        trio_sagas.PostgresJournal(dsn, lease=LEASE, schema=schema) as journal,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(trio_sagas.run_worker, journal, {"parked": PARKED})
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed = time.perf_counter()
        claimed: dict[str, float] = {}
        while len(claimed) < RUNS_PER_TRIAL:
            for record in await journal.runs():
                if record.epoch >= 2 and record.run_id not in claimed:
                    claimed[record.run_id] = time.perf_counter() - killed
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    child.stdout.close()
    return list(claimed.values())


def child_dbos(dsn: str, database: str) -> None:
    """DBOS 3.4 doing the same 10 steps (its own decorators), 8 threads."""
    import logging
    import threading

    from dbos import DBOS

    host = dict(p.split("=", 1) for p in dsn.split())["host"]
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "bench",
            "system_database_url": f"postgresql+psycopg://postgres@/{database}?host={host}",
        }
    )

    @DBOS.step()
    def step(n: int) -> int:
        return n + 1

    @DBOS.workflow()
    def saga() -> int:
        n = 0
        for _ in range(10):
            n = step(n)
        return n

    DBOS.launch()
    print("ready", flush=True)
    until = float(sys.stdin.readline())
    done = [0] * CONCURRENT

    def loop(k: int) -> None:
        while time.time() < until:
            saga()
            done[k] += 10

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(done), flush=True)
    DBOS.destroy()


def dbos_steps_per_second(dsn: str, processes: int) -> float | None:
    """DBOS's durable steps/s with *processes* processes (None: not installed)."""
    try:
        import dbos  # noqa: F401
    except ImportError:
        return None
    database = f"dbos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    procs = []
    for _ in range(processes):  # one at a time: each launch migrates
        proc = subprocess.Popen(
            [sys.executable, __file__, "dbos", dsn, database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        procs.append(proc)
    until = time.time() + WINDOW
    total = 0
    for proc in procs:
        out, _ = proc.communicate(f"{until}\n")
        total += int(out.split()[-1])
    return total / WINDOW


def steps_per_second(dsn: str, processes: int) -> float:
    schema = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True):
        pass
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "steps", dsn, schema, f"w{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for proc in procs:  # every process started, connected and registered
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    start = time.time()
    until = start + WINDOW
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{until}\n")
        proc.stdin.flush()
    for proc in procs:
        proc.communicate()
    with psycopg.connect(dsn, autocommit=True) as conn:
        (count,) = conn.execute(
            f'SELECT count(*) FROM "{schema}".events WHERE kind = %s AND written_at '
            "BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
            ("ActCompleted", start, until),
        ).fetchone()
    return count / WINDOW


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "parked":
        trio.run(child_parked, sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "dbos":
        child_dbos(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "steps":
        trio.run(child_steps, sys.argv[2], sys.argv[3], sys.argv[4])
        return
    given = os.environ.get("TRIO_SAGAS_POSTGRES_DSN")
    server = top = None
    if given:
        dsn = given
    else:
        server, top = start_server(durable=True)
        dsn = server.dsn
    try:
        delays: list[float] = []
        for _ in range(TRIALS):
            delays += trio.run(takeover_trial, dsn)
        rates, dbos_rates = {}, {}
        for n in PROCESSES:  # interleaved: ours, then DBOS, per process count
            rates[n] = steps_per_second(dsn, n)
            dbos_rates[n] = dbos_steps_per_second(dsn, n)
    finally:
        if server is not None and top is not None:
            stop_server(server, top)
    delays.sort()
    bound = LEASE + LEASE / 2 * 1.5
    print(f"takeover after SIGKILL, lease {LEASE} s, poll lease/2 +-50%: "
          f"{len(delays)} runs: min {delays[0]:.2f} s, median {statistics.median(delays):.2f} s, "
          f"max {delays[-1]:.2f} s; bound lease + longest poll = {bound:.2f} s; "
          f"within it: {sum(d <= bound for d in delays)}/{len(delays)}")  # fmt: skip
    for n, rate in rates.items():
        other = dbos_rates[n]
        versus = (
            "DBOS not installed"
            if other is None
            else f"DBOS 3.4 {other:,.0f} steps/s ({rate / other:.1f}x)"
        )
        print(f"{n} worker process(es) x {CONCURRENT} concurrent 10-step sagas: "
              f"{rate:,.0f} durable steps/s; {versus}")  # fmt: skip


if __name__ == "__main__":
    main()
