"""Cancellation tree benchmark (issue 9).

Cancel a 10,000-node tree whose nodes have 10,000 trio scopes open (one task
per node, blocked inside ``node.open()``), against cancelling the same number
of bare ``trio.CancelScope`` objects in a loop with the same reason text.
Only the ``cancel`` call is timed (building the tree and starting the tasks
is not). Linearity: time per node at 1,250 … 20,000 nodes. Memory: bytes
per node of a chain (each node the child of the previous) 100, 1,000 and
10,000 deep, measured with tracemalloc (must stay flat with depth).
"""

from __future__ import annotations

import gc
import math
import random
import statistics
import sys
import time
import tracemalloc

import trio
import trio.testing
from _harness import report

from trio_sagas import CancellationScope, CancelReason


def _tree(size: int, rng: random.Random) -> list[CancellationScope]:
    nodes = [CancellationScope("root")]
    for index in range(1, size):
        nodes.append(nodes[rng.randrange(index)].child(f"n{index}"))
    return nodes


async def _tree_cancel_seconds(size: int, seed: int) -> float:
    nodes = _tree(size, random.Random(seed))

    async def hold(node: CancellationScope, started: trio.Event) -> None:
        with node.open():
            started.set()
            await trio.sleep(math.inf)

    async with trio.open_nursery() as nursery:
        for node in nodes:
            started = trio.Event()
            nursery.start_soon(hold, node, started)
        await trio.testing.wait_all_tasks_blocked()
        assert sum(n.statistics().open_scopes for n in nodes) == size
        start = time.process_time()
        nodes[0].cancel(CancelReason.STEP_FAILED, triggered_by="bench", message="m")
        return time.process_time() - start


async def _flat_cancel_seconds(size: int) -> float:
    scopes = [trio.CancelScope() for _ in range(size)]

    async def hold(scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(math.inf)

    async with trio.open_nursery() as nursery:
        for scope in scopes:
            nursery.start_soon(hold, scope)
        await trio.testing.wait_all_tasks_blocked()
        reason = "step_failed (internal) in scope 'root', triggered by 'bench': m"
        start = time.process_time()
        for scope in scopes:
            scope.cancel(reason=reason)
        return time.process_time() - start


def chain_bytes_per_node(depth: int) -> float:
    """Memory a chain of *depth* nodes holds, per node (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        node = CancellationScope("root")
        chain = [node]
        for index in range(1, depth):
            node = node.child(f"n{index}")
            chain.append(node)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert chain[-1].path.count("/") == depth - 1
    return (after - before) / depth


def main() -> None:
    rounds = 3 if "--quick" in sys.argv else 9
    size = 10_000
    ratios, tree_times, flat_times = [], [], []
    for index in range(rounds):
        tree = trio.run(_tree_cancel_seconds, size, index)
        flat = trio.run(_flat_cancel_seconds, size)
        ratios.append(tree / flat)
        tree_times.append(tree)
        flat_times.append(flat)
    row = {
        "case": "cancel 10k-node tree, 10k open scopes / 10k bare scopes",
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "candidate_s": statistics.median(tree_times),
        "baseline_s": statistics.median(flat_times),
        "rounds": rounds,
        "target": None,
        "met": None,
        "timer": "process_time",
    }
    # Per-node cost by size, with the cyclic GC on (as in production) and
    # off: GC passes over the larger heap of 5,000+ blocked tasks add a
    # step that bare trio scopes show too; without them the cost is flat.
    scaling: dict[str, dict[int, float]] = {"gc_on": {}, "gc_off": {}}
    for n in (1_250, 2_500, 5_000, 10_000, 20_000):
        for mode in ("gc_on", "gc_off"):
            if mode == "gc_off":
                gc.disable()
            try:
                best = min(trio.run(_tree_cancel_seconds, n, seed) for seed in range(3))
            finally:
                gc.enable()
            scaling[mode][n] = round(best / n * 1e6, 2)
    report(
        "cancel",
        [row],
        {
            "tree_cancel_ms_10k": round(statistics.median(tree_times) * 1e3, 2),
            "us_per_node_by_size": scaling,
            "chain_bytes_per_node_by_depth": {
                depth: round(chain_bytes_per_node(depth))
                for depth in (100, 1_000, 10_000)
            },
        },
    )


if __name__ == "__main__":
    main()
