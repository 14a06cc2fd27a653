"""One worker process of the PostgreSQL chaos test (tests/test_postgres_chaos.py).

    python pg_chaos_worker.py DSN SCHEMA LEDGER INDEX RUNS SEED LEASE LOG

Opens a PostgresJournal, runs ``run_worker`` (takes over lapsed runs) and
starts RUNS order sagas, at most three at a time, logging each run id to LOG
before starting it. Every act and undo writes its effect to the LEDGER table
on a connection of its own (an effect outside the journal, like a payment
API), keyed by the step's idempotency key. Runs until killed.
"""

from __future__ import annotations

import random
import sys
import threading
from typing import Any

import psycopg
import trio

import trio_sagas
from trio_sagas import Act, Scene, StepContext


class Ledger:
    """Effects written outside the journal, one autocommit INSERT each."""

    def __init__(self, dsn: str, table: str, worker: str) -> None:
        self.dsn, self.table, self.worker = dsn, table, worker
        self.conn: Any = None
        self.lock = threading.Lock()

    def _write(self, action: str, key: str) -> None:
        run_id, _, step = key.partition("/")
        with self.lock:
            for _ in range(50):
                try:
                    if self.conn is None or self.conn.closed:
                        self.conn = psycopg.connect(self.dsn, autocommit=True)
                    self.conn.execute(
                        f"INSERT INTO {self.table} (run_id, step, action, key, worker) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        (run_id, step.split("#")[0], action, key, self.worker),
                    )
                    return
                except psycopg.OperationalError:
                    self.conn = None
                    threading.Event().wait(0.1)
            raise RuntimeError("ledger unreachable")

    async def write(self, action: str, ctx: StepContext) -> None:
        assert ctx.idempotency_key is not None
        await trio.to_thread.run_sync(self._write, action, ctx.idempotency_key)


def scene(ledger: Ledger, rng: random.Random) -> Scene:
    async def do(ctx: StepContext, state: Any) -> None:
        # A failing act fails before its effect (its own undo never runs).
        if ctx.name == "ship" and rng.random() < 0.35:
            raise RuntimeError("no courier")
        await ledger.write("do", ctx)
        await trio.sleep(rng.uniform(0.05, 0.6))

    async def undo(ctx: StepContext, state: Any) -> None:
        await trio.sleep(rng.uniform(0.0, 0.2))
        await ledger.write("undo", ctx)

    return Scene(
        "order",
        saga=True,
        steps=[
            Act(name, run=do, compensate=undo) for name in ("reserve", "charge", "ship")
        ],
    )


async def main(argv: list[str]) -> None:
    dsn, schema, table, index, runs, seed, lease, log_path = argv
    rng = random.Random(int(seed))
    async with trio_sagas.PostgresJournal(
        dsn, schema=schema, lease=float(lease)
    ) as journal:
        ledger = Ledger(dsn, table, journal.worker_id)
        order = scene(ledger, rng)
        limiter = trio.CapacityLimiter(3)

        async def one(run_id: str) -> None:
            async with limiter:
                try:
                    await trio_sagas.run_scene(
                        order, {}, journal=journal, run_id=run_id
                    )
                except trio_sagas.JournalError as exc:  # lost the run, or the server
                    print(f"{run_id}: {type(exc).__name__}: {exc}", flush=True)

        async with trio.open_nursery() as nursery:
            await nursery.start(trio_sagas.run_worker, journal, {"order": order})
            log = trio.Path(log_path)
            for k in range(int(runs)):
                run_id = f"w{index}-{k}"
                async with await log.open("a") as out:
                    await out.write(run_id + "\n")
                nursery.start_soon(one, run_id)
                await trio.sleep(rng.uniform(0.0, 0.3))


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
