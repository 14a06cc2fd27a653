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
