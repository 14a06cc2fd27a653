"""Recovery speed benchmark (issue 13, "Recovery speed").

Two cases, wall time (``time.perf_counter``: recovery waits on the disk and
on slow undos), on SQLite (WAL) with ``synchronous=FULL``:

* 1,000 killed 5-step runs (steps 1-4 completed, step 5 started: uncertain,
  so five undos each) recovered by one ``recover()`` call, against the raw
  single-row fsynced commit of the same disk, measured in the same rounds:
  the ratio says how many raw commits' time one recovered run costs, and
  ``runs_per_s`` the absolute rate (the issue's target: >= 500 runs/s).
* 20 killed runs whose undo takes 0.2 s (a slow remote call): the wall time
  (target: well under a second; one after another they would take 4 s).

The crashed runs are written beforehand (not measured), as a SIGKILLed
process leaves them, and their worker's lease is expired by an operator.
``commits_per_run`` is the journal's write transactions (syncs) per
recovered run: each run writes six times, and the group commit carries
many runs' writes per sync.
"""

from __future__ import annotations

import pathlib
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio
from _harness import QUICK, compare, report, rounds

import trio_sagas
from trio_sagas import Act, JournalEntry, Scene, SQLiteJournal, StepContext

STEPS = 5
RUNS = 100 if QUICK else 1000
SLOW_RUNS = 20
SLOW_UNDO = 0.2


async def _run(ctx: StepContext, state: object) -> str:
    return "receipt"


async def _undo(ctx: StepContext, state: object) -> None:
    pass


async def _slow_undo(ctx: StepContext, state: object) -> None:
    await trio.sleep(SLOW_UNDO)


def scene(first_undo: Callable[..., Any]) -> Scene:
    """The 5-step saga; *first_undo* undoes step 1 (the slow case's 0.2 s)."""
    return Scene(
        "order",
        [
            Act(f"s{i}", _run, compensate=first_undo if i == 1 else _undo)
            for i in range(1, STEPS + 1)
        ],
        saga=True,
    )


def _entries(run_id: str) -> list[JournalEntry]:
    kinds: list[tuple[str, str, bytes | None]] = [("SceneStarted", "order", None)]
    for i in range(1, STEPS + 1):
        kinds.append(("ActStarted", f"order/s{i}", None))
        if i < STEPS:  # the last step was running when the process died
            kinds.append(("ActCompleted", f"order/s{i}", b'"receipt"'))
    return [
        JournalEntry(run_id, seq, kind, step, 0.0, value=value)
        for seq, (kind, step, value) in enumerate(kinds)
    ]


def fabricate(db: pathlib.Path, count: int) -> None:
    """*count* runs as a SIGKILLed process leaves them (not measured)."""

    async def main() -> None:
        with SQLiteJournal(db, synchronous="NORMAL") as dead:
            for n in range(count):
                run_id = f"run-{n}"
                fence = await dead.create_run(run_id, scene="order", state=b"{}")
                await dead.append(fence, _entries(run_id))
            async with SQLiteJournal(db) as operator:
                await operator.expire_worker(dead.worker_id)

    trio.run(main)


COMMITS: list[int] = []
"""Write transactions (syncs) of each recovery measured, in order."""


def recovery(db: pathlib.Path, undo: Callable[..., Any], count: int) -> None:
    async def main() -> None:
        async with SQLiteJournal(db) as journal:  # synchronous=FULL
            report = await trio_sagas.recover(journal, [scene(undo)])
            COMMITS.append(journal.statistics().batches)
        assert len(report.results) == count, report.skipped[:3]

    trio.run(main)


def raw_commits(db: pathlib.Path, count: int) -> None:
    """*count* single-row commits, each synced (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER, payload BLOB)")
        for n in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, ?)", (n, b"x" * 100))
            conn.execute("COMMIT")
    finally:
        conn.close()


def main() -> None:
    measured = rounds(5, 2)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=pathlib.Path(__file__).parent) as tmp:
        folder = pathlib.Path(tmp)
        dbs = [folder / f"crashed-{n}.db" for n in range(measured + 1)]
        for db in dbs:
            fabricate(db, RUNS)
        pending = list(dbs)

        row = compare(
            f"recover {RUNS} killed {STEPS}-step runs vs {RUNS} raw commits",
            lambda: recovery(pending.pop(), _undo, RUNS),
            lambda: raw_commits(folder / "raw.db", RUNS),
            key="recover_killed_runs",
            items=RUNS,
            rounds=measured,
            timer=time.perf_counter,
        )
        row["runs_per_s"] = 1e6 / row["candidate_us"]
        # Syncs per recovered run (median over the rounds): the group commit
        # at work; each run writes six times (five undo intents, its end).
        row["commits_per_run"] = statistics.median(COMMITS) / RUNS
        COMMITS.clear()
        row["raw_commits_per_s"] = 1e6 / row["baseline_us"]
        row["target_runs_per_s"] = 500
        rows.append(row)

        slow = [folder / f"slow-{n}.db" for n in range(measured + 1)]
        for db in slow:
            fabricate(db, SLOW_RUNS)
        slow_pending = list(slow)
        row = compare(
            f"recover {SLOW_RUNS} runs with a {SLOW_UNDO} s undo vs {SLOW_RUNS} raw commits",
            lambda: recovery(slow_pending.pop(), _slow_undo, SLOW_RUNS),
            lambda: raw_commits(folder / "raw.db", SLOW_RUNS),
            key="recover_slow_undos",
            items=SLOW_RUNS,
            rounds=measured,
            timer=time.perf_counter,
        )
        row["wall_s"] = row["candidate_s"]
        row["one_after_another_s"] = SLOW_RUNS * SLOW_UNDO
        rows.append(row)
    report(
        "recovery",
        rows,
        extra={
            "runs_per_s": f"{rows[0]['runs_per_s']:.0f} (target >= 500)",
            "raw_commits_per_s": f"{rows[0]['raw_commits_per_s']:.0f}",
            "commits_per_run": f"{rows[0]['commits_per_run']:.3f}",
            "slow_undo_wall_s": f"{rows[1]['wall_s']:.3f} (target well under 1 s)",
        },
    )


if __name__ == "__main__":
    sys.exit(main())
