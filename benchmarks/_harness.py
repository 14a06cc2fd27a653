"""One measurement method for every benchmark: interleaved A/B rounds.

Each round runs the baseline and the candidate back to back (alternating
which goes first), so machine noise hits both alike; the figure reported is
the median of the per-round time ratios ``candidate / baseline``. Results go
to stdout as a table and to ``benchmarks/results/<suite>.json``.
"""

from __future__ import annotations

import json
import pathlib
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

RESULTS = pathlib.Path(__file__).parent / "results"


def measure(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of *fn*."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    case: str,
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    rounds: int = 11,
    warmup: int = 1,
    target: float | None = None,
) -> dict[str, Any]:
    """Interleaved A/B comparison; returns a result row.

    Args:
        case: Row name.
        candidate: One full run of the thing measured (e.g. ``trio.run(...)``).
        baseline: One full run of what it is compared with.
        rounds: Measured rounds.
        warmup: Unmeasured rounds first.
        target: The ratio the issue asks for (``ratio <= target``), if any.
    """
    for _ in range(warmup):
        candidate()
        baseline()
    ratios, cand_times, base_times = [], [], []
    for index in range(rounds):
        if index % 2:
            c = measure(candidate)
            b = measure(baseline)
        else:
            b = measure(baseline)
            c = measure(candidate)
        cand_times.append(c)
        base_times.append(b)
        ratios.append(c / b)
    ratio = statistics.median(ratios)
    return {
        "case": case,
        "ratio": ratio,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "candidate_s": statistics.median(cand_times),
        "baseline_s": statistics.median(base_times),
        "rounds": rounds,
        "target": target,
        "met": None if target is None else ratio <= target,
    }


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
    payload = {"suite": suite, "machine": machine(), "rows": rows, "extra": extra or {}}
    (RESULTS / f"{suite}.json").write_text(json.dumps(payload, indent=2, default=str))
