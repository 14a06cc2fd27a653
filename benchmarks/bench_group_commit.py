"""Group commit benchmark (issue 15): durable steps/s under concurrency.

1, 10, 100 and 1,000 concurrent 10-step sagas (``run_scene`` with one
``SQLiteJournal``), ``synchronous=FULL`` and ``NORMAL``, next to the
physical reference measured interleaved in the same run: the raw rate of
single-row fsynced commits (``BEGIN IMMEDIATE; INSERT; COMMIT`` through
:mod:`sqlite3`, WAL mode, same directory and settings). Wall time
(``time.perf_counter``): the durable cases wait on the disk.

Each row's ratio is *seconds per durable step / seconds per raw commit*
(median over interleaved rounds; below 1: faster than one commit per step).
Goals: at 100 runs with FULL the ratio is <= 0.5 (>= 2x the raw commit
rate); at 1 run <= 1.5 (>= 0.8x of one commit per intent: a 10-step run
costs 12 commits); p99 step latency under 250 ms at 1,000 runs. A *step
latency* is the wall time from one step's ``run`` starting to the next
one's (it includes the intent write in between): nine per 10-step run.
The time from ``run_scene`` being called to the first step's ``run`` (the
run's creation and first intent, queued behind every other run started in
the same instant) is reported apart, as the *first-step* latency. Also:
reads (``get_run()``) timed while 1,000 sagas keep the write queue full, and
the machine's thread round trip (``trio.to_thread.run_sync`` of nothing):
every commit is a hand-off to the writer thread and back, which the raw
commits (run in the calling thread) do not pay.

The floor under one saga, measured in the same run: the journal's own
commit of one step's append (the fenced UPDATE and the INSERT, FULL),
run in the calling thread with no hand-off (``journal_commit_us_full``),
plus the thread round trip, times the commits a step costs
(``lone_floor_ratio_full``, as a ratio to the raw commit: what a journal
that commits off the event loop cannot go below on this machine).
"""

from __future__ import annotations

import itertools
import pathlib
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

import trio
from _harness import report

import trio_sagas

STEPS = 10
CONCURRENCY = (1, 10, 100, 1000)
RAW_COMMITS = 200
_ids = itertools.count()


def raw_commit_seconds(path: pathlib.Path, synchronous: str) -> float:
    """Seconds per single-row commit on this disk (the physical reference)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
        start = time.perf_counter()
        for _ in range(RAW_COMMITS):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (b"x" * 100,))
            conn.execute("COMMIT")
        return (time.perf_counter() - start) / RAW_COMMITS
    finally:
        conn.close()


def build_scene(latencies: list[float], firsts: list[float]) -> trio_sagas.Scene:
    async def do(ctx: trio_sagas.StepContext, state: dict[str, Any]) -> int:
        now = time.perf_counter()
        (latencies if state["n"] else firsts).append(now - state["t"])
        state["t"] = now
        state["n"] += 1
        return int(state["n"])

    async def undo(ctx: trio_sagas.StepContext, state: dict[str, Any]) -> None:
        state["n"] -= 1

    return trio_sagas.Scene(
        "bench",
        [trio_sagas.Act(f"step{i}", do, compensate=undo) for i in range(STEPS)],
        saga=True,
    )


def durable(
    path: pathlib.Path, synchronous: str, concurrency: int
) -> tuple[float, list[float], list[float], float]:
    """(seconds per step, step latencies, first-step latencies, seconds per
    read under load)."""
    runs = max(concurrency, 20)
    latencies: list[float] = []
    firsts: list[float] = []
    reads: list[float] = []
    scene = build_scene(latencies, firsts)

    async def main() -> float:
        async with trio_sagas.SQLiteJournal(path, synchronous=synchronous) as journal:  # type: ignore[arg-type]
            todo = iter(range(runs))

            async def worker() -> None:
                for _ in todo:
                    state = {"n": 0, "t": time.perf_counter()}
                    result = await trio_sagas.run_scene(
                        scene, state, journal=journal, run_id=f"r{next(_ids)}"
                    )
                    assert result.ok

            async def reader(done: trio.Event) -> None:
                while not done.is_set():
                    start = time.perf_counter()
                    await journal.get_run("r0")
                    reads.append(time.perf_counter() - start)
                    await trio.sleep(0.01)

            start = time.perf_counter()
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader, done)
                async with trio.open_nursery() as workers:
                    for _ in range(concurrency):
                        workers.start_soon(worker)
                done.set()
            return time.perf_counter() - start

    elapsed = trio.run(main)
    read = statistics.median(reads) if reads else 0.0
    return elapsed / (runs * STEPS), latencies, firsts, read


def thread_round_trip_seconds(count: int = 2000) -> float:
    """Seconds per ``trio.to_thread.run_sync`` of nothing on this machine.

    Every commit is run by the writer thread, so a lone saga pays at least
    this hand-off per commit on top of the sync (the raw commits, run in the
    calling thread, do not): the floor under the one-saga ratio.
    """

    async def main() -> float:
        start = time.perf_counter()
        for _ in range(count):
            await trio.to_thread.run_sync(int)
        return (time.perf_counter() - start) / count

    return trio.run(main)


def journal_commit_seconds(path: pathlib.Path, count: int = RAW_COMMITS) -> float:
    """Seconds per fenced append committed in the calling thread (FULL).

    The journal's own write of one step (one entry and the state), through
    its connection but without the hand-off to the writer thread: the
    journal-side part of the floor under one saga. Measurement only: it
    blocks the event loop on purpose.
    """
    from trio_sagas._journal._jobs import Append, encode_rows
    from trio_sagas._saga._journal import JournalEntry

    async def main() -> float:
        async with trio_sagas.SQLiteJournal(path, synchronous="FULL") as journal:
            fence = await journal.create_run("floor", scene="bench", state=b"{}")
            store, settings = journal._store, journal._settings
            start = time.perf_counter()
            for seq in range(count):
                entry = JournalEntry(
                    run_id="floor",
                    seq=seq,
                    kind="ActStarted",
                    step="bench/step0",
                    at=time.time(),
                    data={},
                    value=None,
                )
                rows = encode_rows(settings, fence, [entry])
                job = Append(settings.quoted, fence, rows, b'{"n":1}', None)
                (verdict,) = store._execute([job])
                verdict.unwrap()
            return (time.perf_counter() - start) / count

    return trio.run(main)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    rounds = 1 if "--quick" in sys.argv else 3
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"steps_per_run": STEPS, "commits_per_run": STEPS + 2}
    round_trip = statistics.median(thread_round_trip_seconds() for _ in range(3))
    extra["thread_round_trip_us"] = round(round_trip * 1e6, 1)
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        floors = []
        for index in range(rounds):
            raw = raw_commit_seconds(directory / "raw-floor.db", "FULL")
            commit = journal_commit_seconds(directory / f"floor-{index}.db")
            floors.append((commit, raw))
        commit = statistics.median(c for c, _ in floors)
        per_step = (STEPS + 2) / STEPS
        extra["journal_commit_us_full"] = round(commit * 1e6, 1)
        extra["lone_floor_ratio_full"] = round(
            statistics.median(per_step * (c + round_trip) / r for c, r in floors),
            2,
        )
        for synchronous in ("FULL", "NORMAL"):
            for concurrency in CONCURRENCY:
                raws, steps, lats, firsts, reads = [], [], [], [], []
                for index in range(rounds):
                    db = directory / f"{synchronous}-{concurrency}-{index}.db"
                    raw_db = directory / f"raw-{synchronous}.db"
                    if index % 2:
                        step, latency, first, read = durable(
                            db, synchronous, concurrency
                        )
                        raw = raw_commit_seconds(raw_db, synchronous)
                    else:
                        raw = raw_commit_seconds(raw_db, synchronous)
                        step, latency, first, read = durable(
                            db, synchronous, concurrency
                        )
                    raws.append(raw)
                    steps.append(step)
                    lats.extend(latency)
                    firsts.extend(first)
                    reads.append(read)
                ratios = [s / r for s, r in zip(steps, raws, strict=True)]
                target = {("FULL", 1): 1.5, ("FULL", 100): 0.5}.get(
                    (synchronous, concurrency)
                )
                ratio = statistics.median(ratios)
                rows.append(
                    {
                        "case": f"{synchronous} {concurrency} sagas: s/step / s/commit",
                        "ratio": ratio,
                        "ratio_min": min(ratios),
                        "ratio_max": max(ratios),
                        "candidate_s": statistics.median(steps),
                        "baseline_s": statistics.median(raws),
                        "rounds": rounds,
                        "target": target,
                        "met": None if target is None else ratio <= target,
                        "timer": "perf_counter",
                    }
                )
                key = f"{synchronous.lower()}_{concurrency}"
                extra[f"steps_per_s_{key}"] = round(1 / statistics.median(steps))
                extra[f"raw_commits_per_s_{key}"] = round(1 / statistics.median(raws))
                extra[f"p50_step_ms_{key}"] = round(percentile(lats, 0.5) * 1e3, 2)
                extra[f"p99_step_ms_{key}"] = round(percentile(lats, 0.99) * 1e3, 2)
                extra[f"p50_first_step_ms_{key}"] = round(
                    percentile(firsts, 0.5) * 1e3, 2
                )
                extra[f"p99_first_step_ms_{key}"] = round(
                    percentile(firsts, 0.99) * 1e3, 2
                )
                extra[f"read_ms_under_load_{key}"] = round(
                    statistics.median(reads) * 1e3, 3
                )
    extra["p99_goal_ms_1000"] = 250
    report("group_commit", rows, extra)


if __name__ == "__main__":
    main()
