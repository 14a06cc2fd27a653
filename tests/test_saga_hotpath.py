"""The saga runner's fast path: flat raw events, one clock read per step, lazy scopes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sagas import (
    Act,
    ActCompleted,
    Chorus,
    Event,
    RetryPolicy,
    SagaEvent,
    Scene,
    StepContext,
    run_scene,
)

from .helpers import Declined


def fields(event: Event) -> str:
    """An event's type and fields but its seq (trio shuffles the order of
    concurrent branches from run to run), errors by type and text."""
    out = dict(vars(event))
    del out["seq"]
    for key, value in out.items():
        if isinstance(value, BaseException):
            out[key] = (type(value), str(value))
    return f"{type(event).__name__} {sorted(out.items())}"


def build_scene(plan: list[tuple[str, float, bool]], contexts: list[Any]) -> Scene:
    """A saga of acts (kind, seconds, fail), an inner scene, a chorus, a retry."""

    def act(name: str, seconds: float, fail: bool, **options: Any) -> Act:
        async def run(ctx: StepContext, state: list[str]) -> str:
            contexts.append(ctx)
            await trio.sleep(seconds)
            if fail:
                raise Declined(f"{name} declined")
            state.append(name)
            return name

        async def undo(ctx: StepContext, state: list[str]) -> None:
            state.remove(name)

        return Act(name, run, compensate=undo, **options)

    steps: list[Any] = []
    for index, (kind, seconds, fail) in enumerate(plan):
        name = f"s{index}"
        if kind == "act":
            steps.append(act(name, seconds, fail))
        elif kind == "retry":
            retry = RetryPolicy(max_attempts=2, initial_backoff=0.5, jitter=0.0)
            steps.append(act(name, seconds, fail, retry=retry))
        elif kind == "scene":
            steps.append(Scene(name, [act("a", seconds, False), act("b", 0, fail)]))
        else:
            steps.append(Chorus(name, [act("x", seconds, fail), act("y", 1.25, False)]))
    return Scene("top", steps, saga=True)


PLANS = st.lists(
    st.tuples(
        st.sampled_from(["act", "retry", "scene", "chorus"]),
        st.sampled_from([0.0, 0.5, 1.0]),
        st.booleans(),
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(plan=PLANS)
def test_unobserved_events_equal_observed_events(plan: list[Any]) -> None:
    """Events built from the flat raw log equal those an observer receives."""

    async def main() -> tuple[list[Event], list[SagaEvent], list[Any]]:
        with trio.fail_after(100):
            seen: list[Event] = []
            observed = await run_scene(
                build_scene(plan, []), [], observer=seen.append, run_id="r"
            )
            contexts: list[Any] = []
            quiet = await run_scene(build_scene(plan, contexts), [], run_id="r")
            assert quiet.status == observed.status
            assert sorted(quiet.state) == sorted(observed.state)
            assert list(observed.events) == seen
            return seen, list(quiet.events), contexts

    seen, built, contexts = trio.run(
        main, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    assert sorted(map(fields, built)) == sorted(map(fields, seen))
    assert [e.seq for e in built] == list(range(len(seen)))
    # Neither the forward path nor a rollback created a compensation scope.
    assert all(ctx._compensation is None for ctx in contexts)


async def test_a_step_starts_when_the_previous_one_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Exact times: one clock reading serves one act's end and the next's start."""

    async def slow(ctx: StepContext, state: None) -> None:
        await trio.sleep(1.5)

    chorus = Chorus("c", [Act("x", slow), Act("y", slow)])
    scene = Scene("top", [Act("a", slow), chorus, Act("b", slow), Act("d", slow)])
    result = await run_scene(scene, None)
    assert result.ok
    assert [(type(e).__name__, e.at) for e in result.events] == [
        ("SceneStarted", 0.0),
        ("ActStarted", 0.0),
        ("ActCompleted", 1.5),
        ("ChorusStarted", 1.5),
        ("ActStarted", 1.5),
        ("ActStarted", 1.5),
        ("ActCompleted", 3.0),
        ("ActCompleted", 3.0),
        ("ChorusCompleted", 3.0),
        ("ActStarted", 3.0),
        ("ActCompleted", 4.5),
        ("ActStarted", 4.5),
        ("ActCompleted", 6.0),
        ("SceneCompleted", 6.0),
    ]
    completed = [e for e in result.events if isinstance(e, ActCompleted)]
    assert [(e.duration, e.attempts) for e in completed] == [(1.5, 1)] * 5
    assert result.events[-1].duration == 6.0  # type: ignore[attr-defined]
    assert trio.current_time() == 6.0


async def test_step_context_knows_its_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An act's ctx carries the run id; its key is run_id/path as before."""
    seen: list[tuple[str | None, str]] = []

    async def run(ctx: StepContext, state: None) -> None:
        seen.append((ctx.run_id, ctx.idempotency_key))

    await run_scene(Scene("top", [Scene("in", [Act("a", run)])]), None, run_id="r-1")
    assert seen == [("r-1", "r-1/top/in/a")]


async def test_a_registered_undo_still_runs_on_rollback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A scope an act did create is found and run by the rollback."""
    log: list[str] = []

    async def release(what: str) -> None:
        log.append(f"release {what}")

    async def book(ctx: StepContext, state: None) -> None:
        ctx.register_compensation(release, "seat", name="release")

    async def fail(ctx: StepContext, state: None) -> None:
        raise Declined

    result = await run_scene(
        Scene("top", [Act("book", book), Act("pay", fail)], saga=True), None
    )
    assert not result.ok
    assert log == ["release seat"]
    assert result.compensation is not None
    assert [o.name for o in result.compensation.outcomes] == ["top/book:release"]


def test_trusted_context_is_a_validating_step_context() -> None:
    """The fast constructor's object is a real StepContext: assignments are checked."""
    ctx = StepContext._trusted("a", path="p/a", deps=None, idempotency_key=None)
    assert type(ctx) is StepContext
    assert repr(ctx).startswith("StepContext(name='a'")
    with pytest.raises(TypeError, match="path must be a str, got 5"):
        ctx.path = 5  # type: ignore[assignment]
    child = ctx._trusted_child("b", "p/a/b")
    assert (type(child), child.path, child.idempotency_key) == (
        StepContext,
        "p/a/b",
        "p/a/b",
    )


def test_runner_result_is_a_frozen_saga_result() -> None:
    """new_result builds a real SagaResult: equal to the attrs-built one, frozen."""
    import attrs

    from trio_sagas import SagaResult, Status
    from trio_sagas._saga._records import new_result

    fast = new_result("r", Status.FAILED, [1], None, "top/a", None, ())
    slow = SagaResult(run_id="r", status=Status.FAILED, state=[1], failed_step="top/a")
    assert type(fast) is SagaResult
    assert fast == slow
    assert repr(fast) == repr(slow)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.state = None  # type: ignore[misc]


async def test_a_long_saga_rolls_back_every_kept_act_with_its_value(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Completed acts kept as flat records undo in reverse, each with its result and keys."""
    undone: list[tuple[Any, str, str | None, str]] = []

    async def run(ctx: StepContext, state: list[int]) -> int:
        await trio.sleep(0.5)
        state.append(len(state))
        return len(state) * 10

    async def undo(ctx: StepContext, state: list[int]) -> None:
        state.pop()
        undone.append((ctx.result, ctx.path, ctx.forward_key, ctx.idempotency_key))

    async def fail(ctx: StepContext, state: list[int]) -> None:
        raise Declined("no")

    steps: list[Any] = [Act(f"a{i}", run, compensate=undo) for i in range(200)]
    steps.insert(100, Act("plain", run))  # no undo: nothing kept, nothing undone
    scene = Scene("top", [*steps, Act("last", fail)], saga=True)
    result = await run_scene(scene, [], run_id="r")
    assert not result.ok
    assert result.state == [0]  # the act without an undo stays done
    assert result.compensation is not None
    assert len(result.compensation.outcomes) == 200
    assert [u[0] for u in undone] == [i * 10 for i in range(201, 101, -1)] + [
        i * 10 for i in range(100, 0, -1)
    ]
    assert undone[0][1:] == ("top/a199", "r/top/a199", "r/top/a199#compensate")
    assert undone[-1][1:] == ("top/a0", "r/top/a0", "r/top/a0#compensate")
    assert trio.current_time() == 201 * 0.5


async def test_a_scene_run_at_two_paths_names_its_steps_by_each(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same Scene object nested twice: every act gets the path it runs at, every run."""
    seen: list[str] = []

    async def run(ctx: StepContext, state: None) -> None:
        seen.append(ctx.path)

    inner = Scene("in", [Act("a", run), Act("b", run)])
    top = Scene("top", [Scene("x", [inner]), Scene("y", [inner])])
    for _ in range(2):
        assert (await run_scene(top, None)).ok
    paths = ["top/x/in/a", "top/x/in/b", "top/y/in/a", "top/y/in/b"]
    assert seen == paths * 2
    assert top == Scene("top", [Scene("x", [inner]), Scene("y", [inner])])
    assert hash(inner) == hash(Scene("in", [Act("a", run), Act("b", run)]))
    assert repr(inner).endswith(
        "saga=False, on_crash=<OnCrash.ROLL_BACK: 'roll_back'>)"
    )


async def test_a_run_inside_a_chorus_branch_is_independent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run started by a chorus branch fails alone: the enclosing chorus goes on."""
    log: list[str] = []

    async def fail(ctx: StepContext, state: None) -> None:
        raise Declined("inner")

    async def undo(ctx: StepContext, state: None) -> None:
        log.append(f"undo {ctx.path}")

    async def ok(ctx: StepContext, state: None) -> None:
        await trio.sleep(1)

    inner = Scene("inner", [Act("i1", ok, compensate=undo), Act("i2", fail)], saga=True)

    async def nested(ctx: StepContext, state: None) -> str:
        result = await run_scene(inner, None, run_id="inner")
        return result.status.name

    chorus = Chorus("c", [Act("n", nested), Act("slow", ok, compensate=undo)])
    result = await run_scene(Scene("top", [chorus], saga=True), None, run_id="outer")
    assert result.ok
    assert log == ["undo inner/i1"]
    assert trio.current_time() == 1.0


async def test_unobserved_failure_events_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An inline act that fails or is cancelled still records its start first."""

    async def fail(ctx: StepContext, state: None) -> None:
        await trio.sleep(1)
        raise Declined("no")

    async def hang(ctx: StepContext, state: None) -> None:
        await trio.sleep_forever()

    result = await run_scene(Scene("top", [Act("a", fail)], saga=True), None)
    assert [type(e).__name__ for e in result.events] == [
        "SceneStarted",
        "ActStarted",
        "ActFailed",
        "SceneFailed",
        "CompensationStarted",
        "CompensationCompleted",
    ]
    assert [e.seq for e in result.events] == list(range(6))
    with trio.move_on_after(2):
        await run_scene(Scene("top", [Act("h", hang)], saga=True), None)
    assert trio.current_time() == 3.0
