"""Saga runner benchmark (issue 5).

A 10-step in-memory saga on the success path: ``run_scene`` against a
hand-written try/except saga making the same calls (target ratio <= 5, aim
2). Also per-run memory: bytes allocated and kept per run (tracemalloc).
"""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

import trio
from _harness import compare, report

import trio_sagas

STEPS = 10
RUNS = 200


async def do(ctx: trio_sagas.StepContext, state: dict[str, int]) -> int:
    state["n"] += 1
    return state["n"]


async def undo(ctx: trio_sagas.StepContext, state: dict[str, int]) -> None:
    state["n"] -= 1


SCENE = trio_sagas.Scene(
    "bench",
    [trio_sagas.Act(f"step{i}", do, compensate=undo) for i in range(STEPS)],
    saga=True,
)


async def saga_runs() -> None:
    for _ in range(RUNS):
        result = await trio_sagas.run_scene(SCENE, {"n": 0}, run_id="r")
        assert result.ok


async def hand_written_runs() -> None:
    for _ in range(RUNS):
        state = {"n": 0}
        done: list[Any] = []
        ctx = trio_sagas.StepContext("bench")
        try:
            for _ in range(STEPS):
                await do(ctx, state)
                done.append(undo)
        except Exception:
            with trio.CancelScope(shield=True):
                for step_undo in reversed(done):
                    await step_undo(ctx, state)
            raise
        assert state["n"] == STEPS


def memory_per_run() -> dict[str, float]:
    async def main() -> list[trio_sagas.SagaResult]:
        results = []
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100):
            results.append(await trio_sagas.run_scene(SCENE, {"n": 0}, run_id="r"))
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return results, kept  # type: ignore[return-value]

    _, kept = trio.run(main)  # type: ignore[misc]
    return {"bytes_kept_per_result (events included)": kept / 100}


def main() -> None:
    rounds = 3 if "--quick" in sys.argv else 11
    rows = [
        compare(
            f"{STEPS}-step saga, success: run_scene / try-except",
            lambda: trio.run(saga_runs),
            lambda: trio.run(hand_written_runs),
            rounds=rounds,
            target=5.0,
        )
    ]
    report("saga", rows, memory_per_run())


if __name__ == "__main__":
    main()
