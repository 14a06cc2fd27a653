"""Three runs drawn as timelines: a saga that rolls back, a hedged call whose
hedge wins, and a startup DAG with a skipped branch.

``python examples/timelines.py`` prints plain-text Gantt charts (no extra
dependency). ``python examples/timelines.py --png DIR`` also writes PNGs with
matplotlib (``pip install '.[plot]'`` from a checkout); ``nox -s bench`` does that
for the docs.
"""

from __future__ import annotations

import sys

import trio
import trio.testing

import trio_sagas
from trio_sagas import Act, Chorus, Scene, StepContext


async def saga_with_rollback() -> trio_sagas.SagaResult:
    async def work(ctx: StepContext, state: object) -> None:
        await trio.sleep({"reserve": 1, "email": 1, "sms": 0.5}.get(ctx.name, 1))

    async def undo(ctx: StepContext, state: object) -> None:
        await trio.sleep(0.5)

    async def charge(ctx: StepContext, state: object) -> None:
        await trio.sleep(1.5)
        raise RuntimeError("card declined")

    scene = Scene(
        "order",
        [
            Act("reserve", work, compensate=undo),
            Chorus(
                "notify",
                [
                    Act("email", work, compensate=undo),
                    Act("sms", work, compensate=undo),
                ],
            ),
            Act("charge", charge),
        ],
        saga=True,
    )
    return await trio_sagas.run_scene(scene, None, run_id="order-1")


async def hedged_call() -> trio_sagas.Outcome[object]:
    async def fetch(attempt: trio_sagas.AttemptInfo) -> str:
        # The primary hits a slow replica; the hedge a fast one.
        await trio.sleep(3.0 if attempt.hedge_index == 0 else 0.5)
        return f"answer from replica {attempt.hedge_index}"

    policy = trio_sagas.RetryPolicy(
        hedge=trio_sagas.HedgePolicy(max_hedges=2, delay=1.0)
    )
    return await trio_sagas.Executor().run(fetch, policy=policy, name="fetch")


async def startup_dag() -> trio_sagas.IgnitionResult:
    async def up(seconds: float) -> None:
        await trio.sleep(seconds)

    async def broken() -> None:
        await trio.sleep(1)
        raise ConnectionRefusedError("queue unreachable")

    ignition = trio_sagas.Ignition(
        mode=trio_sagas.ExecutionMode.DEPENDENCY_AWARE, global_timeout=30
    )
    ignition.add("config", up, 0.5)
    ignition.add("database", up, 2, depends_on=["config"])
    ignition.add("queue", broken, depends_on=["config"])
    ignition.add("workers", up, 1, depends_on=["queue", "database"])
    ignition.add("http", up, 1, depends_on=["database"])
    return await ignition.run()


SCENARIOS = [
    (
        "A saga whose last step fails: the completed steps are undone",
        saga_with_rollback,
    ),
    ("A hedged call: the hedge (launched after 1 s) wins", hedged_call),
    ("A startup DAG: the queue fails, so workers are skipped", startup_dag),
]


def main() -> None:
    png_dir = sys.argv[sys.argv.index("--png") + 1] if "--png" in sys.argv else None
    for index, (title, scenario) in enumerate(SCENARIOS):
        result = trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
        print(f"{title}:")
        print(trio_sagas.render_timeline(result, width=40))
        print()
        if png_dir is not None:
            trio_sagas.plot_timeline(
                result, f"{png_dir}/timeline_{index + 1}.png", title=title
            )


if __name__ == "__main__":
    main()
