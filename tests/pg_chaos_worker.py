"""One worker process of the PostgreSQL chaos test (tests/test_postgres_chaos.py).

    python pg_chaos_worker.py DSN SCHEMA LEDGER INDEX RUNS SEED LEASE LOG

Opens a PostgresJournal, runs ``run_worker`` (takes over lapsed runs) and
starts RUNS sagas, at most three at a time, logging each run id to LOG
before starting it: run ``wI-K`` is an ``order`` (rolled back after a crash)
for even K, a ``fulfil`` (``on_crash=RESUME``: finished after a crash) for
odd K. Every act and undo writes its effect to the LEDGER table on a
connection of its own (an effect outside the journal, like a payment API),
keyed by the step's idempotency key, then takes a while (a crash there
leaves an *uncertain* act whose effect happened). Runs until killed.
"""

from __future__ import annotations

import random
import sys
import threading
from typing import Any

import psycopg
import trio

import trio_sagas
from trio_sagas import Act, Chorus, OnCrash, Scene, StepContext, Uncertain

FULFIL_STEPS = ("reserve", "notify/email", "notify/sms", "pay/charge", "pay/capture")
"""The acts of a ``fulfil`` run, by path under the top scene, but its last (ship)."""


def business_failure(run_id: str) -> bool:
    """Whether a ``fulfil`` run's ship act fails (for every fourth odd run)."""
    return int(run_id.rpartition("-")[2]) % 8 == 7


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


def fulfil_scene(ledger: Ledger, rng: random.Random) -> Scene:
    """A RESUME saga: an act, a chorus, a nested saga, an act that may fail.

    The state counts each act's runs (``state[name] = 1`` once done): a
    resumed run restores the journaled state, so a finished run's state is
    the uncrashed run's, whatever crashed on the way. Its failure is decided
    by the run id (:func:`business_failure`), not by chance, so the checker
    knows which runs must succeed.
    """

    async def do(ctx: StepContext, state: dict[str, int]) -> str:
        assert ctx.run_id is not None
        if ctx.name == "ship" and business_failure(ctx.run_id):
            raise RuntimeError("address unknown")
        await ledger.write("do", ctx)
        await trio.sleep(rng.uniform(0.05, 0.5))
        state[ctx.name] = state.get(ctx.name, 0) + 1
        return f"{ctx.name}-receipt"

    async def undo(ctx: StepContext, state: dict[str, int]) -> None:
        await trio.sleep(rng.uniform(0.0, 0.2))
        await ledger.write("undo", ctx)
        state.pop(ctx.name, None)

    def act(name: str) -> Act:
        return Act(name, run=do, compensate=undo, uncertain=Uncertain.RETRY)

    return Scene(
        "fulfil",
        saga=True,
        on_crash=OnCrash.RESUME,
        steps=[
            act("reserve"),
            Chorus("notify", [act("email"), act("sms")]),
            Scene("pay", [act("charge"), act("capture")], saga=True),
            act("ship"),
        ],
    )


async def main(argv: list[str]) -> None:
    dsn, schema, table, index, runs, seed, lease, log_path = argv
    rng = random.Random(int(seed))
    async with trio_sagas.PostgresJournal(
        dsn, schema=schema, lease=float(lease)
    ) as journal:
        ledger = Ledger(dsn, table, journal.worker_id)
        scenes = {"order": scene(ledger, rng), "fulfil": fulfil_scene(ledger, rng)}
        limiter = trio.CapacityLimiter(3)

        async def one(run_id: str, name: str) -> None:
            async with limiter:
                try:
                    await trio_sagas.run_scene(
                        scenes[name], {}, journal=journal, run_id=run_id
                    )
                except trio_sagas.JournalError as exc:  # lost the run, or the server
                    print(f"{run_id}: {type(exc).__name__}: {exc}", flush=True)

        async with trio.open_nursery() as nursery:
            await nursery.start(trio_sagas.run_worker, journal, scenes)
            log = trio.Path(log_path)
            for k in range(int(runs)):
                run_id = f"w{index}-{k}"
                async with await log.open("a") as out:
                    await out.write(run_id + "\n")
                nursery.start_soon(one, run_id, "fulfil" if k % 2 else "order")
                await trio.sleep(rng.uniform(0.0, 0.3))


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
