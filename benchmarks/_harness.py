"""One measurement method for every benchmark: interleaved A/B rounds.

Each round runs the baseline and the candidate back to back (alternating
which goes first), so machine noise hits both alike; the figure reported is
the median of the per-round time ratios ``candidate / baseline``. Times are
CPU seconds of this process by default (``time.process_time``): the cases
are in-process and CPU-bound, and CPU time is not inflated by other work on
a shared 2-core machine. Pass ``timer=time.perf_counter`` for cases that wait
on I/O (disk syncs), where wall time is the honest measure. Results go
to stdout as a table and to ``benchmarks/results/<suite>.json``.
"""

from __future__ import annotations

import gc
import json
import pathlib
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

QUICK = "--quick" in sys.argv
"""A smoke run (``nox -s bench -- --quick``): few rounds, small sizes."""

RESULTS = pathlib.Path(__file__).parent / ("scratch" if QUICK else "results")
"""Full runs write the committed results the docs quote; quick runs a scratch
folder (git-ignored), so a smoke run never changes a published figure."""


def rounds(full: int, quick: int = 3) -> int:
    """How many measured rounds: *full*, or *quick* in a smoke run."""
    return quick if QUICK else full


def slug(case: str) -> str:
    """A row's default key: its case name in lower-case words joined by '_'."""
    return re.sub(r"[^a-z0-9]+", "_", case.lower()).strip("_")


Timer = Callable[[], float]


def measure(fn: Callable[[], object], timer: Timer = time.process_time) -> float:
    """Seconds of one call of *fn* on *timer*, after a full garbage collection."""
    gc.collect()
    start = timer()
    fn()
    return timer() - start


def compare(
    case: str,
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    key: str | None = None,
    items: int | None = None,
    rounds: int = 11,
    warmup: int = 1,
    target: float | None = None,
    timer: Timer = time.process_time,
) -> dict[str, Any]:
    """Interleaved A/B comparison; returns a result row.

    Args:
        case: Row name.
        key: The row's stable name for the pages that quote it
            (``|suite.KEY.ratio|``); the case's slug by default.
        items: How many items (tasks, steps, messages) one call handles;
            adds the per-item costs ``candidate_us``, ``baseline_us`` and
            ``overhead_us`` (candidate minus baseline) to the row.
        candidate: One full run of the thing measured (e.g. ``trio.run(...)``).
        baseline: One full run of what it is compared with.
        rounds: Measured rounds.
        warmup: Unmeasured rounds first.
        target: The ratio the issue asks for (``ratio <= target``), if any.
        timer: CPU time by default; ``time.perf_counter`` for I/O-bound cases.
    """
    for _ in range(warmup):
        candidate()
        baseline()
    ratios, cand_times, base_times = [], [], []
    for index in range(rounds):
        if index % 2:
            c = measure(candidate, timer)
            b = measure(baseline, timer)
        else:
            b = measure(baseline, timer)
            c = measure(candidate, timer)
        cand_times.append(c)
        base_times.append(b)
        ratios.append(c / b)
    ratio = statistics.median(ratios)
    row: dict[str, Any] = {
        "case": case,
        "key": key or slug(case),
        "ratio": ratio,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "candidate_s": statistics.median(cand_times),
        "baseline_s": statistics.median(base_times),
        "rounds": rounds,
        "target": target,
        "met": None if target is None else ratio <= target,
        "timer": getattr(timer, "__name__", str(timer)),
    }
    if items:
        cand_us = statistics.median(cand_times) / items * 1e6
        base_us = statistics.median(base_times) / items * 1e6
        row.update(
            items=items,
            candidate_us=cand_us,
            baseline_us=base_us,
            overhead_us=cand_us - base_us,
        )
    return row


def machine() -> dict[str, str]:
    """A short description of where the numbers were taken."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "processor": platform.processor() or "unknown",
    }


def report(
    suite: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> None:
    """Print a table of *rows* and write them as JSON for the docs and CI."""
    print(f"\n== {suite} ==")
    print(f"{'case':<48} {'ratio':>7} {'min':>7} {'max':>7} {'target':>7} {'met':>5}")
    for row in rows:
        target = "-" if row.get("target") is None else f"{row['target']:.2f}"
        met = "-" if row.get("met") is None else ("yes" if row["met"] else "NO")
        print(
            f"{row['case']:<48} {row['ratio']:7.3f} {row['ratio_min']:7.3f} "
            f"{row['ratio_max']:7.3f} {target:>7} {met:>5}"
        )
    for key, value in (extra or {}).items():
        print(f"{key}: {value}")
    RESULTS.mkdir(exist_ok=True)
    for row in rows:
        row.setdefault("key", slug(row["case"]))
    payload = {
        "suite": suite,
        "quick": QUICK,
        "machine": machine(),
        "rows": rows,
        "extra": extra or {},
    }
    (RESULTS / f"{suite}.json").write_text(json.dumps(payload, indent=2, default=str))
