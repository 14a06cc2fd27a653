"""Durable saga benchmark (issue 8).

A 10-step saga on the success path, journaled to SQLite (WAL) with
``synchronous=FULL`` (the default: every commit synced) and ``NORMAL``
(synced at checkpoints: safe against process crashes, not power loss),
against the same saga in memory, and against DBOS's step checkpointing on
SQLite when ``dbos`` is installed: in DBOS's default SQLite mode (the
rollback journal) and in WAL mode, as our journal runs (keys
``10_step_saga_sqlite_full_dbos_on_sqlite`` and ``..._wal``; per-step costs
in ``candidate_us`` / ``baseline_us``). Clock: wall time
(``time.perf_counter``), since the durable cases wait on the disk.

The runner writes 12 transactions per 10-step run: create, one per act
intent (carrying the previous act's completion) and the final record.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import pathlib
import sqlite3
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


def journal_mode(path: pathlib.Path) -> str:
    """The journal mode a new connection to the SQLite file *path* finds."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


@contextlib.contextmanager
def dbos_saga(
    directory: pathlib.Path, *, wal: bool = False
) -> Iterator[Callable[[], None] | None]:
    """DBOS: a workflow of 10 steps, each step's output checkpointed to SQLite.

    DBOS opens its system database in SQLite's default mode, the rollback
    journal (``journal_mode=DELETE``: two syncs per commit). With *wal* the
    file is created in WAL mode first: ``journal_mode=WAL`` is persistent in
    the file, and DBOS (3.4) sets no journal mode of its own, so its
    connections find WAL (one sync per commit at its default
    ``synchronous=FULL``, as our journal's FULL row).
    """
    try:
        from dbos import DBOS
    except ImportError:
        yield None
        return
    logging.getLogger("dbos").setLevel(logging.WARNING)
    database = directory / ("dbos-wal.sqlite" if wal else "dbos.sqlite")
    if wal:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    DBOS(
        config={
            "name": "bench",
            "system_database_url": f"sqlite:///{database}",
            "log_level": "WARNING",  # DBOS sets its logger's level from this
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
    mode = journal_mode(database)
    if mode != ("wal" if wal else "delete"):
        raise RuntimeError(f"DBOS's system database is in journal mode {mode!r}")
    try:
        yield lambda: [saga() for _ in range(DURABLE_RUNS)] and None
    finally:
        # The registry too: the next DBOS instance registers its own saga.
        DBOS.destroy(destroy_registry=True)


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
        for wal, label, suffix in (
            (False, "DBOS on SQLite", ""),
            (True, "DBOS on SQLite WAL", "_wal"),
        ):
            with dbos_saga(directory, wal=wal) as dbos:
                if dbos is None:
                    extra["dbos"] = "not installed"
                    break
                rows.append(
                    compare(
                        f"{STEPS}-step saga: SQLite FULL / {label}",
                        full,
                        dbos,
                        items=DURABLE_RUNS * STEPS,
                        rounds=rounds,
                        timer=time.perf_counter,
                    )
                )
                extra[f"steps_per_s_dbos_sqlite{suffix}"] = round(
                    steps_per_second(dbos, DURABLE_RUNS)
                )
    report("journal", rows, extra)


if __name__ == "__main__":
    main()
