"""PostgreSQL journal benchmark: durable appends/s through PostgresJournal.

A throwaway PostgreSQL 15 cluster (``fsync=on``, ``synchronous_commit=on``:
every commit is flushed) is started for the run, or ``TRIO_SAGAS_POSTGRES_DSN``
is used. With 1, 4 and 8 concurrent writers, for a fixed wall-clock window:

* **journal**: each writer is a run appending one entry at a time (with the
  state) through ``PostgresJournal.append``, which checks worker, epoch,
  ``last_seq`` and the lease in the statement and group-commits concurrent
  runs' appends;
* **raw**: each writer has its own psycopg connection (in a thread) doing
  single-row ``INSERT`` commits: the physical reference, one commit per row.

Rounds are interleaved (raw, journal, raw, journal, ...) and the medians
reported, because the machine is shared. Wall time (``time.perf_counter``):
both sides wait on the WAL flush. Per-item cost is wall µs per append (or
commit) across all writers.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import threading
import time
from typing import Any

import psycopg
import trio

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _harness import report  # noqa: E402
from tests.pg_server import start_server, stop_server  # noqa: E402

import trio_sagas  # noqa: E402

WINDOW = 2.0
ROUNDS = 3
WRITERS = (1, 4, 8)


def raw(dsn: str, writers: int) -> float:
    """Single-row durable commits/s with *writers* connections in threads."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial, v bytea)")
    counts = [0] * writers
    stop = threading.Event()

    def writer(index: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO bench_raw (v) VALUES (%s)", (b"{}",))
                counts[index] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(WINDOW)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def journal(dsn: str, writers: int, round_no: int) -> tuple[float, float]:
    """Durable appends/s through PostgresJournal; and appends per statement."""

    async def main() -> tuple[float, float]:
        async with trio_sagas.PostgresJournal(dsn, schema="bench") as j:
            fences = [
                await j.create_run(f"w{round_no}-{writers}-{i}", scene="s", state=b"{}")
                for i in range(writers)
            ]
            batches = j._batcher.batches
            count = 0

            async def writer(fence: trio_sagas.Fence) -> None:
                nonlocal count
                seq = 0
                while trio.current_time() < deadline:
                    entry = trio_sagas.JournalEntry(
                        fence.run_id, seq, "ActStarted", "s/a", 0.0, {"i": seq}
                    )
                    await j.append(fence, [entry], state=b'{"n":1}')
                    seq += 1
                    count += 1

            start = time.perf_counter()
            deadline = trio.current_time() + WINDOW
            async with trio.open_nursery() as nursery:
                for fence in fences:
                    nursery.start_soon(writer, fence)
            elapsed = time.perf_counter() - start
            statements = j._batcher.batches - batches
            return count / elapsed, count / max(1, statements)

    return trio.run(main)


def main() -> None:
    import os

    given = os.environ.get("TRIO_SAGAS_POSTGRES_DSN")
    server = top = None
    if given:
        dsn = given
    else:
        server, top = start_server(durable=True)
        dsn = server.dsn
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    try:
        for writers in WRITERS:
            raw_rates, journal_rates, per_statement = [], [], []
            for round_no in range(ROUNDS):
                # Alternate which side goes first, so drift hits both alike.
                if round_no % 2:
                    rate, batch = journal(dsn, writers, round_no)
                    raw_rates.append(raw(dsn, writers))
                else:
                    raw_rates.append(raw(dsn, writers))
                    rate, batch = journal(dsn, writers, round_no)
                journal_rates.append(rate)
                per_statement.append(batch)
            # Time per item, journal / raw commit: lower is better.
            ratios = [r / j for r, j in zip(raw_rates, journal_rates, strict=True)]
            r, jr = statistics.median(raw_rates), statistics.median(journal_rates)
            rows.append(
                {
                    "case": f"PostgreSQL durable append, {writers} concurrent run(s)",
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "candidate_s": 1 / jr,
                    "baseline_s": 1 / r,
                    "rounds": ROUNDS,
                    "target": None,
                    "met": None,
                    "timer": "perf_counter",
                }
            )
            extra[f"{writers} writer(s)"] = (
                f"journal {jr:,.0f} appends/s ({1e6 / jr:,.0f} us each, "
                f"{statistics.median(per_statement):.1f} per statement); raw "
                f"single-row commits {r:,.0f}/s ({1e6 / r:,.0f} us each)"
            )
    finally:
        if server is not None and top is not None:
            stop_server(server, top)
    report("postgres", rows, extra)


if __name__ == "__main__":
    main()
