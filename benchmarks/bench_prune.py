"""Retention: ``SQLiteJournal.prune`` on a journal of a million runs.

Wall time (the work is the disk's). The journal is filled directly with SQL
in the journal's own schema (a million runs through ``run_scene`` would take
longer than the benchmark): ``RUNS`` finished runs, three events each, half
of them older than the cut-off, plus a few RUNNING and NEEDS_INTERVENTION
runs that must survive. Measured in one run:

- the prune itself: seconds, runs deleted per second;
- how long a concurrent writer waits while the prune runs (p50 and max of
  one small append every 10 ms): prune goes in transactions of
  ``PRUNE_CHUNK`` runs, so a run's own writes interleave with it;
- the raw single-row fsynced commit rate of the same disk (the physical
  reference), measured just before.

``--quick`` uses 20,000 runs.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import statistics
import tempfile
import time

import trio
from _harness import QUICK, report

from trio_sagas import JournalEntry, RunStatus, SQLiteJournal
from trio_sagas._journal._sqlite import PRUNE_CHUNK

RUNS = 20_000 if QUICK else 1_000_000
EVENTS = 3


def raw_commit_rate(directory: pathlib.Path, commits: int = 200) -> float:
    """Single-row fsynced commits per second on this disk (synchronous=FULL)."""
    path = directory / "raw.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (x INTEGER)")
    start = time.perf_counter()
    for index in range(commits):
        conn.execute("INSERT INTO t VALUES (?)", (index,))
    elapsed = time.perf_counter() - start
    conn.close()
    return commits / elapsed


def fill(path: pathlib.Path) -> None:
    """RUNS finished runs (half old) with EVENTS events each, plus survivors."""

    async def create() -> None:
        with SQLiteJournal(path) as journal:
            await journal.runs()  # the file and schema, as the journal makes them

    trio.run(create)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    now = time.time()
    data = json.dumps({"attempts": 1})
    conn.execute("BEGIN")
    for start in range(0, RUNS, 10_000):
        ids = [f"run-{i:07d}" for i in range(start, min(RUNS, start + 10_000))]
        old = [now - 7200 if int(r[4:]) % 2 == 0 else now for r in ids]
        conn.executemany(
            "INSERT INTO runs (run_id, scene, status, owner, state, created_at, "
            "updated_at, last_seq) VALUES (?, 'order', ?, NULL, x'7b7d', ?, ?, ?)",
            [
                (r, "succeeded" if i % 3 else "compensated", t, t, EVENTS - 1)
                for i, (r, t) in enumerate(zip(ids, old, strict=True))
            ],
        )
        conn.executemany(
            "INSERT INTO events (run_id, seq, kind, step, at, written_at, data) "
            "VALUES (?, ?, 'ActCompleted', 'order/a', 0, ?, ?)",
            [
                (r, s, t, data)
                for r, t in zip(ids, old, strict=True)
                for s in range(EVENTS)
            ],
        )
    for status in ("running", "needs_intervention"):
        conn.execute(
            "INSERT INTO runs (run_id, scene, status, owner, state, created_at, "
            "updated_at, last_seq) VALUES (?, 'order', ?, NULL, NULL, 0, 0, -1)",
            (f"keep-{status}", status),
        )
    conn.execute("COMMIT")
    conn.close()


async def measure(path: pathlib.Path) -> dict[str, float]:
    waits: list[float] = []
    async with SQLiteJournal(path) as journal:
        fence = await journal.create_run("writer", scene="order", state=b"{}")
        done = trio.Event()
        result: dict[str, float] = {}

        async def pruner() -> None:
            start = time.perf_counter()
            deleted = await journal.prune(older_than=3600)
            result["prune_s"] = time.perf_counter() - start
            result["deleted"] = deleted
            done.set()

        async def writer() -> None:
            seq = 0
            while not done.is_set():
                entry = JournalEntry(
                    run_id="writer", seq=seq, kind="ActStarted", step="w/a", at=0.0
                )
                start = time.perf_counter()
                await journal.append(fence, [entry])
                waits.append(time.perf_counter() - start)
                seq += 1
                await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pruner)
            nursery.start_soon(writer)
        left = {r.run_id for r in await journal.runs(status=RunStatus.RUNNING)}
        assert "keep-running" in left
        needs = await journal.get_run("keep-needs_intervention")
        assert needs is not None
    result["write_wait_p50_ms"] = statistics.median(waits) * 1e3
    result["write_wait_max_ms"] = max(waits) * 1e3
    result["writes_during_prune"] = len(waits)
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        raw = raw_commit_rate(directory)
        path = directory / "journal.db"
        start = time.perf_counter()
        fill(path)
        fill_s = time.perf_counter() - start
        size = path.stat().st_size
        result = trio.run(measure, path)
    deleted = result["deleted"]
    assert deleted == RUNS // 2, deleted
    row = {
        "case": f"prune {deleted:,} of {RUNS:,} finished runs ({EVENTS} events each)",
        "key": "prune",
        "ratio": result["prune_s"] / (deleted / raw),
        "ratio_min": result["prune_s"] / (deleted / raw),
        "ratio_max": result["prune_s"] / (deleted / raw),
        "rounds": 1,
        "target": None,
        "met": None,
        "timer": "perf_counter",
        "runs": RUNS,
        "deleted": deleted,
        "prune_s": result["prune_s"],
        "pruned_per_s": deleted / result["prune_s"],
        "per_run_us": result["prune_s"] / deleted * 1e6,
        "raw_commits_per_s": raw,
        "write_wait_p50_ms": result["write_wait_p50_ms"],
        "write_wait_max_ms": result["write_wait_max_ms"],
        "writes_during_prune": result["writes_during_prune"],
        "journal_bytes": size,
        "chunk": PRUNE_CHUNK,
    }
    print(
        f"filled {RUNS:,} runs ({size / 2**20:.0f} MiB) in {fill_s:.1f} s; "
        f"raw fsynced commits: {raw:,.0f}/s"
    )
    print(
        f"prune: {deleted:,} runs in {result['prune_s']:.2f} s "
        f"({row['pruned_per_s']:,.0f} runs/s, {row['per_run_us']:.1f} us per run); "
        f"a concurrent writer waited p50 {result['write_wait_p50_ms']:.1f} ms, "
        f"max {result['write_wait_max_ms']:.1f} ms over "
        f"{result['writes_during_prune']} writes"
    )
    report("prune", [row])


if __name__ == "__main__":
    main()
