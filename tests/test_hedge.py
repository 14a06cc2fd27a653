"""The hedged retry executor, on virtual time with exact times."""

from __future__ import annotations

import gc
import logging
import math
import random
import resource
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import attrs
import outcome
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    AttemptInfo,
    AttemptRecord,
    CancelOrigin,
    CancelReason,
    Classification,
    Classified,
    Event,
    Executor,
    FixedDelayTrigger,
    HedgePolicy,
    HedgeState,
    LatencyTrigger,
    LatencyWindow,
    MissingTrigger,
    RetryPolicy,
    Status,
    TokenBucketBudget,
    TriggerRegistry,
)


class Tracker(Protocol):
    """What the conftest ``no_task_leaks`` fixture yields."""

    spawned: int


Leaks = Callable[[], AbstractContextManager[Tracker]]


class Retryable(Exception):
    """A failure the test classifier calls RETRYABLE."""


class Fatal(Exception):
    """A failure the test classifier calls NON_RETRYABLE."""


class Abort(Exception):
    """A failure the test classifier calls ABORT."""


def classify(result: outcome.Outcome[Any]) -> Classification:
    """Map the test exceptions to classifications."""
    if not isinstance(result, outcome.Error):
        return Classification.SUCCESS
    if isinstance(result.error, Fatal):
        return Classification.NON_RETRYABLE
    if isinstance(result.error, Abort):
        return Classification.ABORT
    return Classification.RETRYABLE


Plan = Mapping[int, tuple[float, object]]


@attrs.define
class Script:
    """An operation whose attempt N sleeps plan[N][0], then returns or raises plan[N][1]."""

    plan: Plan
    default: tuple[float, object] = (math.inf, None)
    seen: list[tuple[float, AttemptInfo]] = attrs.Factory(list)
    cancelled: list[int] = attrs.Factory(list)

    async def __call__(self, info: AttemptInfo) -> object:
        self.seen.append((trio.current_time(), info))
        delay, result = self.plan.get(info.attempt, self.default)
        try:
            await trio.sleep(delay)
        except trio.Cancelled:
            self.cancelled.append(info.attempt)
            raise
        if isinstance(result, BaseException):
            raise result
        return result

    @property
    def starts(self) -> list[tuple[float, int, int]]:
        """(time, retry_index, hedge_index) of every attempt that ran."""
        return [(t, i.retry_index, i.hedge_index) for t, i in self.seen]


def hedged(**kwargs: Any) -> HedgePolicy:
    """A HedgePolicy with test-friendly dyadic defaults."""
    kwargs.setdefault("delay", 0.25)
    return HedgePolicy(**kwargs)


def records(result: trio_sagas.Outcome[Any]) -> tuple[AttemptRecord, ...]:
    """The attempt timeline of *result*."""
    timeline = result.attributes["attempts"]
    assert isinstance(timeline, tuple)
    return timeline


def brief(result: trio_sagas.Outcome[Any]) -> list[tuple[object, ...]]:
    """(attempt, retry, hedge, status, classification, cause reason, start, end) rows."""
    return [
        (
            r.attempt,
            r.retry_index,
            r.hedge_index,
            r.status,
            r.classification,
            None if r.cause is None else r.cause.reason,
            r.started_at,
            r.finished_at,
        )
        for r in records(result)
    ]


S, F, C, K = Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED
SUCCESS, RETRY = Classification.SUCCESS, Classification.RETRYABLE
NON_RETRY, ABORT = Classification.NON_RETRYABLE, Classification.ABORT
WINNER, TERMINAL = CancelReason.WINNER, CancelReason.TERMINAL


# -- the four basic scenarios: winner, terminal, retry, budget ---------------


async def test_hedge_wins_and_cancels_the_slow_primary(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Leaks
) -> None:
    """A hedge launched at the delay wins; the primary is cancelled WINNER (internal)."""
    op = Script({1: (10.0, "slow"), 2: (0.25, "fast")})
    executor = Executor()
    with no_task_leaks():
        result = await executor.run(
            op, policy=RetryPolicy(hedge=hedged()), name="fetch"
        )
    assert trio.current_time() == 0.5
    assert result.ok
    assert result.value == "fast"
    assert (result.started_at, result.finished_at) == (0.0, 0.5)
    assert op.starts == [(0.0, 0, 0), (0.25, 0, 1)]
    assert op.cancelled == [1]
    assert brief(result) == [
        (1, 0, 0, C, None, WINNER, 0.0, 0.5),
        (2, 0, 1, S, SUCCESS, None, 0.25, 0.5),
    ]
    cause = records(result)[0].cause
    assert cause is not None
    assert cause.origin is CancelOrigin.INTERNAL
    assert cause.triggered_by == "fetch#2"
    assert result.attributes["retry_groups"] == 1
    assert "reason" not in result.attributes


@pytest.mark.parametrize("cancel_on_first_terminal", [True, False])
async def test_terminal_non_retryable_both_ways(
    autojump_clock: trio.testing.MockClock,
    no_task_leaks: Leaks,
    cancel_on_first_terminal: bool,
) -> None:
    """A NON_RETRYABLE hedge ends the group at once, or lets the in-flight primary win."""
    op = Script({1: (1.0, "primary"), 2: (0.125, Fatal("no"))})
    policy = RetryPolicy(
        hedge=hedged(max_hedges=3, cancel_on_first_terminal=cancel_on_first_terminal)
    )
    events: list[Event] = []
    executor = Executor(classifier=classify, observer=events.append)
    with no_task_leaks():
        result = await executor.run(op, policy=policy, name="x")
    cancelled = [e for e in events if isinstance(e, trio_sagas.HedgeCancelled)]
    if cancel_on_first_terminal:
        assert [(e.at, e.attempt.attempt, e.reason) for e in cancelled] == [
            (0.375, 1, TERMINAL)
        ]
    else:
        assert cancelled == []
    if cancel_on_first_terminal:
        assert trio.current_time() == 0.375
        assert result.status is Status.FAILED
        assert isinstance(result.error, Fatal)
        assert result.attributes["classification"] is NON_RETRY
        assert result.attributes["reason"] == "non_retryable"
        assert brief(result) == [
            (1, 0, 0, C, None, TERMINAL, 0.0, 0.375),
            (2, 0, 1, F, NON_RETRY, None, 0.25, 0.375),
        ]
    else:
        # No third attempt at 0.5 after the terminal result; the primary wins.
        assert trio.current_time() == 1.0
        assert result.ok
        assert result.value == "primary"
        assert brief(result) == [
            (1, 0, 0, S, SUCCESS, None, 0.0, 1.0),
            (2, 0, 1, F, NON_RETRY, None, 0.25, 0.375),
        ]
    assert result.attributes["retry_groups"] == 1
    assert len(op.seen) == 2


async def test_terminal_without_cancel_outranks_a_later_retryable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without cancel_on_first_terminal the group still ends NON_RETRYABLE: no retry."""
    op = Script({1: (1.0, Retryable("late")), 2: (0.125, Fatal("no"))})
    policy = RetryPolicy(max_attempts=5, hedge=hedged())
    result = await Executor(classifier=classify).run(op, policy=policy)
    assert trio.current_time() == 1.0
    assert result.status is Status.FAILED
    assert isinstance(result.error, Fatal)
    assert result.attributes["retry_groups"] == 1
    assert len(op.seen) == 2


async def test_retry_after_group_failure_waits_the_exponential_backoff(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Leaks
) -> None:
    """A failed group is followed by the next after initial_backoff * multiplier**k."""
    op = Script(
        {
            1: (0.125, Retryable("1")),  # group 0 ends at 0.125, before any hedge
            2: (0.5, Retryable("2")),  # group 1 starts 0.625
            3: (0.125, Retryable("3")),  # hedge at 0.875, fails 1.0; group 1 ends 1.125
            4: (0.125, "ok"),  # group 2 starts 1.125 + 1.0
        }
    )
    policy = RetryPolicy(
        max_attempts=3, initial_backoff=0.5, multiplier=2.0, hedge=hedged()
    )
    with no_task_leaks():
        result = await Executor().run(op, policy=policy, name="r")
    assert op.starts == [(0.0, 0, 0), (0.625, 1, 0), (0.875, 1, 1), (2.125, 2, 0)]
    assert trio.current_time() == 2.25
    assert result.ok
    assert result.attributes["retry_groups"] == 3
    assert [r.attempt for r in records(result)] == [1, 2, 3, 4]


async def test_budget_denies_hedges_while_the_primary_runs(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Leaks
) -> None:
    """Denied hedges are SKIPPED records (budget_denied) and never end the group."""
    budget = TokenBucketBudget(capacity=1, refill_per_second=0)
    op = Script({1: (1.0, "primary"), 2: (2.0, "hedge")})
    policy = RetryPolicy(hedge=hedged(max_hedges=4, budget=budget))
    events: list[Event] = []
    with no_task_leaks():
        result = await Executor(observer=events.append).run(op, policy=policy)
    assert trio.current_time() == 1.0
    assert result.ok
    assert result.value == "primary"
    assert brief(result) == [
        (1, 0, 0, S, SUCCESS, None, 0.0, 1.0),
        (2, 0, 1, C, None, WINNER, 0.25, 1.0),
        (3, 0, 2, K, None, None, 0.5, 0.5),
        (4, 0, 3, K, None, None, 0.75, 0.75),
    ]
    assert [r.reason for r in records(result)] == [None, None, "budget_denied"] * 1 + [
        "budget_denied"
    ]
    assert len(op.seen) == 2
    decisions = [e for e in events if isinstance(e, trio_sagas.BudgetDecision)]
    assert [(e.at, e.hedge_index, e.granted) for e in decisions] == [
        (0.25, 1, True),
        (0.5, 2, False),
        (0.75, 3, False),
    ]
    stats = budget.statistics()
    assert (stats.hedges_granted, stats.hedges_denied, stats.tokens) == (1, 2, 0.0)


async def test_budget_denying_every_hedge_still_lets_the_primary_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """capacity=0 denies every hedge; the group waits for its primary."""
    op = Script({1: (1.0, Retryable("x")), 3: (0.125, "ok")})
    budget = TokenBucketBudget(capacity=0, refill_per_second=100)
    policy = RetryPolicy(
        max_attempts=2, initial_backoff=0.5, hedge=hedged(budget=budget)
    )
    result = await Executor().run(op, policy=policy)
    # Group 0: primary fails at 1.0 (hedge denied at 0.25); group 1 at 1.5.
    assert [(r.status, r.started_at) for r in records(result)] == [
        (F, 0.0),
        (K, 0.25),
        (S, 1.5),
    ]
    assert trio.current_time() == 1.625
    assert result.ok


# -- precedence and backoff ----------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "expected", "error"),
    [
        # (latency, result) of the primary and two hedges (at 0.25 and 0.5)
        (
            {1: (2.0, Retryable()), 2: (1.0, Abort()), 3: (0.25, Fatal())},
            NON_RETRY,
            Fatal,
        ),
        (
            {1: (2.0, Fatal()), 2: (1.0, Abort()), 3: (0.25, Retryable())},
            NON_RETRY,
            Fatal,
        ),
        (
            {1: (2.0, Retryable()), 2: (0.5, Abort()), 3: (0.25, Retryable())},
            ABORT,
            Abort,
        ),
        ({1: (2.0, "late"), 2: (0.5, Abort()), 3: (0.25, Fatal())}, SUCCESS, None),
        (
            {
                1: (1.0, Retryable("a")),
                2: (0.5, Retryable("b")),
                3: (1.5, Retryable("c")),
            },
            RETRY,
            Retryable,
        ),
    ],
)
async def test_group_result_follows_the_precedence_table(
    autojump_clock: trio.testing.MockClock,
    plan: Plan,
    expected: Classification,
    error: type[Exception] | None,
) -> None:
    """SUCCESS > NON_RETRYABLE > ABORT > RETRYABLE, whatever the finishing order."""
    op = Script(plan)
    policy = RetryPolicy(max_attempts=1, hedge=hedged(max_hedges=3))
    result = await Executor(classifier=classify).run(op, policy=policy)
    assert result.attributes["classification"] is expected
    assert result.ok is (expected is SUCCESS)
    if error is None:
        assert result.value == "late"
    else:
        assert isinstance(result.error, error)
    assert trio.current_time() == 2.0


async def test_first_to_finish_decides_within_a_class(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Of two RETRYABLE failures, the earlier one is the call's error."""
    early, late = Retryable("early"), Retryable("late")
    op = Script({1: (1.0, late), 2: (0.25, early)})
    policy = RetryPolicy(max_attempts=1, hedge=hedged())
    result = await Executor().run(op, policy=policy)
    assert result.error is early
    assert result.attributes["reason"] == "retries_exhausted"


async def test_backoff_override_is_the_group_maximum_capped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The next group waits the largest override of the group, capped, unjittered."""

    def override(result: outcome.Outcome[Any]) -> Classified | Classification:
        if isinstance(result, outcome.Error):
            seconds = float(str(result.error))
            return Classified(RETRY, backoff=seconds, reason="throttled")
        return SUCCESS

    op = Script(
        {
            1: (0.5, Retryable("0.5")),
            2: (0.125, Retryable("1.5")),
            3: (0.125, Retryable("8")),
            4: (0.125, "ok"),
        }
    )
    policy = RetryPolicy(
        max_attempts=3,
        initial_backoff=0.125,
        max_backoff=4.0,
        jitter=1.0,
        hedge=hedged(),
    )
    events: list[Event] = []
    result = await Executor(classifier=override, observer=events.append).run(
        op, policy=policy
    )
    # Group 0 ends at 0.5 (overrides 0.5 and 1.5) -> group 1 at 2.0;
    # group 1's override 8 is capped at 4 -> group 2 at 2.125 + 4.
    assert op.starts == [(0.0, 0, 0), (0.25, 0, 1), (2.0, 1, 0), (6.125, 2, 0)]
    assert result.ok
    scheduled = [e for e in events if isinstance(e, trio_sagas.RetryScheduled)]
    assert [(e.at, e.retry_index, e.backoff, e.override) for e in scheduled] == [
        (0.5, 1, 1.5, True),
        (2.125, 2, 4.0, True),
    ]
    assert [r.reason for r in records(result)] == ["throttled"] * 3 + [None]


async def test_jittered_backoff_uses_the_executor_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With jitter the wait is policy.backoff drawn from the executor's rng."""
    policy = RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0.5)
    op = Script({1: (0.0, Retryable()), 2: (0.0, "ok")})
    result = await Executor(rng=random.Random(7)).run(op, policy=policy)
    expected = policy.backoff(0, rng=random.Random(7))
    assert 0.5 <= expected <= 1.5
    assert op.starts == [(0.0, 0, 0), (expected, 1, 0)]
    assert result.ok


async def test_retry_budget_denial_ends_the_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A denied retry returns the last group's failure with reason budget_denied."""
    budget = TokenBucketBudget(capacity=1, refill_per_second=0)
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.5, budget=budget)
    op = Script({}, default=(0.25, Retryable("down")))
    result = await Executor().run(op, policy=policy)
    assert op.starts == [(0.0, 0, 0), (0.75, 1, 0)]
    assert trio.current_time() == 1.0
    assert result.status is Status.FAILED
    assert result.attributes["reason"] == "budget_denied"
    assert result.attributes["retry_groups"] == 2


async def test_non_retryable_and_abort_stop_the_retry_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An unhedged NON_RETRYABLE or ABORT result is final: FAILED, no retry."""
    for error, reason in ((Fatal("f"), "non_retryable"), (Abort("a"), "abort")):
        op = Script({1: (0.25, error)})
        result = await Executor(classifier=classify).run(
            op, policy=RetryPolicy(max_attempts=3)
        )
        assert result.status is Status.FAILED
        assert result.error is error
        assert result.attributes["reason"] == reason
        assert len(op.seen) == 1


# -- triggers ------------------------------------------------------------------


async def test_fixed_delay_hedges_launch_at_absolute_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Hedge k starts at group_start + k * delay, in every group."""
    op = Script({}, default=(1.0, Retryable()))
    policy = RetryPolicy(
        max_attempts=2, initial_backoff=0.125, hedge=hedged(max_hedges=4, delay=0.25)
    )
    await Executor().run(op, policy=policy)
    assert [t for t, _ in op.seen] == [0.0, 0.25, 0.5, 0.75, 1.875, 2.125, 2.375, 2.625]


async def test_named_trigger_wins_over_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A registered trigger name is used instead of the policy's delay."""
    registry = TriggerRegistry({"quick": FixedDelayTrigger(0.125)})
    op = Script({1: (1.0, "a"), 2: (1.0, "b")})
    policy = RetryPolicy(hedge=hedged(delay=0.5, trigger="quick"))
    events: list[Event] = []
    result = await Executor(triggers=registry, observer=events.append).run(
        op, policy=policy
    )
    assert op.starts == [(0.0, 0, 0), (0.125, 0, 1)]
    assert "missing_trigger" not in result.attributes
    spawned = [e for e in events if isinstance(e, trio_sagas.HedgeSpawned)]
    assert [(e.at, e.trigger) for e in spawned] == [(0.125, "quick")]


@pytest.mark.parametrize("mode", list(MissingTrigger))
async def test_missing_trigger_falls_back_or_disables(
    autojump_clock: trio.testing.MockClock, mode: MissingTrigger
) -> None:
    """An unregistered trigger name hedges on the fixed delay, or not at all, recorded."""
    op = Script({1: (1.0, "primary"), 2: (0.25, "hedge")})
    policy = RetryPolicy(hedge=hedged(trigger="nope", missing_trigger=mode))
    events: list[Event] = []
    result = await Executor(observer=events.append).run(op, policy=policy, name="m")
    assert result.attributes["missing_trigger"] is mode
    missing = [e for e in events if isinstance(e, trio_sagas.TriggerMissing)]
    assert [(e.at, e.name, e.trigger, e.action) for e in missing] == [
        (0.0, "m", "nope", mode.value)
    ]
    if mode is MissingTrigger.FALLBACK:
        assert op.starts == [(0.0, 0, 0), (0.25, 0, 1)]
        assert (result.value, trio.current_time()) == ("hedge", 0.5)
    else:
        assert op.starts == [(0.0, 0, 0)]
        assert (result.value, trio.current_time()) == ("primary", 1.0)


@attrs.define
class Exploding:
    """A trigger that answers *answers* in turn, then raises."""

    answers: list[tuple[bool, float]]
    error: Exception = attrs.Factory(lambda: RuntimeError("trigger broke"))

    def should_spawn_hedge(self, state: HedgeState) -> tuple[bool, float]:
        """Pop an answer or raise."""
        if self.answers:
            return self.answers.pop(0)
        raise self.error


@pytest.mark.parametrize(
    ("answers", "end"), [([], 0.0), ([(False, 0.25)], 0.25), ([(True, 0.5)], 0.5)]
)
async def test_trigger_raising_aborts_the_call_without_hanging(
    autojump_clock: trio.testing.MockClock,
    no_task_leaks: Leaks,
    answers: list[tuple[bool, float]],
    end: float,
) -> None:
    """A trigger error ends the call FAILED (trigger_error); attempts are cancelled."""
    trigger = Exploding(list(answers))
    op = Script({}, default=(math.inf, None))
    policy = RetryPolicy(max_attempts=3, hedge=hedged(max_hedges=3, trigger="t"))
    events: list[Event] = []
    executor = Executor(triggers={"t": trigger}, observer=events.append)
    with no_task_leaks():
        result = await executor.run(op, policy=policy)
    assert trio.current_time() == end
    assert result.status is Status.FAILED
    assert result.error is trigger.error
    assert result.attributes["reason"] == "trigger_error"
    assert result.attributes["retry_groups"] == 1
    assert all(r.status is C for r in records(result))
    assert all(r.reason == "trigger_error" for r in records(result))
    assert {r.cause.reason for r in records(result) if r.cause} == {TERMINAL}
    errors = [
        e for e in events if isinstance(e, trio_sagas.TriggerDecision) and e.error
    ]
    assert [(e.at, e.error) for e in errors] == [(end, trigger.error)]


@pytest.mark.parametrize("answer", [(True,), "yes", (True, "1"), (True, math.nan)])
async def test_malformed_trigger_answer_is_a_trigger_error(
    autojump_clock: trio.testing.MockClock, answer: object
) -> None:
    """A trigger returning something other than (spawn, seconds) aborts the call."""

    class Bad:
        def should_spawn_hedge(self, state: HedgeState) -> object:
            return answer

    policy = RetryPolicy(hedge=hedged(trigger="bad"))
    executor = Executor(triggers={"bad": Bad()})  # type: ignore[dict-item]
    result = await executor.run(Script({1: (1.0, "x")}), policy=policy)
    assert result.attributes["reason"] == "trigger_error"
    assert isinstance(result.error, (TypeError, ValueError))
    assert trio.current_time() == 0.0


async def test_a_failure_does_not_launch_the_next_hedge_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """When the last in-flight attempt fails the group ends; no hedge fills the gap."""
    op = Script({1: (0.125, Retryable()), 2: (0.125, "ok")})
    policy = RetryPolicy(max_attempts=2, initial_backoff=1.0, hedge=hedged())
    result = await Executor().run(op, policy=policy)
    assert op.starts == [(0.0, 0, 0), (1.125, 1, 0)]
    assert result.ok


# -- latency trigger -----------------------------------------------------------


def state(**kwargs: Any) -> HedgeState:
    """A HedgeState with neutral defaults."""
    values: dict[str, Any] = {
        "name": "n",
        "call_started_at": 0.0,
        "group_started_at": 0.0,
        "now": 0.0,
        "retry_index": 0,
        "attempts_launched": 1,
        "in_flight": 1,
        "max_hedges": 3,
        "delay": 0.5,
        "latency": LatencyWindow(),
    }
    values.update(kwargs)
    return HedgeState(**values)


async def test_latency_trigger_warms_up_then_tracks_the_percentile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Before min_samples the fallback delay applies; then the window's percentile."""
    trigger = LatencyTrigger(percentile=0.5, min_samples=3, fallback_delay=1.0)
    executor = Executor(triggers={"p50": trigger})
    policy = RetryPolicy(hedge=hedged(trigger="p50"))

    async def call(primary: float, hedge: float = 10.0) -> tuple[float, list[float]]:
        op = Script({1: (primary, "p"), 2: (hedge, "h")})
        start = trio.current_time()
        await executor.run(op, policy=policy, name="get")
        return trio.current_time() - start, [t - start for t, _ in op.seen]

    # Warm-up: three calls finishing under the 1.0 fallback, no hedges.
    for latency in (0.25, 0.5, 0.75):
        assert await call(latency) == (latency, [0.0])
    window = executor.latency("get")
    assert window is not None
    assert len(window) == 3
    assert window.quantile(0.5) == 0.5
    # Warm: a slow primary is hedged at the median 0.5, and the hedge wins.
    assert await call(10.0, hedge=0.25) == (0.75, [0.0, 0.5])
    # Samples: the hedge's 0.25 and the superseded primary's 0.75 (a lower bound).
    assert len(window) == 5
    assert window.quantile(0.5) == 0.5
    assert window.quantile(1.0) == 0.75
    assert executor.latency("other") is None


async def test_latency_window_excludes_fast_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Failed attempts add no latency sample; successes do."""
    executor = Executor(triggers={"p99": LatencyTrigger(percentile=0.99)})
    op = Script({1: (0.125, Retryable()), 2: (0.5, "ok")})
    policy = RetryPolicy(initial_backoff=0.25, hedge=hedged(trigger="p99", delay=1.0))
    await executor.run(op, policy=policy, name="w")
    window = executor.latency("w")
    assert window is not None
    assert (len(window), window.quantile(1.0), window.quantile(0.0)) == (1, 0.5, 0.5)


async def test_terminal_cancelled_attempts_add_no_sample(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Attempts cancelled by a terminal result are not latency samples."""
    executor = Executor(classifier=classify, triggers={"p": LatencyTrigger()})
    op = Script({1: (1.0, "p"), 2: (0.125, Fatal())})
    policy = RetryPolicy(hedge=hedged(cancel_on_first_terminal=True, trigger="p"))
    await executor.run(op, policy=policy, name="t")
    window = executor.latency("t")
    assert window is not None
    assert len(window) == 0


def test_latency_trigger_spawns_at_most_one_hedge_per_check() -> None:
    """A late check launches one hedge and waits a full threshold for the next."""
    window = LatencyWindow()
    for _ in range(10):
        window.add(0.25)
    trigger = LatencyTrigger(percentile=0.95, min_samples=10)
    assert trigger.threshold(state(latency=window)) == 0.25
    assert trigger.should_spawn_hedge(state(latency=window, now=0.125)) == (
        False,
        0.125,
    )
    assert trigger.should_spawn_hedge(state(latency=window, now=0.25)) == (True, 0.25)
    # Two hedges overdue at 1.0: still one now, the next 0.25 later.
    assert trigger.should_spawn_hedge(state(latency=window, now=1.0)) == (True, 0.25)
    # Warm-up falls back to the policy delay, or to fallback_delay.
    cold = LatencyTrigger(min_samples=11)
    assert cold.threshold(state(latency=window)) == 0.5
    assert (
        LatencyTrigger(min_samples=11, fallback_delay=2.0).threshold(
            state(latency=window)
        )
        == 2.0
    )


def test_fixed_delay_trigger_schedule() -> None:
    """FixedDelayTrigger answers with the time left to group_start + k * delay."""
    trigger = FixedDelayTrigger(0.25)
    assert trigger.should_spawn_hedge(state(group_started_at=1.0, now=1.0)) == (
        False,
        0.25,
    )
    assert trigger.should_spawn_hedge(
        state(group_started_at=1.0, now=1.5, attempts_launched=2)
    ) == (True, 0.25)
    assert FixedDelayTrigger(math.inf).should_spawn_hedge(state()) == (False, math.inf)
    # A check overdue by more than a whole delay asks to be consulted at once.
    assert trigger.should_spawn_hedge(state(now=1.0)) == (True, 0.0)
    # Rounding never wakes the executor before a hedge is due.
    st_ = state(group_started_at=0.1, now=0.3)
    spawn, wait = FixedDelayTrigger(0.3).should_spawn_hedge(st_)
    assert not spawn
    assert 0.3 + wait >= 0.1 + 0.3


def test_latency_window_quantiles() -> None:
    """Nearest-rank quantiles, exact on dyadic values, within 1/64 above otherwise."""
    window = LatencyWindow(size=100)
    assert window.quantile(0.5) is None
    for value in [0.125] * 95 + [1.0] * 5:
        window.add(value)
    assert window.quantile(0.95) == 0.125
    assert window.quantile(0.96) == 1.0
    assert window.quantile(0.0) == 0.125
    window.add(0.0)  # evicts one 0.125
    assert window.quantile(0.0) == 0.0
    assert len(window) == 100
    other = LatencyWindow(size=3)
    for value in (0.01, 7.3, 1e9):
        other.add(value)
    low, mid, high = (other.quantile(q) for q in (0.0, 0.5, 1.0))
    assert low is not None
    assert 0.01 <= low <= 0.01 * (1 + 1 / 64)
    assert mid is not None
    assert 7.3 <= mid <= 7.3 * (1 + 1 / 64)
    assert high is not None
    assert high >= 2.0**19
    other.add(0.5)  # the window keeps the last three: 0.01 drops out
    assert (other.quantile(0.0), other.quantile(0.5)) == (0.5, mid)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: LatencyWindow(size=0), ValueError),
        (lambda: LatencyWindow().add(-1.0), ValueError),
        (lambda: LatencyWindow().quantile(1.5), ValueError),
        (lambda: LatencyTrigger(percentile=0), ValueError),
        (lambda: LatencyTrigger(percentile="0.9"), TypeError),
        (lambda: LatencyTrigger(min_samples=-1), ValueError),
        (lambda: LatencyTrigger(fallback_delay=-1.0), ValueError),
        (lambda: FixedDelayTrigger(-0.5), ValueError),
        (lambda: FixedDelayTrigger("1"), TypeError),
        (lambda: TokenBucketBudget(-1, 1), ValueError),
        (lambda: TokenBucketBudget(1, math.inf), ValueError),
        (lambda: TokenBucketBudget("1", 1), TypeError),  # type: ignore[arg-type]
        (lambda: HedgePolicy(max_hedges=0), ValueError),
        (lambda: HedgePolicy(delay=-0.1), ValueError),
        (lambda: RetryPolicy(max_attempts=0), ValueError),
        (lambda: RetryPolicy(initial_backoff=-1), ValueError),
        (lambda: RetryPolicy(max_backoff=-1), ValueError),
        (lambda: RetryPolicy(jitter=1.5), ValueError),
        (lambda: RetryPolicy(jitter=-0.1), ValueError),
    ],
)
def test_bad_configuration_fails_fast(make: Callable[[], object], error: type) -> None:
    """Bad values raise ValueError/TypeError at construction."""
    with pytest.raises(error):
        make()


def test_hedge_policy_defaults() -> None:
    """Hedging without values: two attempts per group, 0.2 s apart."""
    policy = HedgePolicy()
    assert (policy.max_hedges, policy.delay) == (2, 0.2)
    assert policy.missing_trigger is MissingTrigger.FALLBACK


# -- registry, budget, executor validation -------------------------------------


def test_trigger_registry() -> None:
    """register/get, None for an unknown name, duplicates and non-triggers refused."""
    trigger = FixedDelayTrigger(1.0)
    registry = TriggerRegistry()
    registry.register("a", trigger)
    assert registry.get("a") is trigger
    assert registry.get("b") is None
    assert "a" in registry
    assert list(registry) == ["a"]
    assert len(registry) == 1
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.register("a", trigger)
    with pytest.raises(TypeError, match="should_spawn_hedge"):
        registry.register("b", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        registry.register("", trigger)


async def test_token_bucket_refills_on_the_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Starts full, one token per attempt, refills continuously up to capacity."""
    budget = TokenBucketBudget(capacity=2, refill_per_second=4)
    hedge = trio_sagas.BudgetKind.HEDGE
    assert [budget.try_acquire(hedge) for _ in range(3)] == [True, True, False]
    await trio.sleep(0.125)  # half a token
    assert not budget.try_acquire(trio_sagas.BudgetKind.RETRY)
    await trio.sleep(0.125)
    assert budget.try_acquire(hedge)
    await trio.sleep(10)
    assert budget.statistics().tokens == 2.0
    stats = budget.statistics()
    assert (stats.hedges_granted, stats.hedges_denied) == (3, 1)
    assert (stats.retries_granted, stats.retries_denied) == (0, 1)
    with pytest.raises(TypeError):
        budget.try_acquire("hedge")  # type: ignore[arg-type]
    assert not TokenBucketBudget(capacity=0, refill_per_second=5).try_acquire(hedge)


async def test_run_validates_its_arguments() -> None:
    """Sync ops, wrong policies, empty names and bad executor options are refused."""
    executor = Executor()

    def sync(info: AttemptInfo) -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        await executor.run(sync, policy=RetryPolicy())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RetryPolicy"):
        await executor.run(Script({}), policy=HedgePolicy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        await executor.run(Script({}), policy=RetryPolicy(), name="")

    async def async_classifier(result: object) -> Classification:
        return SUCCESS

    with pytest.raises(TypeError, match="classifier"):
        Executor(classifier=async_classifier)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="triggers"):
        Executor(triggers=[FixedDelayTrigger(1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_window must be an int >= 1, got 0"):
        Executor(latency_window=0)
    with pytest.raises(ValueError, match="max_windows must be an int >= 1, got 0"):
        Executor(max_windows=0)
    with pytest.raises(TypeError, match="rng"):
        Executor(rng=7)  # type: ignore[arg-type]


# -- classifier ----------------------------------------------------------------


async def test_value_classified_as_failure_is_kept_on_the_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A result classified RETRYABLE is retried; the last one stays as the value."""

    def empty_is_retryable(result: outcome.Outcome[Any]) -> Classification:
        if isinstance(result, outcome.Value) and result.value:
            return SUCCESS
        return RETRY

    op = Script({}, default=(0.25, []))
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.25)
    result = await Executor(classifier=empty_is_retryable).run(op, policy=policy)
    assert result.status is Status.FAILED
    assert result.value == []
    assert result.error is None
    with pytest.raises(trio_sagas.OutcomeError):
        result.unwrap()
    assert trio.current_time() == 0.75


@pytest.mark.parametrize("bad", ["raises", "junk"])
async def test_classifier_bug_aborts_the_attempt(
    autojump_clock: trio.testing.MockClock, bad: str
) -> None:
    """A classifier that raises or returns junk makes the attempt ABORT."""

    def classifier(result: outcome.Outcome[Any]) -> Classification:
        if bad == "raises":
            raise LookupError("bug")
        return "success"  # type: ignore[return-value]

    result = await Executor(classifier=classifier).run(
        Script({1: (0.25, "v")}), policy=RetryPolicy()
    )
    assert result.status is Status.FAILED
    assert result.attributes["reason"] == "classifier_error"
    assert isinstance(result.error, (LookupError, TypeError))
    assert records(result)[0].classification is ABORT


# -- cancellation ------------------------------------------------------------


@pytest.mark.parametrize("hedge", [None, hedged(max_hedges=3)])
async def test_external_cancel_propagates_and_stops_everything(
    autojump_clock: trio.testing.MockClock,
    no_task_leaks: Leaks,
    hedge: HedgePolicy | None,
) -> None:
    """The caller's cancel raises trio.Cancelled out of run: no retry, no task left."""
    op = Script({}, default=(10.0, Retryable()))
    events: list[Event] = []
    executor = Executor(observer=events.append)
    policy = RetryPolicy(max_attempts=3, hedge=hedge)
    saw_cancelled = False
    with no_task_leaks(), trio.move_on_after(0.625) as scope:
        try:
            await executor.run(op, policy=policy, name="c")
        except trio.Cancelled:
            saw_cancelled = True
            raise
    assert scope.cancelled_caught
    assert saw_cancelled
    assert trio.current_time() == 0.625
    expected = [1] if hedge is None else [1, 2, 3]
    assert sorted(op.cancelled) == expected
    finished = [e for e in events if isinstance(e, trio_sagas.AttemptFinished)]
    assert sorted(e.attempt.attempt for e in finished) == expected
    assert all(e.status is C and e.cause is not None for e in finished)
    assert {e.cause.origin for e in finished if e.cause} == {CancelOrigin.EXTERNAL}
    cancelled = [e for e in events if isinstance(e, trio_sagas.HedgeCancelled)]
    assert sorted(e.attempt.attempt for e in cancelled) == (
        [] if hedge is None else expected
    )
    assert {e.reason for e in cancelled} <= {CancelReason.EXTERNAL}


async def test_external_cancel_during_backoff_does_not_retry(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Leaks
) -> None:
    """Cancelled while waiting to retry: no further attempt starts."""
    op = Script({}, default=(0.25, Retryable()))
    with no_task_leaks(), trio.move_on_after(0.5) as scope:
        await Executor().run(op, policy=RetryPolicy(initial_backoff=1.0))
    assert scope.cancelled_caught
    assert len(op.seen) == 1
    assert trio.current_time() == 0.5


async def test_winner_cancel_reason_reaches_trio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The losing attempt's trio.Cancelled carries the readable WINNER reason."""
    reasons: list[str | None] = []

    async def op(info: AttemptInfo) -> int:
        if info.hedge_index:
            return info.attempt
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            reasons.append(exc.reason)
            raise
        raise AssertionError("unreachable")

    result = await Executor().run(op, policy=RetryPolicy(hedge=hedged()), name="w")
    assert result.value == 2
    assert reasons == [
        "winner (internal), triggered by 'w#2': attempt 2 succeeded first"
    ]


class Crash(BaseException):
    """Not an Exception: must never be classified or swallowed."""


async def test_base_exception_from_an_attempt_propagates(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Leaks
) -> None:
    """A BaseException that is not a cancellation crashes the call, grouped (strict)."""
    op = Script({1: (1.0, "slow"), 2: (0.25, Crash())})
    with no_task_leaks(), pytest.RaisesGroup(Crash):
        await Executor().run(op, policy=RetryPolicy(hedge=hedged()))
    assert op.cancelled == [1]
    with pytest.raises(Crash):
        await Executor().run(Script({1: (0.0, Crash())}), policy=RetryPolicy())


# -- numbering, events, observer -----------------------------------------------


async def test_attempt_numbers_are_global_and_monotonic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """AttemptInfo.attempt counts 1, 2, 3... across groups; denied hedges use one up."""
    budget = TokenBucketBudget(capacity=1, refill_per_second=0)
    op = Script({}, default=(0.625, Retryable()))
    policy = RetryPolicy(
        max_attempts=2,
        initial_backoff=0.25,
        hedge=hedged(max_hedges=3, budget=budget),
    )
    result = await Executor().run(op, policy=policy)
    seen = [(i.attempt, i.retry_index, i.hedge_index, i.is_hedge) for _, i in op.seen]
    assert seen == [
        (1, 0, 0, False),
        (2, 0, 1, True),
        (4, 1, 0, False),
    ]
    assert [
        (r.attempt, r.retry_index, r.hedge_index, r.status) for r in records(result)
    ] == [
        (1, 0, 0, F),
        (2, 0, 1, F),
        (3, 0, 2, K),
        (4, 1, 0, F),
        (5, 1, 1, K),
        (6, 1, 2, K),
    ]
    assert [r.is_hedge for r in records(result)] == [
        False,
        True,
        True,
        False,
        True,
        True,
    ]


async def test_observer_sees_the_hedge_race_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Trigger decisions, the spawn, both endings and the cancel reason, in order."""
    events: list[Event] = []
    op = Script({1: (10.0, "slow"), 2: (0.25, "fast")})
    await Executor(observer=events.append).run(
        op, policy=RetryPolicy(hedge=hedged()), name="o"
    )
    summary = [(type(e).__name__, e.at) for e in events]
    assert summary == [
        ("TriggerDecision", 0.0),
        ("TriggerDecision", 0.25),
        ("HedgeSpawned", 0.25),
        ("AttemptFinished", 0.5),
        ("AttemptFinished", 0.5),
        ("HedgeCancelled", 0.5),
    ]
    decisions = [e for e in events if isinstance(e, trio_sagas.TriggerDecision)]
    assert [(e.spawn, e.next_check_in, e.trigger) for e in decisions] == [
        (False, 0.25, "fixed_delay"),
        (True, 0.25, "fixed_delay"),
    ]
    finished = [e for e in events if isinstance(e, trio_sagas.AttemptFinished)]
    assert [
        (e.attempt.attempt, e.status, e.classification, e.is_hedge) for e in finished
    ] == [
        (2, S, SUCCESS, True),
        (1, C, None, False),
    ]
    cancelled = [e for e in events if isinstance(e, trio_sagas.HedgeCancelled)]
    assert [(e.attempt.attempt, e.reason) for e in cancelled] == [(1, WINNER)]
    assert {e.name for e in finished} | {e.name for e in cancelled} == {"o"}


async def test_a_raising_observer_does_not_break_the_call(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Observer errors are logged and isolated."""

    def observer(event: Event) -> None:
        raise RuntimeError("observer bug")

    op = Script({1: (1.0, "p"), 2: (0.25, "h")})
    result = await Executor(observer=observer).run(
        op, policy=RetryPolicy(hedge=hedged())
    )
    assert result.value == "h"
    assert "observer bug" in caplog.text


async def test_no_hedging_runs_in_the_callers_task(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Leaks
) -> None:
    """Without hedging (or max_hedges=1) no task is spawned at all."""
    for policy in (RetryPolicy(), RetryPolicy(hedge=HedgePolicy(max_hedges=1))):
        with no_task_leaks() as tracker:
            result = await Executor().run(Script({1: (0.25, 1)}), policy=policy)
        assert result.ok
        assert tracker.spawned == 0


def test_public_names_claim_the_package() -> None:
    """Hedging names are exported, final where classes, and say trio_sagas."""
    for name in (
        "Executor",
        "AttemptInfo",
        "AttemptRecord",
        "FixedDelayTrigger",
        "LatencyTrigger",
        "LatencyWindow",
        "TriggerRegistry",
        "TokenBucketBudget",
        "HedgeState",
        "AttemptFinished",
        "HedgeSpawned",
        "HedgeCancelled",
        "BudgetDecision",
        "TriggerDecision",
    ):
        obj = getattr(trio_sagas, name)
        assert name in trio_sagas.__all__
        assert obj.__module__ == "trio_sagas"
        assert getattr(obj, "__final__", False), name
    assert isinstance(FixedDelayTrigger(1), trio_sagas.HedgeTrigger)


# -- the property --------------------------------------------------------------

_KINDS = {"ok": None, "retry": Retryable, "fatal": Fatal, "abort": Abort}


@given(
    plan=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=8).map(lambda n: n / 8),
            st.sampled_from(sorted(_KINDS)),
        ),
        min_size=1,
        max_size=12,
    ),
    max_attempts=st.integers(min_value=1, max_value=3),
    max_hedges=st.integers(min_value=1, max_value=4),
    delay=st.sampled_from([0.0, 0.125, 0.25, 0.5]),
    cancel_on_first_terminal=st.booleans(),
    budget=st.sampled_from([None, 0, 1, 2]),
)
def test_property_groups_follow_the_precedence_table(
    no_task_leaks: Leaks,
    plan: list[tuple[float, str]],
    max_attempts: int,
    max_hedges: int,
    delay: float,
    cancel_on_first_terminal: bool,
    budget: int | None,
) -> None:
    """For random latencies and results: precedence holds, hedges keep their absolute
    schedule (delay 0 included), no leak, bounded attempts."""
    results: dict[int, tuple[float, object]] = {}
    for index, (latency, kind) in enumerate(plan, start=1):
        error = _KINDS[kind]
        results[index] = (latency, f"v{index}" if error is None else error(str(index)))
    op = Script(results, default=(0.25, Retryable("default")))
    policy = RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=0.125,
        hedge=HedgePolicy(
            max_hedges=max_hedges,
            delay=delay,
            cancel_on_first_terminal=cancel_on_first_terminal,
            budget=None if budget is None else TokenBucketBudget(budget, 0),
        ),
    )

    async def main() -> trio_sagas.Outcome[Any]:
        with no_task_leaks():
            return await Executor(classifier=classify).run(op, policy=policy)

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    timeline = records(result)
    assert result.attributes.get("reason") != "trigger_error"
    assert [r.attempt for r in timeline] == list(range(1, len(timeline) + 1))
    assert len(timeline) <= max_attempts * max_hedges
    groups: dict[int, list[AttemptRecord]] = {}
    for record in timeline:
        groups.setdefault(record.retry_index, []).append(record)
    assert list(groups) == list(range(len(groups)))
    for index, group in groups.items():
        assert len(group) <= max_hedges
        # Absolute schedule: hedge k (run or denied) at group start + k * delay.
        assert [r.started_at for r in group] == [
            group[0].started_at + r.hedge_index * delay for r in group
        ]
        done = sorted(
            (r for r in group if r.classification is not None),
            key=lambda r: r.finished_at,
        )
        assert done, "every group has an attempt that finished on its own"
        rank = [SUCCESS, NON_RETRY, ABORT, RETRY]
        best = min(done, key=lambda r: rank.index(r.classification))  # type: ignore[arg-type]
        cancelled = [r for r in group if r.status is C]
        for record in cancelled:
            assert record.cause is not None
            assert record.cause.origin is CancelOrigin.INTERNAL
            assert record.cause.reason in (WINNER, TERMINAL)
            if record.cause.reason is TERMINAL:
                assert cancel_on_first_terminal
        if index < len(groups) - 1:
            assert best.classification is RETRY
        else:
            assert result.attributes["classification"] is best.classification
            assert result.ok is (best.classification is SUCCESS)
            if best.classification is SUCCESS:
                first_success = min(
                    (r for r in done if r.classification is SUCCESS),
                    key=lambda r: r.finished_at,
                )
                assert result.value == f"v{first_success.attempt}"
            if best.classification is RETRY:
                assert index == max_attempts - 1
    assert len(op.seen) == sum(r.status is not K for r in timeline)


@attrs.define
class Recording:
    """A trigger that records every state it is shown and never hedges."""

    answer: float = math.inf
    states: list[HedgeState] = attrs.Factory(list)

    def should_spawn_hedge(self, state: HedgeState) -> tuple[bool, float]:
        """Record the state; ask again after *answer* seconds."""
        self.states.append(state)
        return False, self.answer


async def test_hedge_state_carries_call_and_group_facts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Call start, group start, now, elapsed, indices, in-flight and the window."""
    trigger = Recording(answer=0.25)
    executor = Executor(triggers={"rec": trigger})
    policy = RetryPolicy(
        max_attempts=2,
        initial_backoff=0.5,
        hedge=hedged(max_hedges=3, delay=0.125, trigger="rec"),
    )
    await trio.sleep(1.0)
    op = Script({1: (0.375, Retryable()), 2: (0.125, "ok")})
    await executor.run(op, policy=policy, name="facts")
    seen = [
        (
            s.name,
            s.call_started_at,
            s.group_started_at,
            s.now,
            s.elapsed,
            s.retry_index,
            s.attempts_launched,
            s.in_flight,
            s.max_hedges,
            s.delay,
        )
        for s in trigger.states
    ]
    assert seen == [
        ("facts", 1.0, 1.0, 1.0, 0.0, 0, 1, 1, 3, 0.125),
        ("facts", 1.0, 1.0, 1.25, 0.25, 0, 1, 1, 3, 0.125),
        ("facts", 1.0, 1.875, 1.875, 0.0, 1, 1, 1, 3, 0.125),
    ]
    assert all(s.latency is executor.latency("facts") for s in trigger.states)


async def test_trigger_checks_are_clamped_to_the_floor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A trigger asking to be consulted again at once is consulted CHECK_FLOOR later."""
    assert trio_sagas.CHECK_FLOOR == 0.001
    trigger = Recording(answer=0.0)
    op = Script({1: (0.0015, "ok")})
    policy = RetryPolicy(hedge=hedged(trigger="zero"))
    await Executor(triggers={"zero": trigger}).run(op, policy=policy)
    assert [s.now for s in trigger.states] == [0.0, 0.001]


async def test_a_hedge_cut_short_by_an_older_winner_adds_no_sample(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only attempts outrun by a faster winner are superseded samples."""
    executor = Executor(triggers={"p": LatencyTrigger()})
    op = Script({1: (0.375, "primary"), 2: (1.0, "hedge")})
    await executor.run(op, policy=RetryPolicy(hedge=hedged(trigger="p")), name="s")
    window = executor.latency("s")
    assert window is not None
    # The primary's 0.375; the hedge ran 0.125 < 0.375 when it was cancelled.
    assert (len(window), window.quantile(0.0)) == (1, 0.375)


async def test_an_exception_classified_as_success_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A classifier may accept an exception: SUCCEEDED, the record keeps the error."""
    missing = KeyError("absent")
    result = await Executor(classifier=lambda result: SUCCESS).run(
        Script({1: (0.25, missing)}), policy=RetryPolicy()
    )
    assert result.ok
    assert (result.value, result.error) == (None, None)
    assert records(result)[0].error is missing


def test_reprs_name_the_public_classes() -> None:
    """Stateful objects have short reprs under the package name."""
    assert repr(Executor(triggers={"a": FixedDelayTrigger(1)})) == (
        "<trio_sagas.Executor triggers=['a']>"
    )
    assert repr(TriggerRegistry()) == "<trio_sagas.TriggerRegistry []>"
    assert repr(LatencyWindow(size=5)) == "<trio_sagas.LatencyWindow 0/5 samples>"
    assert repr(TokenBucketBudget(1, 0.5)) == (
        "<trio_sagas.TokenBucketBudget capacity=1.0 refill_per_second=0.5>"
    )
    assert LatencyWindow(size=5).size == 5
    assert Executor().triggers is not None


async def test_raising_budget_fails_closed(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A budget whose try_acquire raises denies (hedge and retry), is logged, never crashes."""

    class Broken:
        def try_acquire(self, kind: trio_sagas.BudgetKind) -> bool:
            raise RuntimeError("budget store down")

    calls: list[float] = []

    async def op(attempt: trio_sagas.AttemptInfo) -> str:
        calls.append(trio.current_time())
        await trio.sleep(1)
        raise ConnectionError("down")

    policy = trio_sagas.RetryPolicy(
        max_attempts=3,
        budget=Broken(),
        hedge=trio_sagas.HedgePolicy(max_hedges=2, delay=0.5, budget=Broken()),
    )
    with caplog.at_level(logging.ERROR, logger="trio_sagas"):
        result = await trio_sagas.Executor().run(op, policy=policy, name="fetch")
    assert calls == [0.0]
    assert result.status is trio_sagas.Status.FAILED
    assert result.attributes["reason"] == "budget_error"
    records = result.attributes["attempts"]
    assert [r.reason for r in records] == [None, "budget_error"]  # type: ignore[attr-defined]
    assert len(caplog.records) == 2


async def test_a_hedge_due_when_an_attempt_succeeds_is_not_launched(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ties go to the result: a hedge due at a success's instant never launches (20 tries)."""

    async def op(attempt: trio_sagas.AttemptInfo) -> str:
        await trio.sleep(5.0 if attempt.hedge_index == 0 else 1.0)
        return "ok"

    policy = trio_sagas.RetryPolicy(
        hedge=trio_sagas.HedgePolicy(max_hedges=3, delay=1.0)
    )
    for _ in range(20):
        result = await trio_sagas.Executor().run(op, policy=policy, name="fetch")
        records = result.attributes["attempts"]
        assert [r.hedge_index for r in records] == [0, 1]  # type: ignore[attr-defined]
        assert result.finished_at is not None
        assert result.duration == 2.0


# -- zero delay, absolute schedule, denied hedges (issues 16 and 21) ----------


async def test_zero_delay_launches_every_attempt_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """HedgePolicy(delay=0): group_start + k * 0, so all attempts start together."""
    op = Script({1: (1.0, "p"), 2: (0.75, "h1"), 3: (0.5, "h2")})
    policy = RetryPolicy(hedge=hedged(max_hedges=3, delay=0))
    with trio.fail_after(10):
        await trio.sleep(2.0)
        result = await Executor().run(op, policy=policy)
    assert op.starts == [(2.0, 0, 0), (2.0, 0, 1), (2.0, 0, 2)]
    assert result.value == "h2"
    assert trio.current_time() == 2.5
    assert brief(result) == [
        (1, 0, 0, C, None, WINNER, 2.0, 2.5),
        (2, 0, 1, C, None, WINNER, 2.0, 2.5),
        (3, 0, 2, S, SUCCESS, None, 2.0, 2.5),
    ]


async def test_zero_delay_in_every_retry_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each retry group launches its attempts together at its own start."""
    op = Script({}, default=(0.25, Retryable()))
    policy = RetryPolicy(
        max_attempts=2, initial_backoff=0.5, hedge=hedged(max_hedges=2, delay=0)
    )
    with trio.fail_after(10):
        await Executor().run(op, policy=policy)
    assert op.starts == [(0.0, 0, 0), (0.0, 0, 1), (0.75, 1, 0), (0.75, 1, 1)]


class NeverAgain:
    """Asks for a hedge at once, then never wants to be consulted again."""

    def should_spawn_hedge(self, state: HedgeState) -> tuple[bool, float]:
        """Spawn at the first check, then wait forever."""
        return state.attempts_launched == 1, math.inf


@pytest.mark.parametrize("trigger", [None, "never-again"])
async def test_denied_hedge_then_primary_failure_ends_the_group(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Leaks, trigger: str | None
) -> None:
    """A hedge the budget denied is never in flight: the primary's failure ends the group."""
    budget = TokenBucketBudget(capacity=0, refill_per_second=0)
    op = Script({1: (0.375, Retryable("down"))})
    policy = RetryPolicy(
        max_attempts=1,
        hedge=hedged(max_hedges=3, delay=0.25, budget=budget, trigger=trigger),
    )
    executor = Executor(triggers={"never-again": NeverAgain()})
    with no_task_leaks(), trio.fail_after(10):
        result = await executor.run(op, policy=policy, name="d")
    # Hedge slot 3 (due at 0.5 on the fixed schedule) is never used: the
    # group ended at the primary's failure, and nothing else launched.
    assert trio.current_time() == 0.375
    assert len(op.seen) == 1
    denied_at = 0.25 if trigger is None else 0.0
    assert brief(result) == [
        (1, 0, 0, F, RETRY, None, 0.0, 0.375),
        (2, 0, 1, K, None, None, denied_at, denied_at),
    ]
    assert result.status is Status.FAILED
    assert result.attributes["reason"] == "retries_exhausted"
    assert budget.statistics().hedges_denied == 1


@pytest.mark.parametrize("max_attempts", [1, 2])
async def test_denied_hedge_then_primary_failure_retries_after_the_backoff(
    autojump_clock: trio.testing.MockClock, max_attempts: int
) -> None:
    """After a denied hedge and a failed primary, only the outer loop tries again."""
    budget = TokenBucketBudget(capacity=0, refill_per_second=0)
    op = Script({}, default=(0.375, Retryable("down")))
    policy = RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=1.0,
        hedge=hedged(max_hedges=2, delay=0.25, budget=budget),
    )
    with trio.fail_after(10):
        result = await Executor().run(op, policy=policy)
    expected = [(0.0, 0, 0), (1.375, 1, 0)][:max_attempts]
    assert op.starts == expected
    assert [r.status for r in records(result)] == [F, K] * max_attempts


@attrs.define
class LateFirstCheck:
    """A fixed-delay trigger whose first answer asks to be consulted *late*."""

    inner: FixedDelayTrigger
    extra: float
    checks: list[float] = attrs.Factory(list)

    def should_spawn_hedge(self, state: HedgeState) -> tuple[bool, float]:
        """Delegate, but add *extra* to the first wait."""
        self.checks.append(state.now)
        spawn, wait = self.inner.should_spawn_hedge(state)
        return spawn, wait + (self.extra if len(self.checks) == 1 else 0.0)


async def test_late_check_does_not_shift_later_hedges(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A hedge launched late leaves the next one at group_start + 2 * delay, not now + delay."""
    trigger = LateFirstCheck(FixedDelayTrigger(0.25), extra=0.125)
    op = Script({}, default=(5.0, "slow"))
    policy = RetryPolicy(hedge=hedged(max_hedges=3, trigger="late"))
    with trio.fail_after(10):
        await trio.sleep(1.0)
        await Executor(triggers={"late": trigger}).run(op, policy=policy)
    assert trigger.checks == [1.0, 1.375, 1.5]
    # Hedge 1 went out late (1.375, not 1.25); hedge 2 still at 1.0 + 2 * 0.25.
    assert [t for t, _ in op.seen] == [1.0, 1.375, 1.5]


def test_fixed_delay_trigger_counts_from_the_group_start() -> None:
    """The wait is to group_start + k * delay, whatever the previous launch time."""
    trigger = FixedDelayTrigger(0.25)
    # Hedge 1 launched late at 1.375; at that same check hedge 2 is due at 1.5.
    assert trigger.should_spawn_hedge(
        state(group_started_at=1.0, now=1.375, attempts_launched=2)
    ) == (False, 0.125)
    assert trigger.should_spawn_hedge(
        state(group_started_at=1.0, now=1.5, attempts_launched=2)
    ) == (True, 0.25)


# -- latency windows: only where needed, bounded (issue 16) -------------------


async def test_no_window_without_a_latency_trigger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Unhedged and fixed-delay calls keep no latency window."""
    executor = Executor()
    for policy in (RetryPolicy(), RetryPolicy(hedge=hedged())):
        await executor.run(Script({1: (0.125, "ok")}), policy=policy, name="x")
    assert executor.latency("x") is None
    named = Executor(triggers={"fixed": FixedDelayTrigger(0.25)})
    await named.run(
        Script({1: (0.125, "ok")}),
        policy=RetryPolicy(hedge=hedged(trigger="fixed")),
        name="x",
    )
    assert named.latency("x") is None


async def test_windows_are_evicted_least_recently_used_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With max_windows=2 a third name evicts the name used least recently."""
    executor = Executor(triggers={"p": LatencyTrigger()}, max_windows=2)
    policy = RetryPolicy(hedge=hedged(trigger="p"))
    for name in ("a", "b", "a", "c"):
        await executor.run(Script({1: (0.125, "ok")}), policy=policy, name=name)
    assert executor.latency("b") is None
    kept = executor.latency("a")
    assert kept is not None
    assert len(kept) == 2
    assert executor.latency("c") is not None


def live_windows() -> int:
    """How many LatencyWindow objects are alive."""
    gc.collect()
    return sum(isinstance(o, LatencyWindow) for o in gc.get_objects())


async def test_many_call_names_keep_memory_bounded() -> None:
    """100,000 distinct names keep no window without a latency trigger, and at
    most max_windows with one; memory stays flat."""

    async def op(info: AttemptInfo) -> int:
        return info.attempt

    executor = Executor(triggers={"p": LatencyTrigger()}, max_windows=50)
    plain = RetryPolicy()
    fixed = RetryPolicy(hedge=hedged())
    baseline = live_windows()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(100_000):
        await executor.run(op, policy=plain, name=f"request-{i}")
    for i in range(2_000):
        await executor.run(op, policy=fixed, name=f"fixed-{i}")
    assert live_windows() == baseline
    # Before the fix, every name kept a ~20 KiB window: ~2 GiB here.
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert rss_growth_kib < 64 * 1024
    latency = RetryPolicy(hedge=hedged(trigger="p"))
    for i in range(2_000):
        await executor.run(op, policy=latency, name=f"hedged-{i}")
    assert live_windows() == baseline + 50
    kept = [i for i in range(2_000) if executor.latency(f"hedged-{i}") is not None]
    assert kept == list(range(1_950, 2_000))


@pytest.mark.parametrize("hedge", [None, hedged(max_hedges=2)])
async def test_external_cause_keeps_trios_reason_text(
    autojump_clock: trio.testing.MockClock, hedge: HedgePolicy | None
) -> None:
    """An outside cancel's reason string reaches the observer's EXTERNAL cause."""
    events: list[Event] = []
    executor = Executor(observer=events.append)
    op = Script({}, default=(10.0, "late"))
    with trio.fail_after(60), trio.CancelScope() as scope:

        async def cancel_soon() -> None:
            await trio.sleep(0.5)
            scope.cancel(reason="shutting down")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_soon)
            await executor.run(op, policy=RetryPolicy(hedge=hedge), name="c")
    finished = [e for e in events if isinstance(e, trio_sagas.AttemptFinished)]
    assert finished
    for event in finished:
        assert event.cause is not None
        assert (event.cause.origin, event.cause.reason, event.cause.message) == (
            CancelOrigin.EXTERNAL,
            CancelReason.EXTERNAL,
            "shutting down",
        )
