"""The saga runner: Scene / Act / Chorus, reverse-order compensation, events."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from trio_sagas import (
    Act,
    ActCancelled,
    CancelOrigin,
    CancelReason,
    Chorus,
    ChorusMode,
    CompensationCompleted,
    CompensationStarted,
    CompensationStepFailed,
    Event,
    RetryPolicy,
    SagaError,
    SagaEvent,
    SagaResult,
    Scene,
    SceneFailed,
    Status,
    StepContext,
    run_scene,
)

from .helpers import Declined, LeakCheck


def describe(event: SagaEvent) -> str:
    """A compact, exact rendering of an event for assertions."""
    name = type(event).__name__
    for field in ("steps_to_undo", "failed_at_step", "step", "scene"):
        if hasattr(event, field):
            value = getattr(event, field)
            if field == "steps_to_undo":
                value = list(value)
            return f"{name}({value})"
    return name


class Shop:
    """Records what ran, in order, with times."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def act(
        self,
        name: str,
        *,
        fail: bool = False,
        seconds: float = 1.0,
        undo: bool = True,
        undo_fails: bool = False,
        undo_seconds: float = 0.0,
        **options: Any,
    ) -> Act:
        async def run(ctx: StepContext, state: dict[str, Any]) -> str:
            await trio.sleep(seconds)
            if fail:
                raise Declined(f"{name} declined")
            state.setdefault("done", []).append(name)
            self.log.append(f"run {name}")
            return f"{name}-receipt"

        async def compensate(ctx: StepContext, state: dict[str, Any]) -> None:
            await trio.sleep(undo_seconds)
            self.log.append(f"undo {name} result={ctx.result} t={trio.current_time()}")
            if undo_fails:
                raise RuntimeError(f"cannot undo {name}")

        return Act(name, run, compensate=compensate if undo else None, **options)


async def test_seed_event_model_verbatim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A, B complete, C fails: the seed's event sequence, exactly."""
    shop = Shop()
    scene = Scene(
        "order", [shop.act("A"), shop.act("B"), shop.act("C", fail=True)], saga=True
    )
    result = await run_scene(scene, {}, run_id="run-1")
    assert [describe(e) for e in result.events] == [
        "SceneStarted(order)",
        "ActStarted(order/A)",
        "ActCompleted(order/A)",
        "ActStarted(order/B)",
        "ActCompleted(order/B)",
        "ActStarted(order/C)",
        "ActFailed(order/C)",
        "SceneFailed(2)",
        "CompensationStarted(['order/B', 'order/A'])",
        "CompensationStepStarted(order/B)",
        "CompensationStepCompleted(order/B)",
        "CompensationStepStarted(order/A)",
        "CompensationStepCompleted(order/A)",
        "CompensationCompleted(order)",
    ]
    assert [e.seq for e in result.events] == list(range(14))
    assert {e.run_id for e in result.events} == {"run-1"}
    assert [e.at for e in result.events][:7] == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    failed = result.events[7]
    assert isinstance(failed, SceneFailed)
    assert (failed.step, failed.status) == ("order/C", Status.FAILED)
    assert (result.status, result.failed_step) == (Status.FAILED, "order/C")
    assert isinstance(result.error, Declined)
    assert result.compensation is not None
    assert result.compensation.ok
    assert shop.log == [
        "run A",
        "run B",
        "undo B result=B-receipt t=3.0",
        "undo A result=A-receipt t=3.0",
    ]
    with pytest.raises(Declined, match="C declined"):
        result.unwrap()


async def test_success_returns_state_and_never_compensates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """All steps complete: SUCCEEDED, state returned, no compensation events."""
    shop = Shop()
    state: dict[str, Any] = {}
    result = await run_scene(
        Scene("s", [shop.act("A"), shop.act("B")], saga=True), state
    )
    assert result.ok
    assert result.unwrap() is state
    assert state == {"done": ["A", "B"]}
    assert result.compensation is None
    assert [describe(e) for e in result.events][-1] == "SceneCompleted(s)"
    assert len(result.run_id) == 32


async def test_empty_scene_is_a_no_op(autojump_clock: trio.testing.MockClock) -> None:
    """An empty scene succeeds at once."""
    result = await run_scene(Scene("empty"), None)
    assert result.ok
    assert [describe(e) for e in result.events] == [
        "SceneStarted(empty)",
        "SceneCompleted(empty)",
    ]


async def test_non_saga_scene_never_compensates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """saga=False: a failure stops the scene and nothing is undone."""
    shop = Shop()
    result = await run_scene(Scene("s", [shop.act("A"), shop.act("B", fail=True)]), {})
    assert result.status is Status.FAILED
    assert result.compensation is None
    assert shop.log == ["run A"]
    assert not any(isinstance(e, CompensationStarted) for e in result.events)


async def test_compensation_continues_past_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failing undo does not stop the others; unwrap raises SagaError with all errors."""
    shop = Shop()
    once = RetryPolicy(max_attempts=1)
    scene = Scene(
        "s",
        [
            shop.act("A", undo_fails=True, compensation_retry=once),
            shop.act("B"),
            shop.act("C", undo_fails=True, compensation_retry=once),
            shop.act("D", fail=True),
        ],
        saga=True,
    )
    result = await run_scene(scene, {}, run_id="r")
    assert [line.split(" result")[0] for line in shop.log[3:]] == [
        "undo C",
        "undo B",
        "undo A",
    ]
    assert result.compensation is not None
    assert not result.compensation.ok
    failed_steps = [
        e.step for e in result.events if isinstance(e, CompensationStepFailed)
    ]
    assert failed_steps == ["s/C", "s/A"]
    completed = result.events[-1]
    assert isinstance(completed, CompensationCompleted)
    assert not completed.ok
    with pytest.RaisesGroup(Declined, RuntimeError, RuntimeError) as info:
        result.unwrap()
    error = info.value
    assert isinstance(error, SagaError)
    assert str(error.original) == "D declined"
    assert [str(e) for e in error.compensation_errors] == [
        "cannot undo C",
        "cannot undo A",
    ]


async def test_compensation_retry_defaults_to_three_tries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An undo that keeps failing is tried three times (the conservative default)."""
    tries: list[float] = []

    async def run(ctx: StepContext, state: object) -> None:
        pass

    async def flaky_undo(ctx: StepContext, state: object) -> None:
        tries.append(trio.current_time())
        raise ConnectionError("down")

    async def fail(ctx: StepContext, state: object) -> None:
        raise Declined

    scene = Scene(
        "s", [Act("a", run, compensate=flaky_undo), Act("b", fail)], saga=True
    )
    result = await run_scene(scene, None)
    assert tries == [0.0, 0.5, 1.5]
    step_failed = next(
        e for e in result.events if isinstance(e, CompensationStepFailed)
    )
    assert step_failed.attempts == 3
    assert result.compensation is not None
    assert len(result.compensation.outcomes[0].attributes["attempts"]) == 3  # type: ignore[arg-type]


async def test_compensation_timeout_defaults_to_forward_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An undo that hangs is bounded by the act's own timeout per try."""

    async def run(ctx: StepContext, state: object) -> None:
        pass

    async def hang(ctx: StepContext, state: object) -> None:
        await trio.sleep(math.inf)

    async def fail(ctx: StepContext, state: object) -> None:
        raise Declined

    scene = Scene(
        "s",
        [
            Act(
                "a",
                run,
                compensate=hang,
                timeout=4,
                compensation_retry=RetryPolicy(max_attempts=1),
            ),
            Act("b", fail),
        ],
        saga=True,
    )
    result = await run_scene(scene, None)
    assert trio.current_time() == 4.0
    assert result.compensation is not None
    (outcome,) = result.compensation.outcomes
    assert outcome.status is Status.TIMED_OUT


async def test_registered_compensations_run_before_compensate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Actions registered in run belong to the act: reverse order, then compensate."""
    log: list[str] = []

    async def undo(label: str) -> None:
        log.append(label)

    async def run(ctx: StepContext, state: object) -> str:
        ctx.register_compensation(undo, "registered-1", name="r1")
        ctx.register_compensation(undo, "registered-2", name="r2")
        return "value"

    async def compensate(ctx: StepContext, state: object) -> None:
        log.append(f"compensate({ctx.result})")

    async def fail(ctx: StepContext, state: object) -> None:
        raise Declined

    result = await run_scene(
        Scene("s", [Act("a", run, compensate=compensate), Act("b", fail)], saga=True),
        None,
    )
    assert log == ["registered-2", "registered-1", "compensate(value)"]
    assert result.compensation is not None
    assert [o.name for o in result.compensation.outcomes] == ["s/a:r2", "s/a:r1", "s/a"]


async def test_compensation_sees_current_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Compensation receives the state as the later steps left it (seed question 8)."""
    seen: list[object] = []

    async def set_a(ctx: StepContext, state: dict[str, int]) -> None:
        state["a"] = 1

    async def set_b(ctx: StepContext, state: dict[str, int]) -> None:
        state["b"] = 2
        raise Declined

    async def undo_a(ctx: StepContext, state: dict[str, int]) -> None:
        seen.append(dict(state))

    await run_scene(
        Scene("s", [Act("a", set_a, compensate=undo_a), Act("b", set_b)], saga=True), {}
    )
    assert seen == [{"a": 1, "b": 2}]


async def test_idempotency_keys(autojump_clock: trio.testing.MockClock) -> None:
    """Acts and their undos get stable keys from run id and step path."""
    keys: list[str | None] = []

    async def run(ctx: StepContext, state: object) -> None:
        keys.append(ctx.idempotency_key)

    async def undo(ctx: StepContext, state: object) -> None:
        keys.append(ctx.idempotency_key)

    async def fail(ctx: StepContext, state: object) -> None:
        raise Declined

    scene = Scene(
        "order",
        [Scene("inner", [Act("a", run, compensate=undo)]), Act("b", fail)],
        saga=True,
    )
    await run_scene(scene, None, run_id="order-42")
    assert keys == ["order-42/order/inner/a", "order-42/order/inner/a#compensate"]


async def test_act_timeout_and_retry(autojump_clock: trio.testing.MockClock) -> None:
    """A try beyond timeout is TIMED_OUT; retried per policy; the scene TIMED_OUT."""
    tries: list[float] = []

    async def slow(ctx: StepContext, state: object) -> None:
        tries.append(trio.current_time())
        await trio.sleep(10)

    act = Act(
        "slow", slow, timeout=2, retry=RetryPolicy(max_attempts=2, initial_backoff=1)
    )
    result = await run_scene(Scene("s", [act], saga=True), None)
    assert tries == [0.0, 3.0]
    assert result.status is Status.TIMED_OUT
    assert isinstance(result.error, TimeoutError)
    assert str(result.error) == "act 's/slow' timed out after 2.0 s (try 2)"
    failed = next(e for e in result.events if isinstance(e, SceneFailed))
    assert failed.cause is not None
    assert failed.cause.reason is CancelReason.STEP_TIMEOUT


async def test_act_retry_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    """A flaky act succeeds on its second try; ActCompleted counts the attempts."""
    tries = 0

    async def flaky(ctx: StepContext, state: object) -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise ConnectionError

    result = await run_scene(
        Scene("s", [Act("f", flaky, retry=RetryPolicy(initial_backoff=0.25))]), None
    )
    assert result.ok
    completed = [e for e in result.events if type(e).__name__ == "ActCompleted"]
    assert completed[0].attempts == 2  # type: ignore[attr-defined]
    assert trio.current_time() == 0.25


# -- Chorus ---------------------------------------------------------------------


async def test_completed_chorus_is_compensated_in_parallel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three 5-second undos of a completed chorus finish together: parallel."""
    shop = Shop()
    chorus = Chorus(
        "notify", [shop.act(n, undo_seconds=5) for n in ("email", "sms", "push")]
    )
    scene = Scene("s", [chorus, shop.act("charge", fail=True)], saga=True)
    result = await run_scene(scene, {})
    assert trio.current_time() == 1.0 + 1.0 + 5.0
    undo_lines = sorted(line for line in shop.log if line.startswith("undo"))
    assert undo_lines == [
        "undo email result=email-receipt t=7.0",
        "undo push result=push-receipt t=7.0",
        "undo sms result=sms-receipt t=7.0",
    ]
    start = next(e for e in result.events if isinstance(e, CompensationStarted))
    assert start.steps_to_undo == ("s/notify",)


async def test_fail_fast_cancels_siblings_then_compensates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """FAIL_FAST: a failing branch cancels running siblings (internal) before rollback."""
    shop = Shop()
    chorus = Chorus(
        "book",
        [
            shop.act("hotel", seconds=1),
            shop.act("flight", fail=True, seconds=2),
            shop.act("car", seconds=10),
        ],
    )
    result = await run_scene(Scene("trip", [shop.act("plan"), chorus], saga=True), {})
    cancelled = [e for e in result.events if isinstance(e, ActCancelled)]
    assert [(e.step, e.at) for e in cancelled] == [("trip/book/car", 3.0)]
    cause = cancelled[0].cause
    assert (cause.reason, cause.origin, cause.triggered_by, cause.scope) == (
        CancelReason.STEP_FAILED,
        CancelOrigin.INTERNAL,
        "trip/book/flight",
        "trip/book",
    )
    assert result.failed_step == "trip/book/flight"
    undone = [line.split(" result")[0] for line in shop.log if line.startswith("undo")]
    assert undone == ["undo hotel", "undo plan"]
    seqs = [describe(e) for e in result.events]
    assert seqs.index("ActCancelled(trip/book/car)") < seqs.index(
        "CompensationStarted(['trip/book', 'trip/plan'])"
    )


async def test_fail_fast_cancels_siblings_before_a_branch_saga_rolls_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failing saga branch cancels its siblings first, then rolls itself back."""
    shop = Shop()
    branch = Scene(
        "pay",
        [shop.act("hold", undo_seconds=10), shop.act("capture", fail=True)],
        saga=True,
    )
    chorus = Chorus("c", [branch, shop.act("ship", seconds=100)])
    result = await run_scene(Scene("s", [chorus], saga=True), {})
    cancelled = next(e for e in result.events if isinstance(e, ActCancelled))
    assert (cancelled.step, cancelled.at) == ("s/c/ship", 2.0)
    assert cancelled.cause.triggered_by == "s/c/pay/capture"
    assert "undo hold result=hold-receipt t=12.0" in shop.log
    assert trio.current_time() == 12.0


async def test_fail_after_all_runs_every_branch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """FAIL_AFTER_ALL: siblings run to completion; the chorus fails; all completed are undone."""
    shop = Shop()
    chorus = Chorus(
        "c",
        [shop.act("a", fail=True, seconds=1), shop.act("b", seconds=3)],
        mode=ChorusMode.FAIL_AFTER_ALL,
    )
    result = await run_scene(Scene("s", [chorus], saga=True), {})
    assert result.status is Status.FAILED
    assert "run b" in shop.log
    assert [
        line.split(" result")[0] for line in shop.log if line.startswith("undo")
    ] == ["undo b"]


async def test_partial_success_compensates_only_successful_branches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """PARTIAL_SUCCESS: the scene goes on; a later failure undoes only the branches that succeeded."""
    shop = Shop()
    chorus = Chorus(
        "c",
        [shop.act("a"), shop.act("b", fail=True), shop.act("c")],
        mode=ChorusMode.PARTIAL_SUCCESS,
    )
    result = await run_scene(
        Scene("s", [chorus, shop.act("d", fail=True)], saga=True), {}
    )
    assert result.failed_step == "s/d"
    undone = sorted(
        line.split(" result")[0] for line in shop.log if line.startswith("undo")
    )
    assert undone == ["undo a", "undo c"]


async def test_partial_success_all_failed_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """PARTIAL_SUCCESS with every branch failing fails the chorus."""
    shop = Shop()
    chorus = Chorus(
        "c",
        [shop.act("a", fail=True), shop.act("b", fail=True)],
        mode=ChorusMode.PARTIAL_SUCCESS,
    )
    result = await run_scene(Scene("s", [chorus]), {})
    assert result.status is Status.FAILED
    assert result.failed_step in ("s/c/a", "s/c/b")


async def test_chorus_timeout(autojump_clock: trio.testing.MockClock) -> None:
    """A chorus over its timeout cancels its branches (STEP_TIMEOUT) and times out."""
    shop = Shop()
    chorus = Chorus(
        "c", [shop.act("fast", seconds=1), shop.act("slow", seconds=100)], timeout=5
    )
    result = await run_scene(Scene("s", [chorus], saga=True), {})
    assert result.status is Status.TIMED_OUT
    assert str(result.error) == "chorus 's/c' timed out after 5.0 s"
    cancelled = next(e for e in result.events if isinstance(e, ActCancelled))
    assert (cancelled.step, cancelled.at, cancelled.cause.reason) == (
        "s/c/slow",
        5.0,
        CancelReason.STEP_TIMEOUT,
    )
    assert [
        line.split(" result")[0] for line in shop.log if line.startswith("undo")
    ] == ["undo fast"]


async def test_chorus_max_workers(autojump_clock: trio.testing.MockClock) -> None:
    """max_workers=2 runs four 1-second branches in two rounds."""
    shop = Shop()
    chorus = Chorus("c", [shop.act(n) for n in "abcd"], max_workers=2)
    result = await run_scene(Scene("s", [chorus]), {})
    assert result.ok
    assert trio.current_time() == 2.0


# -- nesting ---------------------------------------------------------------------


async def test_completed_nested_saga_compensated_as_unit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The outer saga undoes a completed inner saga as a unit, with its own events."""
    shop = Shop()
    inner = Scene("inner", [shop.act("a"), shop.act("b")], saga=True)
    result = await run_scene(
        Scene("outer", [inner, shop.act("c", fail=True)], saga=True), {}
    )
    comp = [describe(e) for e in result.events if "Compensation" in type(e).__name__]
    assert comp == [
        "CompensationStarted(['outer/inner'])",
        "CompensationStarted(['outer/inner/b', 'outer/inner/a'])",
        "CompensationStepStarted(outer/inner/b)",
        "CompensationStepCompleted(outer/inner/b)",
        "CompensationStepStarted(outer/inner/a)",
        "CompensationStepCompleted(outer/inner/a)",
        "CompensationCompleted(outer/inner)",
        "CompensationCompleted(outer)",
    ]


async def test_failing_nested_saga_compensates_itself_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An inner saga that fails rolls itself back; the outer undoes only its own steps."""
    shop = Shop()
    inner = Scene("inner", [shop.act("a"), shop.act("b", fail=True)], saga=True)
    result = await run_scene(Scene("outer", [shop.act("x"), inner], saga=True), {})
    undone = [line.split(" result")[0] for line in shop.log if line.startswith("undo")]
    assert undone == ["undo a", "undo x"]
    starts = [
        e.steps_to_undo for e in result.events if isinstance(e, CompensationStarted)
    ]
    assert starts == [("outer/inner/a",), ("outer/x",)]
    assert result.failed_step == "outer/inner/b"


async def test_non_saga_inner_scene_undone_by_outer_saga(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An inner non-saga scene's completed steps are undone when the outer saga rolls back."""
    shop = Shop()
    inner = Scene("inner", [shop.act("a"), shop.act("b", fail=True)])
    result = await run_scene(Scene("outer", [shop.act("x"), inner], saga=True), {})
    undone = [line.split(" result")[0] for line in shop.log if line.startswith("undo")]
    assert undone == ["undo a", "undo x"]
    starts = [
        e.steps_to_undo for e in result.events if isinstance(e, CompensationStarted)
    ]
    assert starts == [("outer/inner", "outer/x")]


# -- cancellation -------------------------------------------------------------------


async def test_external_cancel_compensates_then_propagates(
    autojump_clock: trio.testing.MockClock, no_task_leaks: LeakCheck
) -> None:
    """Cancelled from outside: completed steps are undone (shielded), then Cancelled propagates."""
    shop = Shop()
    events: list[Event] = []
    scene = Scene(
        "s",
        [
            shop.act("a", undo_seconds=3),
            Chorus("c", [shop.act("b"), shop.act("slow", seconds=100)]),
        ],
        saga=True,
    )
    with no_task_leaks(), trio.move_on_after(5) as outer:
        await run_scene(scene, {}, observer=events.append)
    assert outer.cancelled_caught
    assert trio.current_time() == 8.0
    undone = [line.split(" result")[0] for line in shop.log if line.startswith("undo")]
    assert undone == ["undo b", "undo a"]
    cancelled = next(e for e in events if isinstance(e, ActCancelled))
    assert cancelled.cause.origin is CancelOrigin.EXTERNAL
    failed = next(e for e in events if isinstance(e, SceneFailed))
    assert failed.status is Status.CANCELLED


# -- validation ----------------------------------------------------------------------


def test_validation() -> None:
    """Bad definitions fail at construction, naming the argument and value."""

    async def run(ctx: StepContext, state: object) -> None:
        pass

    def sync_run(ctx: StepContext, state: object) -> None:
        pass

    with pytest.raises(TypeError, match="Act 'a': run must be an async function"):
        Act("a", sync_run)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Act 'a': run is required"):
        Act("a", None)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match="Act 'a': compensate must be an async function"
    ):
        Act("a", run, compensate=sync_run)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got -1"):
        Act("a", run, timeout=-1)
    with pytest.raises(ValueError, match="hedged acts are not supported"):
        from trio_sagas import HedgePolicy

        Act("a", run, retry=RetryPolicy(hedge=HedgePolicy()))
    with pytest.raises(ValueError, match="Scene 's': duplicate step name 'a'"):
        Scene("s", [Act("a", run), Act("a", run)])
    with pytest.raises(
        TypeError, match="every item of steps must be an Act, Scene or Chorus"
    ):
        Scene("s", [run])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="name must be non-empty"):
        Scene("a/b")
    with pytest.raises(ValueError, match="max_workers must be an int >= 1, got 0"):
        Chorus("c", [Act("a", run)], max_workers=0)
    with pytest.raises(TypeError, match="mode must be a ChorusMode"):
        Chorus("c", [], mode="fail_fast")  # type: ignore[arg-type]


async def test_run_scene_validation() -> None:
    """run_scene refuses a non-scene, an async observer and an empty run id."""

    async def async_observer(event: object) -> None:
        pass

    with pytest.raises(TypeError, match="scene must be a Scene"):
        await run_scene(Act("a", async_observer), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="observer must be a sync callable"):
        await run_scene(Scene("s"), None, observer=async_observer)
    with pytest.raises(ValueError, match="run_id must be a non-empty str"):
        await run_scene(Scene("s"), None, run_id="")


def test_result_unwrap_ok() -> None:
    """A succeeded result unwraps to its state."""
    assert SagaResult("r", Status.SUCCEEDED, state=[1]).unwrap() == [1]


# -- regressions from the cancellation review -------------------------------------


async def test_nested_run_does_not_touch_the_enclosing_chorus(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run_scene inside a chorus branch is independent: its failure cancels no outer sibling."""
    shop = Shop()
    inner = Scene("inner", [shop.act("x"), shop.act("y", fail=True)], saga=True)

    async def nested(ctx: StepContext, state: dict[str, Any]) -> str:
        result = await run_scene(inner, {})
        return result.status.value  # handled: this act succeeds

    chorus = Chorus("c", [Act("a", nested), shop.act("b", seconds=10)])
    result = await run_scene(Scene("outer", [chorus], saga=True), {})
    assert result.ok
    assert not any(isinstance(e, ActCancelled) for e in result.events)
    assert trio.current_time() == 10.0


async def test_concurrent_rollbacks_report_their_own_ok(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two saga branches rolling back at once each report ok for their own undos only."""
    shop = Shop()
    once = RetryPolicy(max_attempts=1)
    s1 = Scene(
        "s1",
        [
            shop.act("a", undo_fails=True, compensation_retry=once),
            shop.act("f1", fail=True),
        ],
        saga=True,
    )
    s2 = Scene("s2", [shop.act("b"), shop.act("f2", fail=True)], saga=True)
    chorus = Chorus("c", [s1, s2], mode=ChorusMode.FAIL_AFTER_ALL)
    result = await run_scene(Scene("top", [chorus], saga=True), {})
    oks = {e.scene: e.ok for e in result.events if isinstance(e, CompensationCompleted)}
    assert oks == {"top/c/s1": False, "top/c/s2": True, "top": True}


async def test_mixed_cancel_and_cleanup_failure_keeps_the_internal_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An act cancelled by a failing sibling, whose cleanup also fails, reports STEP_FAILED."""

    async def cleanup_fails(ctx: StepContext, state: object) -> None:
        async def child() -> None:
            try:
                await trio.sleep(math.inf)
            finally:
                raise OSError("cleanup failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            await trio.sleep(math.inf)

    async def fails(ctx: StepContext, state: object) -> None:
        await trio.sleep(1)
        raise Declined

    chorus = Chorus("c", [Act("a", cleanup_fails), Act("b", fails)])
    result = await run_scene(Scene("s", [chorus]), None)
    assert result.failed_step == "s/c/b"
    cancelled = [e for e in result.events if isinstance(e, ActCancelled)]
    assert [(e.step, e.cause.reason, e.cause.origin) for e in cancelled] == [
        ("s/c/a", CancelReason.STEP_FAILED, CancelOrigin.INTERNAL)
    ]


async def test_fail_fast_reason_names_the_failed_branch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The trio reason a cancelled sibling sees names the branch that failed."""
    reasons: list[str | None] = []

    async def waits(ctx: StepContext, state: object) -> None:
        try:
            await trio.sleep(math.inf)
        except trio.Cancelled as cancelled:
            reasons.append(cancelled.reason)
            raise

    async def fails(ctx: StepContext, state: object) -> None:
        await trio.sleep(1)
        raise Declined("no")

    await run_scene(Scene("s", [Chorus("c", [Act("a", waits), Act("b", fails)])]), None)
    assert reasons == [
        "step_failed (internal) in scope 'c', triggered by 's/c/b': Declined: no"
    ]
