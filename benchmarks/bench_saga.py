"""Saga runner benchmark: forward-path overhead per step, and how it scales.

Clock: CPU time of this process (``time.process_time``, the harness's
default); every case is in-process and CPU-bound. Interleaved A/B rounds,
medians (see ``_harness.py``).

* ``bare``: a 10-step in-memory saga on the success path (``run_scene``)
  against a hand-written try/except loop making the same calls and keeping
  the same undo list -- no library object at all in the baseline (the step
  gets ``None`` as its context). ``trio.run`` is amortised over 2,000 runs
  per call, so its own start-up cost is noise. The row's ``overhead_us`` is
  the runner's cost per step in microseconds.
* ``checkpoint``: the same, every step doing one ``trio.lowlevel.checkpoint()``
  (what any step doing I/O costs at least) -- the ratio a real saga sees.
* ``steps_N``: one saga of N steps (10, 1,000, 50,000; about 20,000 steps per
  call in all) against the hand-written loop: the per-step cost must not grow
  with the size of the run (garbage collector pressure).
* ``chorus_N``: a Chorus of N branches (100, 1,000, 10,000; 20,000 branches
  per call in all) against a trio nursery starting the same N tasks, each
  doing one checkpoint: the per-branch cost must stay flat.

Also memory: bytes kept per 10-step result (tracemalloc).
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import trio
from _harness import QUICK, compare, report, rounds

import trio_sagas

STEPS = 10
RUNS = 200 if QUICK else 2_000
STEPS_PER_CALL = 2_000 if QUICK else 20_000


async def do(ctx: Any, state: dict[str, int]) -> int:
    state["n"] += 1
    return state["n"]


async def undo(ctx: Any, state: dict[str, int]) -> None:
    state["n"] -= 1


async def do_io(ctx: Any, state: dict[str, int]) -> int:
    await trio.lowlevel.checkpoint()
    state["n"] += 1
    return state["n"]


def scene(steps: int, run: Any = do) -> trio_sagas.Scene:
    return trio_sagas.Scene(
        "bench",
        [trio_sagas.Act(f"step{i}", run, compensate=undo) for i in range(steps)],
        saga=True,
    )


def saga_runs(saga: trio_sagas.Scene, runs: int) -> Any:
    async def main() -> None:
        for _ in range(runs):
            result = await trio_sagas.run_scene(saga, {"n": 0}, run_id="r")
            assert result.ok

    return lambda: trio.run(main)


def hand_written_runs(steps: int, runs: int, run: Any = do) -> Any:
    async def main() -> None:
        for _ in range(runs):
            state = {"n": 0}
            done: list[Any] = []
            try:
                for _ in range(steps):
                    await run(None, state)
                    done.append(undo)
            except Exception:
                with trio.CancelScope(shield=True):
                    for step_undo in reversed(done):
                        await step_undo(None, state)
                raise
            assert state["n"] == steps

    return lambda: trio.run(main)


def chorus_runs(branches: int, runs: int) -> Any:
    chorus = trio_sagas.Chorus(
        "fan", [trio_sagas.Act(f"b{i}", do_io) for i in range(branches)]
    )
    saga = trio_sagas.Scene("bench", [chorus], saga=True)

    async def main() -> None:
        for _ in range(runs):
            result = await trio_sagas.run_scene(saga, {"n": 0}, run_id="r")
            assert result.ok

    return lambda: trio.run(main)


def nursery_runs(branches: int, runs: int) -> Any:
    async def main() -> None:
        for _ in range(runs):
            state = {"n": 0}
            async with trio.open_nursery() as nursery:
                for _ in range(branches):
                    nursery.start_soon(do_io, None, state)

    return lambda: trio.run(main)


def memory_per_run() -> dict[str, float]:
    saga = scene(STEPS)

    async def main() -> tuple[list[trio_sagas.SagaResult], int]:
        results = []
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100):
            results.append(await trio_sagas.run_scene(saga, {"n": 0}, run_id="r"))
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return results, kept

    _, kept = trio.run(main)
    return {"bytes_kept_per_result (events included)": kept / 100}


def main() -> None:
    n = rounds(11)
    rows = [
        compare(
            f"{STEPS}-step saga, success: run_scene / bare try-except",
            saga_runs(scene(STEPS), RUNS),
            hand_written_runs(STEPS, RUNS),
            key="bare",
            items=STEPS * RUNS,
            rounds=n,
        ),
        compare(
            f"{STEPS}-step saga, a checkpoint per step / same loop",
            saga_runs(scene(STEPS, do_io), RUNS),
            hand_written_runs(STEPS, RUNS, do_io),
            key="checkpoint",
            items=STEPS * RUNS,
            rounds=n,
            target=1.4,
        ),
    ]
    for steps in (10, 1_000) if QUICK else (10, 1_000, 50_000):
        runs = max(1, STEPS_PER_CALL // steps)
        rows.append(
            compare(
                f"{steps}-step saga x{runs}: run_scene / try-except",
                saga_runs(scene(steps), runs),
                hand_written_runs(steps, runs),
                key=f"steps_{steps}",
                items=steps * runs,
                rounds=rounds(5),
            )
        )
    for branches in (100, 1_000) if QUICK else (100, 1_000, 10_000):
        runs = max(1, STEPS_PER_CALL // branches)
        rows.append(
            compare(
                f"Chorus of {branches} branches x{runs} / trio nursery",
                chorus_runs(branches, runs),
                nursery_runs(branches, runs),
                key=f"chorus_{branches}",
                items=branches * runs,
                rounds=rounds(5),
            )
        )
    per_item = {
        f"{row['key']}: us per item (candidate / baseline / overhead)": (
            f"{row['candidate_us']:.2f} / {row['baseline_us']:.2f} / "
            f"{row['overhead_us']:.2f}"
        )
        for row in rows
    }
    report("saga", rows, {**per_item, **memory_per_run()})


if __name__ == "__main__":
    main()
