"""Durable saga benchmark (issue 8).

A 10-step saga on the success path, journaled to SQLite (WAL) with
``synchronous=FULL`` (the default: every commit synced) and ``NORMAL``
(synced at checkpoints: safe against process crashes, not power loss),
against the same saga in memory, and against DBOS's step checkpointing on
SQLite when ``dbos`` is installed. Wall time (``time.perf_counter``): the
durable cases wait on the disk.

The runner writes 12 transactions per 10-step run: create, one per act
intent (carrying the previous act's completion) and the final record.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import trio
from _harness import compare, report

# The same 10-step scene as the in-memory saga benchmark, so the two compare.
from bench_saga import STEPS, scene

import trio_sagas

SCENE = scene(STEPS)
DURABLE_RUNS = 20
MEMORY_RUNS = 20
_ids = itertools.count()


def durable(path: pathlib.Path, synchronous: str) -> Callable[[], None]:
    """One trio.run of DURABLE_RUNS runs, the journal opened inside it.

    A journal's worker lease lives on one trio clock, so each trio.run opens
    its own (``async with``: registered once, one heartbeat).
    """

    async def runs() -> None:
        async with trio_sagas.SQLiteJournal(path, synchronous=synchronous) as journal:  # type: ignore[arg-type]
            for _ in range(DURABLE_RUNS):
                result = await trio_sagas.run_scene(
                    SCENE, {"n": 0}, journal=journal, run_id=f"r{next(_ids)}"
                )
                assert result.ok

    return lambda: trio.run(runs)


def in_memory() -> None:
    async def runs() -> None:
        for _ in range(MEMORY_RUNS):
            result = await trio_sagas.run_scene(SCENE, {"n": 0})
            assert result.ok

    trio.run(runs)


@contextlib.contextmanager
def dbos_saga(directory: pathlib.Path) -> Iterator[Callable[[], None] | None]:
    """DBOS: a workflow of 10 steps, each step's output checkpointed to SQLite."""
    try:
        from dbos import DBOS
    except ImportError:
        yield None
        return
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "bench",
            "system_database_url": f"sqlite:///{directory}/dbos.sqlite",
        }
    )

    @DBOS.step()
    def step(state: dict[str, int]) -> int:
        state["n"] += 1
        return state["n"]

    @DBOS.workflow()
    def saga() -> int:
        state = {"n": 0}
        for _ in range(STEPS):
            step(state)
        return state["n"]

    DBOS.launch()
    try:
        yield lambda: [saga() for _ in range(DURABLE_RUNS)] and None
    finally:
        DBOS.destroy()


def steps_per_second(fn: Callable[[], object], runs: int) -> float:
    start = time.perf_counter()
    fn()
    return runs * STEPS / (time.perf_counter() - start)


def main() -> None:
    rounds = 3 if "--quick" in sys.argv else 7
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        full = durable(directory / "full.db", "FULL")
        normal = durable(directory / "normal.db", "NORMAL")
        rows = [
            compare(
                f"{STEPS}-step saga: SQLite FULL / in memory",
                full,
                in_memory,
                rounds=rounds,
                timer=time.perf_counter,
            ),
            compare(
                f"{STEPS}-step saga: SQLite NORMAL / in memory",
                normal,
                in_memory,
                rounds=rounds,
                timer=time.perf_counter,
            ),
        ]
        extra: dict[str, Any] = {
            "transactions_per_run": 12,
            "steps_per_s_sqlite_full": round(steps_per_second(full, DURABLE_RUNS)),
            "steps_per_s_sqlite_normal": round(steps_per_second(normal, DURABLE_RUNS)),
            "steps_per_s_in_memory": round(steps_per_second(in_memory, MEMORY_RUNS)),
        }
        with dbos_saga(directory) as dbos:
            if dbos is None:
                extra["dbos"] = "not installed"
            else:
                rows.append(
                    compare(
                        f"{STEPS}-step saga: SQLite FULL / DBOS on SQLite",
                        full,
                        dbos,
                        rounds=rounds,
                        timer=time.perf_counter,
                    )
                )
                extra["steps_per_s_dbos_sqlite"] = round(
                    steps_per_second(dbos, DURABLE_RUNS)
                )
    report("journal", rows, extra)


if __name__ == "__main__":
    main()
