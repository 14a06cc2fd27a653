"""Ignition on a random DAG: cost against a hand-written nursery + Event version.

Case: 1,000 signals, three dependencies each on average, trivial bodies (one
checkpoint), DEPENDENCY_AWARE mode. The baseline starts one task per node
that waits on its dependencies' :class:`trio.Event` objects and then sets its
own: the minimum a correct hand-written DAG start needs (it reports nothing,
handles no failure and no timeout).

A second row runs the same DAG with ``run(nursery=...)`` (how services are
started): signals then live in the caller's nursery, each with its own
cancel scope, where ``run()`` otherwise covers them all with one.

Clock: CPU time of this process (``time.process_time``), interleaved A/B
rounds, median ratio (the harness); the target is <= 1.5x the baseline.
``--quick``: 3 rounds, sizes up to 500, no figure.

Scaling: the coordinator's best-of-15 time per (signal + dependency) at 250, 500, 1,000
and 2,000 signals; flat means linear in nodes + edges. The figure goes to
``docs/_static/ignition_scaling.png`` when matplotlib is installed (``bench``
dependency group).
"""

from __future__ import annotations

import gc
import pathlib
import random
import sys
from collections.abc import Callable

import trio

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _harness import QUICK, compare, measure, report, rounds

import trio_sagas

ROOT = pathlib.Path(__file__).parent.parent
# A smoke run draws into the git-ignored scratch folder: no published figure changes.
FIGURE = (ROOT / "benchmarks" / "scratch" if QUICK else ROOT / "docs" / "_static") / (
    "ignition_scaling.png"
)
SIZES = (250, 500) if QUICK else (250, 500, 1000, 2000)


def random_dag(size: int, seed: int = 7) -> list[list[int]]:
    """Node i depends on 0-6 distinct earlier nodes (3 on average once i >= 6)."""
    rng = random.Random(seed)
    return [
        rng.sample(range(index), min(index, rng.randint(0, 6))) for index in range(size)
    ]


async def body() -> None:
    await trio.lowlevel.checkpoint()


async def with_ignition(dag: list[list[int]]) -> None:
    ignition = trio_sagas.Ignition(
        mode=trio_sagas.ExecutionMode.DEPENDENCY_AWARE, global_timeout=None
    )
    for index, deps in enumerate(dag):
        ignition.add(f"s{index}", body, depends_on=[f"s{d}" for d in deps])
    result = await ignition.run()
    assert result.ok


async def with_ignition_in_nursery(dag: list[list[int]]) -> None:
    async with trio.open_nursery() as nursery:
        ignition = trio_sagas.Ignition(
            mode=trio_sagas.ExecutionMode.DEPENDENCY_AWARE, global_timeout=None
        )
        for index, deps in enumerate(dag):
            ignition.add(f"s{index}", body, depends_on=[f"s{d}" for d in deps])
        result = await ignition.run(nursery=nursery)
        assert result.ok


async def by_hand(dag: list[list[int]]) -> None:
    events = [trio.Event() for _ in dag]

    async def node(index: int, deps: list[int]) -> None:
        for dep in deps:
            await events[dep].wait()
        await body()
        events[index].set()

    async with trio.open_nursery() as nursery:
        for index, deps in enumerate(dag):
            nursery.start_soon(node, index, deps)


def best_of(fn: Callable[[], object], runs: int = rounds(15)) -> float:
    """Best of *runs*, each with the cyclic GC off (as timeit does)."""
    fn()  # warm-up
    times = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            times.append(measure(fn))
        finally:
            gc.enable()
    return min(times)


def main() -> None:
    dag = random_dag(1000)
    edges = sum(map(len, dag))
    rows = [
        compare(
            f"DAG 1000 signals / {edges} deps vs nursery+Event",
            lambda: trio.run(with_ignition, dag),
            lambda: trio.run(by_hand, dag),
            key="dag",
            items=1000 + edges,
            rounds=rounds(11),
            target=1.5,
        ),
        compare(
            "same DAG, run(nursery=...) vs nursery+Event",
            lambda: trio.run(with_ignition_in_nursery, dag),
            lambda: trio.run(by_hand, dag),
            key="dag_in_nursery",
            items=1000 + edges,
            rounds=rounds(11),
            target=1.5,
        ),
    ]
    scaling: dict[str, dict[str, float]] = {}
    print(
        f"\n{'signals':>8} {'deps':>6} {'ignition ms':>12} {'by hand ms':>11} "
        f"{'us/(n+e)':>9} {'by hand us/(n+e)':>17}"
    )
    for size in SIZES:
        sized = random_dag(size)
        units = size + sum(map(len, sized))
        # Best of 15: the least disturbed run is the best estimate of the cost.
        ignition_s = best_of(lambda dag=sized: trio.run(with_ignition, dag))
        hand_s = best_of(lambda dag=sized: trio.run(by_hand, dag))
        scaling[str(size)] = {
            "edges": units - size,
            "ignition_s": ignition_s,
            "by_hand_s": hand_s,
            "ignition_us_per_unit": ignition_s / units * 1e6,
            "by_hand_us_per_unit": hand_s / units * 1e6,
        }
        print(
            f"{size:>8} {units - size:>6} {ignition_s * 1e3:>12.2f} {hand_s * 1e3:>11.2f} "
            f"{ignition_s / units * 1e6:>9.2f} {hand_s / units * 1e6:>17.2f}"
        )
    per_unit = [row["ignition_us_per_unit"] for row in scaling.values()]
    spread = max(per_unit) / min(per_unit)
    print(f"time per (signal + dependency), largest / smallest size: {spread:.2f}")
    report("ignition", rows, extra={"scaling": scaling, "per_unit_spread": spread})
    plot(scaling)  # a smoke run draws into benchmarks/scratch/


def plot(scaling: dict[str, dict[str, float]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - bench group not installed
        print("matplotlib not installed: no figure")
        return
    sizes = [int(size) for size in scaling]
    units = [size + scaling[str(size)]["edges"] for size in sizes]
    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    axes.plot(
        units,
        [scaling[str(s)]["ignition_us_per_unit"] for s in sizes],
        "o-",
        label="Ignition (DEPENDENCY_AWARE)",
    )
    axes.plot(
        units,
        [scaling[str(s)]["by_hand_us_per_unit"] for s in sizes],
        "s--",
        label="hand-written nursery + trio.Event",
    )
    for size, unit in zip(sizes, units, strict=True):
        axes.annotate(
            f"{size} signals",
            (unit, scaling[str(size)]["ignition_us_per_unit"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
    axes.set_xscale("log")
    # Room at both ends for the point labels, which would cross the y axis
    # otherwise; ticks at the measured sizes, written out.
    axes.set_xlim(min(units) / 1.6, max(units) * 1.6)
    axes.set_xticks(units, [f"{u:,}" for u in units])
    axes.minorticks_off()
    top = max(
        max(r["ignition_us_per_unit"], r["by_hand_us_per_unit"])
        for r in scaling.values()
    )
    axes.set_ylim(0, top * 1.3)
    axes.set_xlabel("signals + dependencies")
    axes.set_ylabel("CPU µs per (signal + dependency)")
    axes.set_title("Random DAG start-up: cost per node + edge stays flat")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE)
    print(f"figure: {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
