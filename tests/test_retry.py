"""Retry and hedge policy values, and the retry loop of compensations and acts."""

from __future__ import annotations

import gc
import math
import random
import sys
import types
from collections.abc import Callable
from typing import Any

import outcome
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    Act,
    ActFailed,
    AttemptInfo,
    AttemptRecord,
    BudgetKind,
    CancelReason,
    Classification,
    Classified,
    CompensationScope,
    Executor,
    FixedDelayTrigger,
    HedgePolicy,
    MissingTrigger,
    Outcome,
    ResultRejected,
    RetryPolicy,
    Scene,
    Status,
    StepContext,
    TokenBucketBudget,
    run_scene,
)
from trio_sagas._retry import _loop, run_attempts


def test_defaults() -> None:
    """Defaults: 3 attempts, 0.1 s doubling to 10 s, no jitter, no hedge; hedges 2, 0.2 s apart."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (
        3,
        0.1,
        10.0,
    )
    assert (policy.multiplier, policy.jitter, policy.hedge, policy.budget) == (
        2.0,
        0.0,
        None,
        None,
    )
    hedge = HedgePolicy()
    assert (hedge.max_hedges, hedge.delay, hedge.trigger) == (2, 0.2, None)
    assert hedge.missing_trigger is MissingTrigger.FALLBACK
    assert not hedge.cancel_on_first_terminal


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be an int >= 1, got 0"),
        (
            {"max_attempts": 1.5},
            TypeError,
            "max_attempts must be an int >= 1, got 1.5",
        ),
        (
            {"max_attempts": True},
            TypeError,
            "max_attempts must be an int >= 1, got True",
        ),
        (
            {"initial_backoff": -1},
            ValueError,
            "initial_backoff must be >= 0 seconds, got -1",
        ),
        (
            {"max_backoff": -0.1},
            ValueError,
            "max_backoff must be >= 0 seconds, got -0.1",
        ),
        (
            {"initial_backoff": 5, "max_backoff": 1},
            ValueError,
            r"initial_backoff \(5\) must not exceed max_backoff \(1\)",
        ),
        (
            {"multiplier": 0.5},
            ValueError,
            "multiplier must be a finite number >= 1, got 0.5",
        ),
        (
            {"jitter": 1.5},
            ValueError,
            "jitter must be 0 <= x <= 1, got 1.5",
        ),
        (
            {"jitter": -0.1},
            ValueError,
            "jitter must be 0 <= x <= 1, got -0.1",
        ),
        ({"hedge": 2}, TypeError, "hedge must be a HedgePolicy, got 2"),
        ({"budget": object()}, TypeError, r"budget must implement try_acquire\(kind\)"),
        (
            {"initial_backoff": "1"},
            TypeError,
            "initial_backoff must be a number of seconds, got '1'",
        ),
    ],
)
def test_retry_policy_validation(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad values fail fast naming the argument and the value."""
    with pytest.raises(error, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_hedges": 0}, ValueError, "max_hedges must be an int >= 1, got 0"),
        ({"delay": -0.2}, ValueError, "delay must be >= 0 seconds, got -0.2"),
        ({"trigger": 3}, TypeError, "trigger must be a str, got 3"),
        (
            {"missing_trigger": "fallback"},
            TypeError,
            r"missing_trigger must be a MissingTrigger \(MissingTrigger.FALLBACK",
        ),
        ({"budget": "x"}, TypeError, r"budget must implement try_acquire\(kind\)"),
    ],
)
def test_hedge_policy_validation(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad hedge values fail fast naming the argument and the value."""
    with pytest.raises(error, match=match):
        HedgePolicy(**kwargs)  # type: ignore[arg-type]


def test_exponential_backoff_capped() -> None:
    """Backoff doubles from initial_backoff and stops at max_backoff."""
    policy = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=5)
    assert [policy.backoff(i) for i in range(5)] == [1, 2, 4, 5, 5]
    assert policy.backoff(10_000) == 5
    assert policy.cap(100) == 5
    assert policy.cap(0.5) == 0.5
    with pytest.raises(ValueError, match="retry_index must be an int >= 0, got -1"):
        policy.backoff(-1)


@given(
    initial=st.floats(0, 10),
    multiplier=st.floats(1, 5),
    jitter=st.floats(0, 1),
    index=st.integers(0, 50),
    seed=st.integers(0, 2**32),
)
def test_jitter_bounds(
    initial: float, multiplier: float, jitter: float, index: int, seed: int
) -> None:
    """A jittered backoff lies within d(1-j)..d(1+j), capped at max_backoff."""
    policy = RetryPolicy(
        initial_backoff=initial, multiplier=multiplier, jitter=jitter, max_backoff=100
    )
    base = min(initial * multiplier**index, math.inf) if index < 40 else math.inf
    delay = policy.backoff(index, rng=random.Random(seed))
    assert 0 <= delay <= 100
    if base <= 100 / (1 + jitter):
        assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_classified_validation() -> None:
    """A Classified backoff override must be a non-negative number."""
    assert Classified(Classification.RETRYABLE, backoff=2.0).backoff == 2.0
    with pytest.raises(ValueError, match="backoff must be >= 0 seconds, got -1"):
        Classified(Classification.RETRYABLE, backoff=-1)


def test_budget_kinds() -> None:
    """Budget kinds are retry and hedge."""
    assert [k.value for k in BudgetKind] == ["retry", "hedge"]


# -- the retry loop of compensations and acts: classifier, records -----------


class OutOfStock(Exception):
    """An answer that no retry can change."""


def stock_classifier(result: outcome.Outcome[Any]) -> Classification | Classified:
    """OutOfStock is final; a 'busy' answer asks for 2 s; the rest is retryable."""
    if isinstance(result, outcome.Value):
        if result.value == "busy":
            return Classified(Classification.RETRYABLE, backoff=2.0, reason="busy")
        return Classification.SUCCESS
    if isinstance(result, outcome.Error) and isinstance(result.error, OutOfStock):
        return Classified(Classification.NON_RETRYABLE, reason="out_of_stock")
    return Classification.RETRYABLE


async def test_an_act_does_not_retry_what_its_classifier_calls_final(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Act(retry=...) with a classifier: an out-of-stock answer is tried once, not 5 times."""
    tries: list[float] = []

    async def reserve(ctx: StepContext, state: object) -> None:
        tries.append(trio.current_time())
        raise OutOfStock("sku-42")

    retry = RetryPolicy(
        max_attempts=5, initial_backoff=1.0, classifier=stock_classifier
    )
    scene = Scene("order", [Act("reserve", reserve, retry=retry)], saga=True)
    with trio.fail_after(60):
        result = await run_scene(scene, None)
    assert tries == [0.0]
    assert isinstance(result.error, OutOfStock)
    failed = next(e for e in result.events if isinstance(e, ActFailed))
    assert failed.attempts == 1


async def test_an_act_still_retries_what_is_retryable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same policy retries a connection error with the exponential backoff."""
    tries: list[float] = []

    async def reserve(ctx: StepContext, state: object) -> str:
        tries.append(trio.current_time())
        if len(tries) < 3:
            raise ConnectionError("reset")
        return "reserved"

    retry = RetryPolicy(
        max_attempts=5, initial_backoff=1.0, classifier=stock_classifier
    )
    scene = Scene("order", [Act("reserve", reserve, retry=retry)])
    with trio.fail_after(60):
        result = await run_scene(scene, None)
    assert result.status is Status.SUCCEEDED
    assert tries == [0.0, 1.0, 3.0]


async def test_run_attempts_records_every_try_like_the_executor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """attributes['attempts'] holds one AttemptRecord per try: override, timeout, success."""
    answers: list[object] = ["busy", "hang", "ok"]

    async def undo() -> object:
        answer = answers.pop(0)
        if answer == "hang":
            await trio.sleep_forever()
        await trio.sleep(0.25)
        return answer

    policy = RetryPolicy(
        max_attempts=3, initial_backoff=0.5, classifier=stock_classifier
    )
    with trio.fail_after(60):
        result = await run_attempts(
            undo, (), name="undo", retry=policy, timeout=1.0, what="compensation"
        )
    assert result.status is Status.SUCCEEDED
    assert result.value == "ok"
    tries = result.attributes["attempts"]
    assert isinstance(tries, tuple)
    assert all(isinstance(r, AttemptRecord) for r in tries)
    assert [
        (
            r.attempt,
            r.retry_index,
            r.hedge_index,
            r.status,
            r.classification,
            r.reason,
            r.backoff,
            r.started_at,
            r.finished_at,
        )
        for r in tries
    ] == [
        (1, 0, 0, Status.FAILED, Classification.RETRYABLE, "busy", 2.0, 0.0, 0.25),
        (2, 1, 0, Status.TIMED_OUT, Classification.RETRYABLE, None, None, 2.25, 3.25),
        (3, 2, 0, Status.SUCCEEDED, Classification.SUCCESS, None, None, 4.25, 4.5),
    ]
    # Waits: the busy answer's 2 s override, then backoff(1) = 0.5 * 2 = 1 s.
    timed_out = tries[1]
    assert timed_out.cause is not None
    assert timed_out.cause.reason is CancelReason.STEP_TIMEOUT
    assert isinstance(timed_out.error, TimeoutError)
    assert result.attributes["classification"] is Classification.SUCCESS


async def test_run_attempts_stops_at_a_non_retryable_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """NON_RETRYABLE ends the tries at once: FAILED with the classifier's reason."""
    calls = 0

    async def undo() -> None:
        nonlocal calls
        calls += 1
        raise OutOfStock("gone")

    policy = RetryPolicy(max_attempts=4, classifier=stock_classifier)
    result = await run_attempts(
        undo, (), name="u", retry=policy, timeout=5.0, what="compensation"
    )
    assert calls == 1
    assert (result.status, result.attributes["reason"]) == (
        Status.FAILED,
        "out_of_stock",
    )
    assert isinstance(result.error, OutOfStock)
    assert trio.current_time() == 0.0


async def test_a_rejected_value_fails_with_result_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A returned value the classifier calls a failure becomes a ResultRejected error."""

    async def undo() -> str:
        return "busy"

    policy = RetryPolicy(max_attempts=2, max_backoff=3.0, classifier=stock_classifier)
    scope = CompensationScope()
    scope.register(undo, name="release")
    report = await scope.run(retry=policy)
    (only,) = report.outcomes
    assert only.status is Status.FAILED
    assert isinstance(only.error, ResultRejected)
    assert only.error.value == "busy"
    assert str(only.error) == "'release' returned 'busy', classified retryable (busy)"
    assert only.attributes["reason"] == "busy"
    # The override (2 s) was used between the two tries, capped at 3 s.
    assert trio.current_time() == 2.0


async def test_a_raising_classifier_aborts_the_try(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A classifier bug makes the try ABORT (no retry) and becomes the error."""

    def broken(result: outcome.Outcome[Any]) -> Classification:
        raise KeyError("bug")

    async def undo() -> None:
        raise ConnectionError("down")

    policy = RetryPolicy(max_attempts=3, classifier=broken)
    result = await run_attempts(
        undo, (), name="u", retry=policy, timeout=5.0, what="compensation"
    )
    assert result.attributes["reason"] == "classifier_error"
    assert result.attributes["classification"] is Classification.ABORT
    assert isinstance(result.error, KeyError)


async def test_run_attempts_budget_names_match_the_executor(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A denied retry is 'budget_denied'; a raising budget denies as 'budget_error'."""

    class Raising:
        def try_acquire(self, kind: BudgetKind) -> bool:
            raise RuntimeError("store down")

    async def undo() -> None:
        raise ConnectionError("down")

    for budget, reason in (
        (TokenBucketBudget(capacity=0, refill_per_second=0), "budget_denied"),
        (Raising(), "budget_error"),
    ):
        policy = RetryPolicy(max_attempts=3, budget=budget)
        result = await run_attempts(
            undo, (), name="u", retry=policy, timeout=5.0, what="compensation"
        )
        assert (len(result.attributes["attempts"]), result.attributes["reason"]) == (  # type: ignore[arg-type]
            1,
            reason,
        )
    assert "store down" in caplog.text


async def test_policy_classifier_wins_over_the_executors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Executor(classifier=...) is the default; RetryPolicy(classifier=...) wins."""

    async def op(info: AttemptInfo) -> None:
        raise OutOfStock("gone")

    def everything_retryable(result: outcome.Outcome[Any]) -> Classification:
        return Classification.RETRYABLE

    executor = Executor(classifier=everything_retryable)
    loose = RetryPolicy(max_attempts=3, initial_backoff=0.5)
    result = await executor.run(op, policy=loose, name="a")
    assert result.attributes["retry_groups"] == 3
    strict = RetryPolicy(max_attempts=3, classifier=stock_classifier)
    result = await executor.run(op, policy=strict, name="b")
    assert (result.attributes["retry_groups"], result.attributes["reason"]) == (
        1,
        "out_of_stock",
    )


# -- validation: every constructor and function of the retry and hedge modules -


U: Any = trio_sagas
"""The package, untyped: for feeding it arguments of the wrong type."""


async def _async_classifier(result: object) -> Classification:
    return Classification.SUCCESS


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: U.RetryPolicy(initial_backoff=math.inf),
            ValueError,
            "initial_backoff must be a finite number of seconds, got inf",
        ),
        (
            lambda: U.RetryPolicy(max_backoff=math.inf),
            ValueError,
            "max_backoff must be a finite number of seconds, got inf",
        ),
        (
            lambda: U.RetryPolicy(initial_backoff=math.nan),
            ValueError,
            "initial_backoff must be >= 0 seconds, got nan",
        ),
        (
            lambda: U.RetryPolicy(multiplier=math.inf),
            ValueError,
            "multiplier must be a finite number >= 1, got inf",
        ),
        (
            lambda: U.RetryPolicy(multiplier="2"),
            TypeError,
            "multiplier must be a number, got '2'",
        ),
        (
            lambda: U.RetryPolicy(jitter="0.1"),
            TypeError,
            "jitter must be a number, got '0.1'",
        ),
        (
            lambda: U.RetryPolicy(jitter=math.nan),
            ValueError,
            "jitter must be a number, got nan",
        ),
        (
            lambda: U.RetryPolicy(max_attempts="3"),
            TypeError,
            "max_attempts must be an int >= 1, got '3'",
        ),
        (
            lambda: U.RetryPolicy(max_attempts=None),
            TypeError,
            "max_attempts must be an int >= 1, got None",
        ),
        (
            lambda: U.RetryPolicy(classifier=3),
            TypeError,
            "classifier must be a callable, got 3",
        ),
        (
            lambda: U.RetryPolicy(classifier=_async_classifier),
            TypeError,
            "classifier must be a sync callable",
        ),
        (
            lambda: U.RetryPolicy().backoff("1"),
            TypeError,
            "retry_index must be an int >= 0, got '1'",
        ),
        (
            lambda: U.RetryPolicy().backoff(1, rng=3),
            TypeError,
            "rng must be a Random, got 3",
        ),
        (
            lambda: U.RetryPolicy().cap("1"),
            TypeError,
            "override must be a number of seconds, got '1'",
        ),
        (
            lambda: U.HedgePolicy(trigger=""),
            ValueError,
            "trigger must be a non-empty str, got ''",
        ),
        (
            lambda: U.HedgePolicy(delay=math.nan),
            ValueError,
            "delay must be >= 0 seconds, got nan",
        ),
        (
            lambda: U.HedgePolicy(delay=None),
            TypeError,
            "delay must be a number of seconds, got None",
        ),
        (
            lambda: U.HedgePolicy(max_hedges=2.0),
            TypeError,
            "max_hedges must be an int >= 1, got 2.0",
        ),
        (
            lambda: U.HedgePolicy(cancel_on_first_terminal=1),
            TypeError,
            "cancel_on_first_terminal must be a bool, got 1",
        ),
        (
            lambda: U.Classified("retryable"),
            TypeError,
            "classification must be a Classification (Classification.SUCCESS",
        ),
        (
            lambda: U.Classified(Classification.RETRYABLE, backoff=math.inf),
            ValueError,
            "backoff must be a finite number of seconds, got inf",
        ),
        (
            lambda: U.Classified(Classification.RETRYABLE, reason=3),
            TypeError,
            "reason must be a str, got 3",
        ),
        (
            lambda: U.TokenBucketBudget(math.nan, 1),
            ValueError,
            "capacity must be a number, got nan",
        ),
        (
            lambda: U.TokenBucketBudget(1, -1),
            ValueError,
            "refill_per_second must be a finite number >= 0, got -1",
        ),
        (
            lambda: U.TokenBucketBudget(None, 1),
            TypeError,
            "capacity must be a number, got None",
        ),
        (
            lambda: U.TokenBucketBudget(1, 1).try_acquire("hedge"),
            TypeError,
            "kind must be a BudgetKind (BudgetKind.RETRY",
        ),
        (
            lambda: U.LatencyTrigger(percentile=0),
            ValueError,
            "percentile must be 0 < x <= 1, got 0",
        ),
        (
            lambda: U.LatencyTrigger(percentile=math.nan),
            ValueError,
            "percentile must be a number, got nan",
        ),
        (
            lambda: U.LatencyTrigger(min_samples="3"),
            TypeError,
            "min_samples must be an int >= 1, got '3'",
        ),
        (
            lambda: U.LatencyTrigger(min_samples=-1),
            ValueError,
            "min_samples must be an int >= 1, got -1",
        ),
        (
            lambda: U.LatencyTrigger(fallback_delay=-1),
            ValueError,
            "fallback_delay must be >= 0 seconds, got -1",
        ),
        (
            lambda: U.FixedDelayTrigger(math.nan),
            ValueError,
            "delay must be >= 0 seconds, got nan",
        ),
        (
            lambda: U.FixedDelayTrigger(None),
            TypeError,
            "delay must be a number of seconds, got None",
        ),
        (
            lambda: U.TriggerRegistry([FixedDelayTrigger(1)]),
            TypeError,
            "triggers must be a mapping of name to trigger or None",
        ),
        (
            lambda: U.TriggerRegistry({"a": 3}),
            TypeError,
            "trigger must have a should_spawn_hedge",
        ),
        (
            lambda: U.TriggerRegistry({"": FixedDelayTrigger(1)}),
            ValueError,
            "name must be a non-empty str, got ''",
        ),
        (lambda: U.TriggerRegistry().get(3), TypeError, "name must be a str, got 3"),
        (
            lambda: U.LatencyWindow(size="3"),
            TypeError,
            "size must be an int >= 1, got '3'",
        ),
        (
            lambda: U.LatencyWindow(size=0),
            ValueError,
            "size must be an int >= 1, got 0",
        ),
        (
            lambda: U.LatencyWindow().add(math.inf),
            ValueError,
            "seconds must be a finite number of seconds, got inf",
        ),
        (
            lambda: U.LatencyWindow().add(-1.0),
            ValueError,
            "seconds must be >= 0 seconds, got -1.0",
        ),
        (
            lambda: U.LatencyWindow().add("1"),
            TypeError,
            "seconds must be a number of seconds, got '1'",
        ),
        (
            lambda: U.LatencyWindow().quantile(2),
            ValueError,
            "fraction must be 0 <= x <= 1, got 2",
        ),
        (
            lambda: U.Executor(max_windows="3"),
            TypeError,
            "max_windows must be an int >= 1, got '3'",
        ),
        (
            lambda: U.Executor(latency_window=1.5),
            TypeError,
            "latency_window must be an int >= 1, got 1.5",
        ),
        (lambda: U.Executor(rng=7), TypeError, "rng must be a Random, got 7"),
        (
            lambda: U.Executor(observer=3),
            TypeError,
            "observer must be a callable or None, got 3",
        ),
        (
            lambda: U.Executor(classifier=_async_classifier),
            TypeError,
            "classifier must be a sync callable",
        ),
        (
            lambda: U.Executor(triggers=3),
            TypeError,
            "triggers must be a TriggerRegistry, a mapping or None, got 3",
        ),
    ],
)
def test_bad_arguments_are_named_with_their_value(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    """Wrong type: TypeError; wrong value: ValueError; the message names argument and value."""
    with pytest.raises(error) as caught:
        make()
    assert str(caught.value).startswith(message)


async def test_run_refuses_bad_names_and_policies() -> None:
    """Executor.run checks op, policy and name before starting anything."""

    async def op(info: AttemptInfo) -> None:
        return None

    executor = Executor()
    with pytest.raises(TypeError, match="name must be a str, got 3"):
        await executor.run(op, policy=RetryPolicy(), name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy must be a RetryPolicy, got None"):
        await executor.run(op, policy=None)  # type: ignore[arg-type]


async def test_an_outside_cancel_during_the_backoff_stops_the_tries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled while waiting to retry: trio.Cancelled propagates, no further try."""
    tries: list[float] = []

    async def flaky() -> None:
        tries.append(trio.current_time())
        raise ConnectionError("down")

    policy = RetryPolicy(max_attempts=5, initial_backoff=1.0)
    with trio.fail_after(60), trio.move_on_after(0.5) as scope:
        await run_attempts(flaky, (), name="f", retry=policy, timeout=5.0, what="act")
    assert scope.cancelled_caught
    assert tries == [0.0]
    assert trio.current_time() == 0.5


async def test_a_try_timing_out_is_retried_and_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each try is bounded; a timed-out last try makes the outcome TIMED_OUT."""

    async def hang() -> None:
        await trio.sleep_forever()

    policy = RetryPolicy(max_attempts=2, initial_backoff=0.5)
    with trio.fail_after(60):
        result = await run_attempts(
            hang, (), name="h", retry=policy, timeout=1.0, what="act"
        )
    assert result.status is Status.TIMED_OUT
    assert result.cause is not None
    assert result.cause.reason is CancelReason.STEP_TIMEOUT
    assert str(result.error) == "act 'h' timed out after 1.0 s (try 2)"
    tries = result.attributes["attempts"]
    assert [(r.status, r.started_at, r.finished_at) for r in tries] == [  # type: ignore[attr-defined]
        (Status.TIMED_OUT, 0.0, 1.0),
        (Status.TIMED_OUT, 1.5, 2.5),
    ]
    assert result.attributes["reason"] == "retries_exhausted"


class Fatal(Exception):
    """Classified NON_RETRYABLE by the property's classifier."""


class Abort(Exception):
    """Classified ABORT by the property's classifier."""


def property_classifier(result: outcome.Outcome[Any]) -> Classification | Classified:
    """Values succeed except 'busy' (retryable, 1.25 s override); errors by type."""
    if isinstance(result, outcome.Value):
        if result.value == "busy":
            return Classified(Classification.RETRYABLE, backoff=1.25)
        return Classification.SUCCESS
    assert isinstance(result, outcome.Error)
    if isinstance(result.error, Fatal):
        return Classification.NON_RETRYABLE
    if isinstance(result.error, Abort):
        return Classification.ABORT
    return Classification.RETRYABLE


_TRY_KINDS = {
    "ok": (Classification.SUCCESS, Status.SUCCEEDED),
    "busy": (Classification.RETRYABLE, Status.FAILED),
    "error": (Classification.RETRYABLE, Status.FAILED),
    "fatal": (Classification.NON_RETRYABLE, Status.FAILED),
    "abort": (Classification.ABORT, Status.FAILED),
    "hang": (Classification.RETRYABLE, Status.TIMED_OUT),
}


@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(sorted(_TRY_KINDS)),
            st.integers(min_value=0, max_value=6).map(lambda n: n / 8),
        ),
        min_size=4,
        max_size=4,
    ),
    max_attempts=st.integers(min_value=1, max_value=4),
)
def test_property_retry_loop_follows_the_classifier_and_backoff(
    plan: list[tuple[str, float]], max_attempts: int
) -> None:
    """Tries stop at the first non-retryable verdict or max_attempts, exactly on time."""
    policy = RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=0.25,
        multiplier=2,
        max_backoff=1.5,
        classifier=property_classifier,
    )
    tries = iter(plan)

    async def fn() -> str:
        kind, duration = next(tries)
        if kind == "hang":
            await trio.sleep_forever()
        await trio.sleep(duration)
        if kind == "error":
            raise ConnectionError("down")
        if kind == "fatal":
            raise Fatal("no")
        if kind == "abort":
            raise Abort("stop")
        return kind

    async def main() -> trio_sagas.Outcome[object]:
        with trio.fail_after(100):
            return await run_attempts(
                fn, (), name="p", retry=policy, timeout=1.0, what="act"
            )

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # The model: start times, classifications and statuses, try by try.
    expected: list[tuple[float, float, Classification, Status]] = []
    now = 0.0
    for index, (kind, duration) in enumerate(plan[:max_attempts]):
        if index:
            previous = plan[index - 1][0]
            now += 1.25 if previous == "busy" else min(0.25 * 2 ** (index - 1), 1.5)
        start = now
        now += 1.0 if kind == "hang" else duration
        classification, status = _TRY_KINDS[kind]
        expected.append((start, now, classification, status))
        if classification is not Classification.RETRYABLE:
            break
    records = result.attributes["attempts"]
    assert isinstance(records, tuple)
    assert [
        (r.started_at, r.finished_at, r.classification, r.status) for r in records
    ] == expected
    assert [r.attempt for r in records] == list(range(1, len(records) + 1))
    last_status = expected[-1][3]
    assert result.status is last_status
    assert result.ok == (last_status is Status.SUCCEEDED)
    assert (result.error is None) == result.ok


# -- the retry loop's attributes: records built when read, no cycles -----------


def _records(result: Outcome[object]) -> tuple[AttemptRecord, ...]:
    tries = result.attributes["attempts"]
    assert isinstance(tries, tuple)
    return tries


class _FailsFirst:
    """An action whose first try raises, and later ones return "done"."""

    def __init__(self) -> None:
        self.tries = 0

    async def __call__(self) -> str:
        self.tries += 1
        if self.tries == 1:
            raise ConnectionError("busy")
        return "done"


async def test_run_attempts_attributes_read_as_a_plain_dict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The records are built on the first read (one tuple, the same after),
    and the attributes behave as the dict they stand for: keys, order,
    len, membership, get, copy, equality, repr."""
    action = _FailsFirst()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.5)
    result = await run_attempts(
        action, (), name="undo", retry=policy, timeout=1.0, what="compensation"
    )
    attributes = result.attributes
    assert isinstance(attributes, types.MappingProxyType)
    assert list(attributes) == ["attempts", "classification"]
    assert (len(attributes), "reason" in attributes, "attempts" in attributes) == (
        2,
        False,
        True,
    )
    tries = _records(result)
    assert tries is attributes.get("attempts")
    assert [(t.attempt, t.status, t.started_at, t.finished_at) for t in tries] == [
        (1, Status.FAILED, 0.0, 0.0),
        (2, Status.SUCCEEDED, 0.5, 0.5),
    ]
    assert isinstance(tries[0].error, ConnectionError)
    assert tries[0].classification is Classification.RETRYABLE
    plain = {"attempts": tries, "classification": Classification.SUCCESS}
    assert attributes == plain
    assert dict(attributes) == attributes.copy() == plain
    assert repr(plain) in repr(result)
    with pytest.raises(KeyError):
        attributes["reason"]
    with pytest.raises(TypeError):
        attributes["attempts"] = ()  # type: ignore[index]


async def test_run_attempts_builds_the_records_once_when_read(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No record is built until "attempts" is read (not by membership, len,
    keys or the classification), then each try's once."""
    built: list[int] = []
    record = _loop._record

    def counting(one: Any) -> AttemptRecord:
        built.append(one[0])
        return record(one)

    monkeypatch.setattr(_loop, "_record", counting)
    result = await run_attempts(
        _FailsFirst(),
        (),
        name="undo",
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.5),
        timeout=1.0,
        what="compensation",
    )
    attributes = result.attributes
    assert "attempts" in attributes
    assert (len(attributes), list(attributes)) == (2, ["attempts", "classification"])
    assert attributes["classification"] is Classification.SUCCESS
    assert built == []
    assert _records(result) is _records(result)
    assert built == [0, 1]


async def test_run_attempts_first_try_success_has_one_record(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The common path keeps only its times, and reads back as one record."""
    await trio.sleep(2)

    async def undo() -> str:
        await trio.sleep(1)
        return "done"

    result = await run_attempts(
        undo, (), name="undo", retry=RetryPolicy(), timeout=5.0, what="compensation"
    )
    (only,) = _records(result)
    assert (only.retry_index, only.hedge_index, only.attempt) == (0, 0, 1)
    assert (only.status, only.classification) == (
        Status.SUCCEEDED,
        Classification.SUCCESS,
    )
    assert (only.started_at, only.finished_at, only.error, only.backoff) == (
        2.0,
        3.0,
        None,
        None,
    )


async def test_run_attempts_failure_attributes_name_the_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failure's attributes add the reason, and equal the plain dict."""

    async def undo() -> None:
        raise ConnectionError("down")

    result = await run_attempts(
        undo,
        (),
        name="undo",
        retry=RetryPolicy(max_attempts=2, initial_backoff=1.0),
        timeout=5.0,
        what="compensation",
    )
    tries = _records(result)
    assert result.attributes == {
        "attempts": tries,
        "classification": Classification.RETRYABLE,
        "reason": "retries_exhausted",
    }
    assert [t.status for t in tries] == [Status.FAILED, Status.FAILED]
    assert result.error is tries[-1].error


async def test_retried_actions_leave_no_reference_cycle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A try's error keeps the loop's frame (its traceback), which must not
    keep the tries: retried actions leave nothing for the cyclic GC."""
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.0)
    scope = trio_sagas.CompensationScope()
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            outcome_ = await run_attempts(
                _FailsFirst(), (), name="undo", retry=policy, timeout=1.0, what="x"
            )
            assert outcome_.ok
            del outcome_
        # trio's own bookkeeping may leave a few; a cycle per action would
        # be 50 or more.
        assert gc.collect() < 50
        for _ in range(50):
            scope.register(_FailsFirst())
        assert (await scope.run(retry=policy, timeout=1.0)).ok
        if sys.version_info < (3, 12):
            # From 3.12 a finished frame keeps its caller's frame (f_back):
            # the error's traceback then reaches the scope's frame, whose
            # outcomes hold the error -- a cycle the GC collects, which no
            # local clearing in the loop can prevent.
            assert gc.collect() < 50
    finally:
        gc.enable()


async def test_outer_cancel_mid_retried_rollback_waits_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cancel that arrives while a sequential rollback retries an undo
    neither stops the backoff nor the later undos; the caller feels it after."""
    log: list[tuple[float, str]] = []
    first = _FailsFirst()

    async def flaky() -> str:
        await trio.sleep(1)
        log.append((trio.current_time(), f"flaky try {first.tries + 1}"))
        return await first()

    async def plain() -> None:
        await trio.sleep(1)
        log.append((trio.current_time(), "plain"))

    scope = CompensationScope()
    scope.register(plain)
    scope.register(flaky)
    with trio.CancelScope() as outer:

        async def cancel_soon() -> None:
            await trio.sleep(1.5)  # during the backoff after flaky's first try
            outer.cancel(reason="caller gave up")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_soon)
            report = await scope.run(
                retry=RetryPolicy(max_attempts=2, initial_backoff=2.0), timeout=10
            )
            assert report.ok
            await trio.lowlevel.checkpoint()
            pytest.fail(
                "the outer cancel must be felt after the run"
            )  # pragma: no cover
    assert outer.cancelled_caught
    assert log == [(1.0, "flaky try 1"), (4.0, "flaky try 2"), (5.0, "plain")]
