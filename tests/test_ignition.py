"""Ignition coordinator: modes, policies, stages, timeouts, scopes, services."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import trio_sagas
from trio_sagas import (
    CancelCause,
    CancellationScope,
    CancelOrigin,
    CancelReason,
    ExecutionMode,
    Ignition,
    IgnitionPolicy,
    Outcome,
    StagePolicy,
    Status,
)

Leaks = Callable[[], AbstractContextManager[Any]]


class Boom(Exception):
    """The failure the test signals raise."""


async def ok(delay: float, value: object = None) -> object:
    await trio.sleep(delay)
    return value


async def fail(delay: float) -> None:
    await trio.sleep(delay)
    raise Boom(f"failed after {delay:g}s")


def statuses(result: trio_sagas.IgnitionResult) -> dict[str, Status]:
    return {name: o.status for name, o in result.outcomes.items()}


def times(outcome: Outcome[Any]) -> tuple[float | None, float | None]:
    return (outcome.started_at, outcome.finished_at)


# -- the seed's critical/optional tree and its behaviour table -------------


def critical_optional(
    failing: str | None,
) -> tuple[Ignition, CancellationScope, CancellationScope, CancellationScope]:
    root = CancellationScope("application-root")
    critical = root.child("critical-services")
    optional = root.child("optional-services")
    ignition = Ignition(mode=ExecutionMode.PARALLEL, policy=IgnitionPolicy.BEST_EFFORT)
    durations = {"auth": 3, "database": 3, "analytics": 2, "recommendations": 4}
    for name, scope, critical_signal in (
        ("auth", critical, True),
        ("database", critical, True),
        ("analytics", optional, False),
        ("recommendations", optional, False),
    ):
        fn = fail if name == failing else ok
        delay = 1 if name == failing else durations[name]
        ignition.add(
            name, fn, delay, scope=scope, cancel_scope_on_failure=critical_signal
        )
    return ignition, root, critical, optional


S, F, C = Status.SUCCEEDED, Status.FAILED, Status.CANCELLED


@pytest.mark.parametrize(
    ("failing", "critical_cancelled", "expected"),
    [
        (
            "auth",
            True,
            {"auth": F, "database": C, "analytics": S, "recommendations": S},
        ),
        (
            "database",
            True,
            {"auth": C, "database": F, "analytics": S, "recommendations": S},
        ),
        (
            "analytics",
            False,
            {"auth": S, "database": S, "analytics": F, "recommendations": S},
        ),
    ],
    ids=["auth-fails", "database-fails", "analytics-fails"],
)
async def test_behaviour_table_failure_rows(
    autojump_clock: MockClock,
    failing: str,
    critical_cancelled: bool,
    expected: dict[str, Status],
    no_task_leaks: Leaks,
) -> None:
    """Rows 1-3 of the seed table: a critical failure cancels only its own scope."""
    ignition, root, critical, optional = critical_optional(failing)
    with no_task_leaks():
        result = await ignition.run()
    assert statuses(result) == expected
    assert critical.cancelled is critical_cancelled
    assert not optional.cancelled
    assert not root.cancelled
    assert times(result.outcomes[failing]) == (0, 1)
    for name, status in expected.items():
        if status is C:
            assert times(result.outcomes[name]) == (0, 1)
            assert result.outcomes[name].cause == CancelCause(
                reason=CancelReason.STEP_FAILED,
                origin=CancelOrigin.INTERNAL,
                scope="application-root/critical-services",
                triggered_by=failing,
                message="Boom: failed after 1s",
            )
    assert result.outcomes["analytics"].finished_at == (
        1 if failing == "analytics" else 2
    )
    assert result.outcomes["recommendations"].finished_at == 4
    assert result.duration == 4
    assert not result.ok


async def test_behaviour_table_root_cancelled_manually(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """Row 4 of the seed table: cancelling the root cancels every signal in the tree."""
    ignition, root, critical, optional = critical_optional(None)

    async def operator() -> None:
        await trio.sleep(0.5)
        root.cancel(CancelReason.MANUAL, triggered_by="external-health-check")

    with no_task_leaks():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(operator)
            result = await ignition.run()
    assert set(statuses(result).values()) == {Status.CANCELLED}
    expected = CancelCause(
        reason=CancelReason.MANUAL,
        origin=CancelOrigin.EXTERNAL,
        scope="application-root",
        triggered_by="external-health-check",
    )
    for outcome in result.outcomes.values():
        assert outcome.cause == expected
        assert times(outcome) == (0, 0.5)
    assert critical.cancelled
    assert optional.cancelled
    assert trio.current_time() == 0.5


async def test_redis_bundle_scope(autojump_clock: MockClock) -> None:
    """A failed bundle connection cancels the bundle; signals outside it carry on."""
    redis = CancellationScope("redis-bundle")
    ignition = Ignition()
    ignition.add("redis-connection", fail, 1, scope=redis, cancel_scope_on_failure=True)
    ignition.add("redis-warmup", ok, 5, scope=redis)
    ignition.add("redis-health", ok, 5, scope=redis)
    ignition.add("database", ok, 2)
    result = await ignition.run()
    assert statuses(result) == {
        "redis-connection": F,
        "redis-warmup": C,
        "redis-health": C,
        "database": S,
    }
    cause = result.outcomes["redis-warmup"].cause
    assert cause is not None
    assert (cause.reason, cause.scope, cause.triggered_by) == (
        CancelReason.STEP_FAILED,
        "redis-bundle",
        "redis-connection",
    )
    assert result.outcomes["redis-health"].finished_at == 1
    assert result.duration == 2


async def test_auth_dag_with_scopes_cancels_downstream_at_once(
    autojump_clock: MockClock,
) -> None:
    """auth -> user/email -> profile: auth's failure cancels the waiting services at once."""
    auth_scope = CancellationScope("auth-dependent-services")
    downstream = auth_scope.child("downstream-services")
    started: list[str] = []

    async def service(name: str) -> None:
        started.append(name)
        await trio.sleep(1)

    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE, global_timeout=30)
    ignition.add(
        "auth-service", fail, 2, scope=auth_scope, cancel_scope_on_failure=True
    )
    ignition.add(
        "user-service", service, "user", depends_on=["auth-service"], scope=auth_scope
    )
    ignition.add(
        "email-service", service, "email", depends_on=["auth-service"], scope=auth_scope
    )
    ignition.add(
        "profile-service",
        service,
        "profile",
        depends_on=["user-service", "email-service"],
        scope=downstream,
    )
    ignition.add("metrics", ok, 3)
    result = await ignition.run()
    assert started == []
    for name in ("user-service", "email-service", "profile-service"):
        outcome = result.outcomes[name]
        assert outcome.status is Status.CANCELLED
        assert times(outcome) == (None, 2)
        assert outcome.cause is not None
        assert outcome.cause.scope == "auth-dependent-services"
        assert outcome.cause.triggered_by == "auth-service"
    assert result.outcomes["metrics"].ok
    assert result.duration == 3


# -- dependencies ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cancel_dependents", "status"),
    [(False, Status.SKIPPED), (True, Status.CANCELLED)],
)
async def test_transitive_dependency_failure(
    autojump_clock: MockClock,
    cancel_dependents: bool,
    status: Status,
    no_task_leaks: Leaks,
) -> None:
    """a fails: b, c, d, e (four hops away) end at once, each naming 'a' as the root."""
    ignition = Ignition(
        mode=ExecutionMode.DEPENDENCY_AWARE,
        global_timeout=30,
        cancel_dependents_on_failure=cancel_dependents,
    )
    ignition.add("a", fail, 1)
    ignition.add("slow", ok, 4)
    ignition.add("b", ok, 1, depends_on=["a"])
    ignition.add("c", ok, 1, depends_on=["b"])
    ignition.add("d", ok, 1, depends_on=["c", "slow"])
    ignition.add("e", ok, 1, depends_on=["d"])
    ignition.add("free", ok, 1, depends_on=["slow"])
    with no_task_leaks():
        result = await ignition.run()
    assert statuses(result) == {
        "a": F,
        "slow": S,
        "b": status,
        "c": status,
        "d": status,
        "e": status,
        "free": S,
    }
    for name, parent in (("b", "a"), ("c", "b"), ("d", "c"), ("e", "d")):
        outcome = result.outcomes[name]
        assert times(outcome) == (None, 1)
        assert outcome.cause is not None
        assert outcome.cause.reason is CancelReason.DEPENDENCY_FAILED
        assert outcome.cause.origin is CancelOrigin.INTERNAL
        assert outcome.cause.triggered_by == "a"
        assert parent in outcome.cause.message
    assert times(result.outcomes["free"]) == (4, 5)
    assert result.duration == 5


async def test_dependency_order_and_start_times(autojump_clock: MockClock) -> None:
    """Each signal starts the moment its last dependency succeeded."""
    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    ignition.add("profile", ok, 1, depends_on=["user", "email"])
    ignition.add("auth", ok, 1)
    ignition.add("user", ok, 2, depends_on=["auth"])
    ignition.add("email", ok, 0.5, depends_on=["auth"])
    result = await ignition.run()
    assert {n: times(o) for n, o in result.outcomes.items()} == {
        "profile": (3, 4),
        "auth": (0, 1),
        "user": (1, 3),
        "email": (1, 1.5),
    }
    assert result.ok


async def test_timed_out_dependency_skips_dependents(autojump_clock: MockClock) -> None:
    """A dependency that timed out counts as not succeeded; it is named as the root."""
    ignition = Ignition(
        mode=ExecutionMode.DEPENDENCY_AWARE, cancel_individual_on_timeout=True
    )
    ignition.add("db", ok, 10, timeout=2)
    ignition.add("cache", ok, 1, depends_on=["db"])
    result = await ignition.run()
    assert result.outcomes["db"].status is Status.TIMED_OUT
    cause = result.outcomes["cache"].cause
    assert cause is not None
    assert (cause.reason, cause.triggered_by) == (CancelReason.DEPENDENCY_FAILED, "db")
    assert result.outcomes["cache"].finished_at == 2


# -- timeouts ------------------------------------------------------------------


async def test_hard_timeout_cancels_at_deadline(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """cancel_individual_on_timeout: the signal is cancelled at its deadline."""
    seen: list[float] = []

    async def slow() -> None:
        try:
            await trio.sleep(10)
        finally:
            seen.append(trio.current_time())

    ignition = Ignition(cancel_individual_on_timeout=True)
    ignition.add("slow", slow, timeout=1.5)
    with no_task_leaks():
        result = await ignition.run()
    outcome = result.outcomes["slow"]
    assert outcome.status is Status.TIMED_OUT
    assert outcome.cause == CancelCause.of(
        CancelReason.STEP_TIMEOUT,
        triggered_by="slow",
        message="no outcome within its 1.5s timeout",
    )
    assert times(outcome) == (0, 1.5)
    assert seen == [1.5]
    assert result.duration == 1.5


async def test_soft_timeout_keeps_running_inside_run(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """A soft timeout reports TIMED_OUT at the deadline; the signal goes on until run() ends."""
    progress: list[float] = []
    ended: list[float] = []

    async def warmup() -> None:
        try:
            for _ in range(10):
                await trio.sleep(1)
                progress.append(trio.current_time())
        finally:
            ended.append(trio.current_time())

    ignition = Ignition()
    ignition.add("warmup", warmup, timeout=1.5)
    ignition.add("migrate", ok, 4)
    with no_task_leaks():
        result = await ignition.run()
    assert times(result.outcomes["warmup"]) == (0, 1.5)
    assert result.outcomes["warmup"].status is Status.TIMED_OUT
    # It kept running past its deadline while the run went on...
    assert progress == [1, 2, 3, 4] or progress == [1, 2, 3]
    # ...and was cancelled when run() returned at 4, not left behind.
    assert ended == [4]
    assert result.duration == 4
    assert trio.current_time() == 4


async def test_soft_timeout_with_nursery_outlives_run(
    autojump_clock: MockClock,
) -> None:
    """With run(nursery=...), a soft-timed-out signal finishes in the caller's nursery."""
    done: list[float] = []

    async def warmup() -> None:
        await trio.sleep(3)
        done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        ignition = Ignition()
        ignition.add("warmup", warmup, timeout=1)
        ignition.add("db", ok, 2)
        result = await ignition.run(nursery=nursery)
        assert trio.current_time() == 2
        assert result.outcomes["warmup"].status is Status.TIMED_OUT
        assert done == []
    assert done == [3]


async def test_soft_timeout_with_cancel_scope_on_failure_cancels_bundle(
    autojump_clock: MockClock,
) -> None:
    """A timeout counts as a failure for cancel_scope_on_failure (STEP_TIMEOUT)."""
    scope = CancellationScope("bundle")
    ignition = Ignition()
    ignition.add("conn", ok, 10, timeout=1, scope=scope, cancel_scope_on_failure=True)
    ignition.add("warm", ok, 10, scope=scope)
    result = await ignition.run()
    assert result.outcomes["conn"].status is Status.TIMED_OUT
    cause = result.outcomes["warm"].cause
    assert cause is not None
    assert (cause.reason, cause.scope, cause.triggered_by) == (
        CancelReason.STEP_TIMEOUT,
        "bundle",
        "conn",
    )
    assert result.duration == 1


async def test_global_timeout(autojump_clock: MockClock, no_task_leaks: Leaks) -> None:
    """At the global deadline every open outcome is TIMED_OUT and run() returns."""
    events: list[trio_sagas.Event] = []
    ignition = Ignition(
        mode=ExecutionMode.DEPENDENCY_AWARE, global_timeout=2, observer=events.append
    )
    ignition.add("fast", ok, 1)
    ignition.add("slow", ok, 5)
    ignition.add("after-slow", ok, 1, depends_on=["slow"])
    with no_task_leaks():
        result = await ignition.run()
    assert trio.current_time() == 2
    assert result.timed_out
    assert statuses(result) == {
        "fast": S,
        "slow": Status.TIMED_OUT,
        "after-slow": Status.TIMED_OUT,
    }
    cause = CancelCause.of(
        CancelReason.GLOBAL_TIMEOUT, message="global timeout of 2s reached"
    )
    assert result.outcomes["slow"].cause == cause
    assert times(result.outcomes["slow"]) == (0, 2)
    assert times(result.outcomes["after-slow"]) == (None, 2)
    reached = [e for e in events if isinstance(e, trio_sagas.GlobalTimeoutReached)]
    assert reached == [
        trio_sagas.GlobalTimeoutReached(at=2, pending=("slow", "after-slow"))
    ]


@pytest.mark.parametrize("hard", [False, True])
async def test_global_timeout_with_nursery(
    autojump_clock: MockClock, hard: bool
) -> None:
    """Soft: pending signals keep running in the caller's nursery; hard: they are cancelled."""
    finished: list[float] = []

    async def slow() -> None:
        await trio.sleep(5)
        finished.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        ignition = Ignition(global_timeout=2, cancel_on_global_timeout=hard)
        ignition.add("slow", slow)
        result = await ignition.run(nursery=nursery)
        assert trio.current_time() == 2
        assert result.outcomes["slow"].status is Status.TIMED_OUT
    assert finished == ([] if hard else [5])
    assert trio.current_time() == (2 if hard else 5)


async def test_no_global_timeout(autojump_clock: MockClock) -> None:
    """global_timeout=None lets the run take as long as its signals."""
    ignition = Ignition(global_timeout=None)
    ignition.add("slow", ok, 1000)
    result = await ignition.run()
    assert result.ok
    assert result.duration == 1000


# -- policies --------------------------------------------------------------------


async def test_fail_fast_parallel_cancels_running_peers(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """FAIL_FAST: the first failure cancels running peers (internal, naming the failure)."""
    ignition = Ignition(policy=IgnitionPolicy.FAIL_FAST)
    ignition.add("a", ok, 3)
    ignition.add("b", fail, 1)
    ignition.add("c", ok, 0.5)
    with no_task_leaks():
        result = await ignition.run()
    assert statuses(result) == {"a": C, "b": F, "c": S}
    assert result.outcomes["a"].cause == CancelCause.of(
        CancelReason.STEP_FAILED,
        triggered_by="b",
        message="IgnitionPolicy.FAIL_FAST stopped the run",
    )
    assert times(result.outcomes["a"]) == (0, 1)
    assert result.duration == 1


async def test_fail_fast_sequential_skips_the_rest(autojump_clock: MockClock) -> None:
    """SEQUENTIAL + FAIL_FAST: signals after the failure never start."""
    ignition = Ignition(mode=ExecutionMode.SEQUENTIAL, policy=IgnitionPolicy.FAIL_FAST)
    ignition.add("one", ok, 1)
    ignition.add("two", fail, 1)
    ignition.add("three", ok, 1)
    result = await ignition.run()
    assert statuses(result) == {"one": S, "two": F, "three": Status.SKIPPED}
    assert times(result.outcomes["two"]) == (1, 2)
    cause = result.outcomes["three"].cause
    assert cause is not None
    assert (cause.reason, cause.triggered_by) == (CancelReason.STEP_FAILED, "two")
    assert times(result.outcomes["three"]) == (None, 2)


async def test_sequential_best_effort_runs_one_at_a_time(
    autojump_clock: MockClock,
) -> None:
    """SEQUENTIAL + BEST_EFFORT: in add order, one at a time, past failures."""
    ignition = Ignition(mode=ExecutionMode.SEQUENTIAL)
    ignition.add("one", fail, 1)
    ignition.add("two", ok, 2)
    ignition.add("three", ok, 1)
    result = await ignition.run()
    assert [times(o) for o in result.outcomes.values()] == [(0, 1), (1, 3), (3, 4)]
    assert statuses(result) == {"one": F, "two": S, "three": S}


async def test_continue_on_timeout_goes_past_timeouts_stops_at_failure(
    autojump_clock: MockClock,
) -> None:
    """CONTINUE_ON_TIMEOUT: a timeout does not stop the sequence, a failure does."""
    ignition = Ignition(
        mode=ExecutionMode.SEQUENTIAL,
        policy=IgnitionPolicy.CONTINUE_ON_TIMEOUT,
        cancel_individual_on_timeout=True,
    )
    ignition.add("slow", ok, 5, timeout=1)
    ignition.add("broken", fail, 1)
    ignition.add("never", ok, 1)
    result = await ignition.run()
    assert statuses(result) == {
        "slow": Status.TIMED_OUT,
        "broken": F,
        "never": Status.SKIPPED,
    }
    assert times(result.outcomes["broken"]) == (1, 2)


async def test_sequential_soft_timeout_moves_on_at_the_deadline(
    autojump_clock: MockClock,
) -> None:
    """SEQUENTIAL: the next signal starts at a soft deadline while the late one keeps going."""
    ignition = Ignition(mode=ExecutionMode.SEQUENTIAL, global_timeout=None)
    ignition.add("slow", ok, 3, timeout=1)
    ignition.add("next", ok, 5)
    result = await ignition.run()
    assert times(result.outcomes["slow"]) == (0, 1)
    assert times(result.outcomes["next"]) == (1, 6)


async def test_custom_policy_sees_results_and_stops(autojump_clock: MockClock) -> None:
    """A callable policy gets each finished outcome and the results so far."""
    calls: list[tuple[str, tuple[str, ...]]] = []

    def two_strikes(finished: Outcome[Any], results: Any) -> bool:
        calls.append((finished.name, tuple(results)))
        return sum(not o.ok for o in results.values()) < 2

    ignition = Ignition(mode=ExecutionMode.SEQUENTIAL, policy=two_strikes)
    ignition.add("a", fail, 1)
    ignition.add("b", ok, 1)
    ignition.add("c", fail, 1)
    ignition.add("d", ok, 1)
    result = await ignition.run()
    assert calls == [("a", ("a",)), ("b", ("a", "b")), ("c", ("a", "b", "c"))]
    assert statuses(result) == {"a": F, "b": S, "c": F, "d": Status.SKIPPED}
    cause = result.outcomes["d"].cause
    assert cause is not None
    assert cause.triggered_by == "c"
    assert "two_strikes" in cause.message


async def test_custom_policy_stopping_after_success_uses_terminal(
    autojump_clock: MockClock,
) -> None:
    """A policy that stops after a success gives the rest a TERMINAL cause."""
    ignition = Ignition(
        mode=ExecutionMode.SEQUENTIAL, policy=lambda finished, results: False
    )
    ignition.add("a", ok, 1)
    ignition.add("b", ok, 1)
    result = await ignition.run()
    cause = result.outcomes["b"].cause
    assert cause is not None
    assert (cause.reason, cause.triggered_by) == (CancelReason.TERMINAL, "a")


async def test_custom_policy_error_propagates_after_cleanup(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """A policy that raises stops the run, cancels everything, then run() raises it."""

    def broken(finished: Outcome[Any], results: Any) -> bool:
        raise KeyError("bug")

    ended: list[float] = []

    async def long() -> None:
        try:
            await trio.sleep(10)
        finally:
            ended.append(trio.current_time())

    ignition = Ignition(policy=broken)
    ignition.add("quick", ok, 1)
    ignition.add("long", long)
    with no_task_leaks(), pytest.raises(KeyError, match="bug"):
        await ignition.run()
    assert ended == [1]


# -- stages ----------------------------------------------------------------------


def staged(policy: StagePolicy, threshold: float = 1.0, **kwargs: Any) -> Ignition:
    return Ignition(
        mode=ExecutionMode.STAGED,
        global_timeout=30,
        stage_policy=policy,
        early_promotion_threshold=threshold,
        **kwargs,
    )


async def test_stage_all_must_succeed(autojump_clock: MockClock) -> None:
    """ALL_MUST_SUCCEED: the next stage starts when the stage is over, only if all succeeded."""
    ignition = staged(StagePolicy.ALL_MUST_SUCCEED)
    ignition.add("db", ok, 1, stage=0)
    ignition.add("cache", ok, 2, stage=0)
    ignition.add("preload", fail, 1, stage=1)
    ignition.add("other", ok, 3, stage=1)
    ignition.add("health", ok, 1, stage=2)
    result = await ignition.run()
    assert times(result.outcomes["preload"]) == (2, 3)
    assert times(result.outcomes["other"]) == (2, 5)
    assert result.outcomes["health"].status is Status.SKIPPED
    cause = result.outcomes["health"].cause
    assert cause is not None
    assert (cause.reason, cause.triggered_by) == (CancelReason.STEP_FAILED, "preload")
    assert cause.message == "stage 1 did not meet StagePolicy.ALL_MUST_SUCCEED"
    assert times(result.outcomes["health"]) == (None, 5)
    assert [(s.stage, s.promoted, s.promoted_at) for s in result.stages] == [
        (0, True, 2),
        (1, False, None),
        (2, False, None),
    ]
    assert list(result.stages[1].outcomes) == ["preload", "other"]


async def test_stage_best_effort_goes_on(autojump_clock: MockClock) -> None:
    """BEST_EFFORT: the next stage starts when the stage is over, whatever happened."""
    ignition = staged(StagePolicy.BEST_EFFORT)
    ignition.add("a", fail, 1, stage=0)
    ignition.add("b", ok, 2, stage=0)
    ignition.add("c", ok, 1, stage=5)
    result = await ignition.run()
    assert times(result.outcomes["c"]) == (2, 3)
    assert [s.promoted_at for s in result.stages] == [2, 3]


async def test_stage_fail_fast_cancels_the_stage(autojump_clock: MockClock) -> None:
    """StagePolicy.FAIL_FAST: the first failure cancels the stage and skips later ones."""
    ignition = staged(StagePolicy.FAIL_FAST)
    ignition.add("a", fail, 1, stage=0)
    ignition.add("b", ok, 2, stage=0)
    ignition.add("c", ok, 1, stage=1)
    result = await ignition.run()
    assert statuses(result) == {"a": F, "b": C, "c": Status.SKIPPED}
    for name in ("b", "c"):
        cause = result.outcomes[name].cause
        assert cause is not None
        assert (cause.reason, cause.triggered_by) == (CancelReason.STEP_FAILED, "a")
        assert result.outcomes[name].finished_at == 1
    assert result.duration == 1


async def test_stage_early_promotion(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """EARLY_PROMOTION: the next stage starts once the threshold succeeded; the rest goes on."""
    events: list[trio_sagas.Event] = []
    ignition = staged(StagePolicy.EARLY_PROMOTION, 0.5, observer=events.append)
    ignition.add("w1", ok, 1, stage=0)
    ignition.add("w2", ok, 2, stage=0)
    ignition.add("w3", ok, 6, stage=0)
    ignition.add("w4", fail, 7, stage=0)
    ignition.add("ready", ok, 1, stage=1)
    with no_task_leaks():
        result = await ignition.run()
    assert times(result.outcomes["ready"]) == (2, 3)
    assert statuses(result)["w3"] is S
    assert result.stages[0].promoted
    assert result.stages[0].promoted_at == 2
    assert result.duration == 7
    stage_events = [
        (e.at, e.stage) for e in events if isinstance(e, trio_sagas.StageStarted)
    ]
    assert stage_events == [(0, 0), (2, 1)]


async def test_stage_early_promotion_threshold_not_reached(
    autojump_clock: MockClock,
) -> None:
    """EARLY_PROMOTION: a stage that never reaches its threshold ends the run there."""
    ignition = staged(StagePolicy.EARLY_PROMOTION, 0.7)
    ignition.add("a", ok, 1, stage=0)
    ignition.add("b", fail, 2, stage=0)
    ignition.add("c", ok, 1, stage=1)
    result = await ignition.run()
    assert result.outcomes["c"].status is Status.SKIPPED
    assert not result.stages[0].promoted
    assert result.duration == 2


async def test_staged_scopes_infrastructure_failure_cancels_later_stages(
    autojump_clock: MockClock,
) -> None:
    """Seed scenario: infrastructure failure cancels warmup and readiness at once."""
    infrastructure = CancellationScope("infrastructure-stage")
    warmup = infrastructure.child("warmup-stage")
    readiness = warmup.child("readiness-stage")
    ignition = staged(StagePolicy.ALL_MUST_SUCCEED)
    ignition.add(
        "database", fail, 1, stage=0, scope=infrastructure, cancel_scope_on_failure=True
    )
    ignition.add(
        "cache", ok, 3, stage=0, scope=infrastructure, cancel_scope_on_failure=True
    )
    ignition.add("preload", ok, 1, stage=1, scope=warmup)
    ignition.add("health", ok, 1, stage=2, scope=readiness)
    result = await ignition.run()
    assert statuses(result) == {"database": F, "cache": C, "preload": C, "health": C}
    for name in ("cache", "preload", "health"):
        outcome = result.outcomes[name]
        assert outcome.finished_at == 1
        assert outcome.cause is not None
        assert outcome.cause.scope == "infrastructure-stage"
        assert outcome.cause.triggered_by == "database"
    assert result.duration == 1


async def test_staged_warmup_failure_leaves_infrastructure_alone(
    autojump_clock: MockClock,
) -> None:
    """Seed scenario: a warmup failure cancels readiness, never infrastructure."""
    infrastructure = CancellationScope("infrastructure-stage")
    warmup = infrastructure.child("warmup-stage")
    readiness = warmup.child("readiness-stage")
    ignition = staged(StagePolicy.BEST_EFFORT)
    ignition.add("database", ok, 1, stage=0, scope=infrastructure)
    ignition.add(
        "preload", fail, 1, stage=1, scope=warmup, cancel_scope_on_failure=True
    )
    ignition.add("health", ok, 1, stage=2, scope=readiness)
    result = await ignition.run()
    assert statuses(result) == {"database": S, "preload": F, "health": C}
    assert not infrastructure.cancelled
    assert times(result.outcomes["health"]) == (None, 2)


# -- scopes ----------------------------------------------------------------------


async def test_scope_cancelled_before_run_never_starts_signals(
    autojump_clock: MockClock,
) -> None:
    """A signal whose scope is already cancelled ends CANCELLED without running."""
    scope = CancellationScope("gone")
    scope.cancel(CancelReason.MANUAL, message="maintenance")
    called: list[str] = []

    async def work() -> None:
        called.append("work")

    for mode in (ExecutionMode.PARALLEL, ExecutionMode.SEQUENTIAL):
        ignition = Ignition(mode=mode)
        ignition.add("work", work, scope=scope)
        result = await ignition.run()
        outcome = result.outcomes["work"]
        assert outcome.status is Status.CANCELLED
        assert outcome.cause is scope.cause
    assert called == []


async def test_waiting_signal_ends_when_its_scope_is_cancelled(
    autojump_clock: MockClock,
) -> None:
    """SEQUENTIAL: a signal waiting its turn ends the moment its scope is cancelled."""
    scope = CancellationScope("later")

    async def cancel_later() -> None:
        await trio.sleep(1)
        scope.cancel(CancelReason.MANUAL, triggered_by="operator")

    ignition = Ignition(mode=ExecutionMode.SEQUENTIAL)
    ignition.add("first", ok, 3)
    ignition.add("second", ok, 1, scope=scope)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_later)
        result = await ignition.run()
    assert times(result.outcomes["second"]) == (None, 1)
    assert result.outcomes["second"].status is Status.CANCELLED
    assert result.duration == 3


async def test_ignition_keeps_scopes_alive(autojump_clock: MockClock) -> None:
    """Child scopes passed to add() stay in the tree (parents hold children weakly)."""
    root = CancellationScope("root")
    ignition = Ignition()
    ignition.add("a", ok, 1, scope=root.child("child"))
    root.cancel(CancelReason.MANUAL)
    result = await ignition.run()
    cause = result.outcomes["a"].cause
    assert cause is not None
    assert cause.scope == "root"


# -- max_parallelism ---------------------------------------------------------------


async def test_max_parallelism_bounds_concurrency(autojump_clock: MockClock) -> None:
    """max_parallelism=2: signals start two at a time, in add order."""
    ignition = Ignition(max_parallelism=2)
    for index in range(5):
        ignition.add(f"s{index}", ok, 1)
    result = await ignition.run()
    assert [o.started_at for o in result.outcomes.values()] == [0, 0, 1, 1, 2]
    assert result.duration == 3


async def test_max_parallelism_with_fail_fast_skips_the_waiting(
    autojump_clock: MockClock,
) -> None:
    """Signals still waiting for a slot when the run stops are SKIPPED, never started."""
    ignition = Ignition(max_parallelism=1, policy=IgnitionPolicy.FAIL_FAST)
    ignition.add("bad", fail, 1)
    ignition.add("waiting", ok, 1)
    result = await ignition.run()
    assert times(result.outcomes["waiting"]) == (None, 1)
    assert result.outcomes["waiting"].status is Status.SKIPPED


async def test_max_parallelism_scope_cancel_while_waiting(
    autojump_clock: MockClock,
) -> None:
    """A signal waiting for a slot ends CANCELLED, unstarted, when its scope is cancelled."""
    scope = CancellationScope("bundle")
    ignition = Ignition(max_parallelism=1)
    ignition.add("conn", fail, 1, scope=scope, cancel_scope_on_failure=True)
    ignition.add("warm", ok, 1, scope=scope)
    result = await ignition.run()
    assert times(result.outcomes["warm"]) == (None, 1)
    assert result.outcomes["warm"].status is Status.CANCELLED


# -- services ----------------------------------------------------------------------


async def http_server(
    port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    await trio.sleep(1)
    task_status.started(port)
    await trio.sleep_forever()


async def test_service_is_ready_and_keeps_running_in_the_nursery(
    autojump_clock: MockClock,
) -> None:
    """A task_status signal is SUCCEEDED when ready and keeps running in the caller's nursery."""
    log: list[tuple[str, float]] = []

    async def worker(
        *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started("ready")
        try:
            await trio.sleep_forever()
        finally:
            log.append(("worker stopped", trio.current_time()))

    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    ignition.add("http", http_server, 8080, timeout=5)
    ignition.add("worker", worker, depends_on=["http"])
    async with trio.open_nursery() as nursery:
        result = await ignition.run(nursery=nursery)
        assert result.outcomes["http"].value == 8080
        assert times(result.outcomes["http"]) == (0, 1)
        assert times(result.outcomes["worker"]) == (1, 1)
        await trio.sleep(10)
        assert log == []
        nursery.cancel_scope.cancel()
    assert log == [("worker stopped", 11)]


async def test_service_needs_a_nursery(autojump_clock: MockClock) -> None:
    """Without run(nursery=...), a service is refused before anything starts."""
    ignition = Ignition()
    ignition.add("http", http_server, 8080)
    with pytest.raises(ValueError, match=r"\['http'\] are services"):
        await ignition.run()


async def test_service_failing_or_hanging_before_ready(
    autojump_clock: MockClock,
) -> None:
    """A service failing before ready is FAILED; one not ready in time is TIMED_OUT."""

    async def broken(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await trio.sleep(1)
        raise Boom("no port")

    async def hanging(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await trio.sleep_forever()

    async def quitter(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        ignition = Ignition(cancel_individual_on_timeout=True)
        ignition.add("broken", broken)
        ignition.add("hanging", hanging, timeout=2)
        ignition.add("quitter", quitter)
        result = await ignition.run(nursery=nursery)
    assert statuses(result) == {"broken": F, "hanging": Status.TIMED_OUT, "quitter": F}
    assert isinstance(result.outcomes["broken"].error, Boom)
    assert isinstance(result.outcomes["quitter"].error, RuntimeError)
    assert trio.current_time() == 2


async def test_service_scope_cancel_reaches_it_after_ready(
    autojump_clock: MockClock,
) -> None:
    """A ready service still belongs to its scope: cancelling the scope ends it quietly."""
    scope = CancellationScope("http")
    async with trio.open_nursery() as nursery:
        ignition = Ignition()
        ignition.add("http", http_server, 80, scope=scope)
        result = await ignition.run(nursery=nursery)
        assert result.ok
        await trio.sleep(1)
        scope.cancel(CancelReason.MANUAL)
    assert trio.current_time() == 2


async def test_service_scope_cancelled_before_ready(autojump_clock: MockClock) -> None:
    """A service whose scope is cancelled while it starts ends CANCELLED with the cause."""
    scope = CancellationScope("http")

    async def cancel_soon() -> None:
        await trio.sleep(0.5)
        scope.cancel(CancelReason.MANUAL, triggered_by="operator")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_soon)
        ignition = Ignition()
        ignition.add("http", http_server, 80, scope=scope)
        result = await ignition.run(nursery=nursery)
    outcome = result.outcomes["http"]
    assert outcome.status is Status.CANCELLED
    assert outcome.cause is scope.cause
    assert times(outcome) == (0, 0.5)


async def test_ready_service_frees_its_parallelism_slot(
    autojump_clock: MockClock,
) -> None:
    """max_parallelism counts a service only until it is ready."""
    async with trio.open_nursery() as nursery:
        ignition = Ignition(max_parallelism=1)
        ignition.add("http", http_server, 80)
        ignition.add("after", ok, 1)
        result = await ignition.run(nursery=nursery)
        nursery.cancel_scope.cancel()
    assert times(result.outcomes["http"]) == (0, 1)
    assert times(result.outcomes["after"]) == (1, 2)


async def test_staged_run_with_fail_fast_policy(autojump_clock: MockClock) -> None:
    """IgnitionPolicy.FAIL_FAST inside a stage stops the whole staged run."""
    ignition = Ignition(
        mode=ExecutionMode.STAGED,
        policy=IgnitionPolicy.FAIL_FAST,
        stage_policy=StagePolicy.BEST_EFFORT,
    )
    ignition.add("a", fail, 1)
    ignition.add("b", ok, 2)
    ignition.add("c", ok, 1, stage=1)
    result = await ignition.run()
    assert statuses(result) == {"a": F, "b": C, "c": Status.SKIPPED}
    assert [s.promoted for s in result.stages] == [False, False]
    assert result.duration == 1


# -- external cancellation -------------------------------------------------------


async def test_external_cancel_propagates_and_leaves_nothing(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """Cancelling run() from outside raises Cancelled and stops every signal, even in a nursery."""
    ended: list[float] = []

    async def slow() -> None:
        try:
            await trio.sleep(10)
        finally:
            ended.append(trio.current_time())

    with no_task_leaks():
        async with trio.open_nursery() as nursery:
            ignition = Ignition()
            ignition.add("a", slow)
            ignition.add("b", slow)
            with trio.move_on_after(1) as outer:
                await ignition.run(nursery=nursery)
            assert outer.cancelled_caught
    assert ended == [1, 1]
    assert trio.current_time() == 1


async def test_external_cancel_never_starts_dependents(
    autojump_clock: MockClock, no_task_leaks: Leaks
) -> None:
    """Once run() is cancelled, no dependent starts, not even in the caller's nursery."""
    started: list[str] = []

    async def record(name: str, delay: float) -> None:
        started.append(name)
        await trio.sleep(delay)

    with no_task_leaks():
        async with trio.open_nursery() as nursery:
            ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
            ignition.add("a", record, "a", 1)
            ignition.add("b", record, "b", 1, depends_on=["a"])
            with trio.move_on_after(0.5):
                await ignition.run(nursery=nursery)
    assert started == ["a"]
    assert trio.current_time() == 0.5


async def test_signals_cancelled_from_outside_stop_the_run(
    autojump_clock: MockClock,
) -> None:
    """The caller's nursery cancelled under running signals: EXTERNAL, and the run stops."""

    async def host(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        async with trio.open_nursery() as signals_nursery:
            task_status.started(signals_nursery)
            await trio.sleep_forever()

    async with trio.open_nursery() as outer:
        signals_nursery: trio.Nursery = await outer.start(host)

        async def pull_the_plug() -> None:
            await trio.sleep(0.5)
            signals_nursery.cancel_scope.cancel(reason="shutting down")

        outer.start_soon(pull_the_plug)
        ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
        ignition.add("a", ok, 1)
        ignition.add("b", ok, 1, depends_on=["a"])
        ignition.add("c", ok, 2)
        result = await ignition.run(nursery=signals_nursery)
        outer.cancel_scope.cancel()
    assert statuses(result) == {"a": C, "b": Status.SKIPPED, "c": C}
    external = CancelCause.external("shutting down")
    assert result.outcomes["a"].cause == external
    assert result.outcomes["b"].cause == external
    assert result.duration == 0.5


# -- results and events ----------------------------------------------------------


async def test_summary_text(autojump_clock: MockClock) -> None:
    """str(result) lists each signal with status, duration and cause."""
    bundle = CancellationScope("redis")
    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE, global_timeout=10)
    ignition.add("database", ok, 1)
    ignition.add("redis", fail, 0.5, scope=bundle, cancel_scope_on_failure=True)
    ignition.add("redis-warmup", ok, 2, scope=bundle)
    ignition.add("reports", ok, 1, depends_on=["redis"])
    result = await ignition.run()
    assert str(result) == result.summary()
    assert result.summary().splitlines() == [
        "ignition FAILED in 1.000s: 1 succeeded, 1 failed, 1 cancelled, 1 skipped",
        "  database      succeeded    1.000s",
        "  redis         failed       0.500s  Boom: failed after 0.5s",
        "  redis-warmup  cancelled    0.500s  step_failed (internal) in scope 'redis', "
        "triggered by 'redis': Boom: failed after 0.5s",
        "  reports       skipped           -  dependency_failed (internal), triggered by "
        "'redis': dependency 'redis' failed",
    ]
    assert result.counts()[Status.SKIPPED] == 1
    hash(result)  # a frozen record, usable in sets despite its mapping


async def test_summary_of_stages_and_empty_run(autojump_clock: MockClock) -> None:
    """Staged summaries group by stage; an empty ignition is an ok no-op."""
    ignition = staged(StagePolicy.ALL_MUST_SUCCEED)
    ignition.add("db", ok, 1)
    ignition.add("web", fail, 1, stage=1)
    result = await ignition.run()
    assert result.summary().splitlines() == [
        "ignition FAILED in 2.000s: 1 succeeded, 1 failed",
        "  stage 0: promoted after 1.000s",
        "    db   succeeded    1.000s",
        "  stage 1: not promoted",
        "    web  failed       1.000s  Boom: failed after 1s",
    ]
    empty = await Ignition().run()
    assert empty.ok
    assert empty.duration == 0
    assert dict(empty.outcomes) == {}
    assert empty.summary() == "ignition ok in 0.000s: no signals"


async def test_observer_events_in_order(autojump_clock: MockClock) -> None:
    """The observer sees started, completed and the final result, in order."""
    events: list[trio_sagas.Event] = []
    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE, observer=events.append)
    ignition.add("a", fail, 1)
    ignition.add("b", ok, 1, depends_on=["a"])
    result = await ignition.run()
    described = [
        (type(e).__name__, e.at, getattr(e, "name", None), getattr(e, "status", None))
        for e in events
    ]
    assert described == [
        ("SignalStarted", 0, "a", None),
        ("SignalCompleted", 1, "a", Status.FAILED),
        ("SignalCompleted", 1, "b", Status.SKIPPED),
        ("IgnitionCompleted", 1, None, None),
    ]
    last = events[-1]
    assert isinstance(last, trio_sagas.IgnitionCompleted)
    assert last.result is result


async def test_raising_observer_is_isolated(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer that raises is logged and never breaks the run."""

    def bad_observer(event: trio_sagas.Event) -> None:
        raise RuntimeError("observer bug")

    ignition = Ignition(observer=bad_observer)
    ignition.add("a", ok, 1)
    result = await ignition.run()
    assert result.ok
    assert "observer bug" in caplog.text


# -- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "parallel"}, TypeError, "mode must be an ExecutionMode"),
        ({"mode": None}, TypeError, "mode must be an ExecutionMode .*got None"),
        ({"policy": "best_effort"}, TypeError, "policy must be one of IgnitionPolicy"),
        ({"policy": None}, TypeError, "policy must be one of .*got None"),
        ({"stage_policy": IgnitionPolicy.FAIL_FAST}, TypeError, "stage_policy"),
        ({"global_timeout": 0}, ValueError, "global_timeout must be > 0"),
        ({"global_timeout": -1}, ValueError, "global_timeout must be > 0.*got -1"),
        ({"global_timeout": math.nan}, ValueError, "global_timeout.*got nan"),
        ({"global_timeout": math.inf}, ValueError, "global_timeout must be a finite"),
        ({"global_timeout": "5"}, TypeError, "global_timeout.*got '5'"),
        ({"early_promotion_threshold": 0}, ValueError, r"0 < x <= 1, got 0"),
        ({"early_promotion_threshold": 1.5}, ValueError, r"0 < x <= 1, got 1.5"),
        ({"early_promotion_threshold": -0.5}, ValueError, r"got -0.5"),
        ({"early_promotion_threshold": math.nan}, ValueError, "threshold.*got nan"),
        ({"early_promotion_threshold": "1"}, TypeError, "early_promotion_threshold"),
        (
            {"max_parallelism": 0},
            ValueError,
            "max_parallelism must be an int >= 1, got 0",
        ),
        ({"max_parallelism": -3}, ValueError, "max_parallelism.*got -3"),
        ({"max_parallelism": 1.5}, TypeError, "max_parallelism"),
        ({"max_parallelism": "3"}, TypeError, "max_parallelism.*got '3'"),
        ({"max_parallelism": True}, TypeError, "max_parallelism.*got True"),
        (
            {"cancel_dependents_on_failure": 1},
            TypeError,
            "cancel_dependents_on_failure",
        ),
        ({"cancel_on_global_timeout": None}, TypeError, "cancel_on_global_timeout"),
        ({"cancel_individual_on_timeout": "yes"}, TypeError, "individual"),
        ({"observer": 3}, TypeError, "observer"),
    ],
)
def test_constructor_validation(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad configuration fails fast, naming the argument and the value."""
    with pytest.raises(error, match=match):
        Ignition(**kwargs)


def test_async_policy_is_refused() -> None:
    """A policy must be a sync callable."""

    async def policy(finished: Outcome[Any], results: Any) -> bool:
        return True

    with pytest.raises(TypeError, match="policy must be a sync callable"):
        Ignition(policy=policy)  # type: ignore[arg-type]


def test_add_validation() -> None:
    """add() refuses sync functions, duplicates, bad timeouts and options the mode ignores."""

    def sync() -> None:
        pass

    ignition = Ignition()
    ignition.add("a", ok, 1)
    with pytest.raises(TypeError, match="fn must be an async function"):
        ignition.add("s", sync)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name 'a' is already used"):
        ignition.add("a", ok, 1)
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got 0"):
        ignition.add("b", ok, 1, timeout=0)
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got -2"):
        ignition.add("b", ok, 1, timeout=-2)
    with pytest.raises(ValueError, match="timeout must be > 0 seconds, got nan"):
        ignition.add("b", ok, 1, timeout=math.nan)
    with pytest.raises(ValueError, match=r"timeout must be a finite number .* got inf"):
        ignition.add("b", ok, 1, timeout=math.inf)
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        ignition.add("b", ok, 1, timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str, got None"):
        ignition.add(None, ok, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must be an async callable, got None"):
        ignition.add("b", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cancel_scope_on_failure must be a bool"):
        ignition.add("b", ok, 1, cancel_scope_on_failure=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry must be a RetryPolicy or None"):
        ignition.add("b", ok, 1, retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dependencies only apply in"):
        ignition.add("b", ok, 1, depends_on=["a"])
    with pytest.raises(ValueError, match="stages only apply in"):
        ignition.add("b", ok, 1, stage=1)
    with pytest.raises(ValueError, match="without a scope"):
        ignition.add("b", ok, 1, cancel_scope_on_failure=True)
    with pytest.raises(TypeError, match="scope must be a CancellationScope"):
        ignition.add("b", ok, 1, scope="bundle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be non-empty"):
        ignition.add("", ok, 1)
    dag = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    with pytest.raises(TypeError, match="not the str 'a'"):
        dag.add("b", ok, 1, depends_on="a")
    with pytest.raises(ValueError, match="depends_on has the name 'a' twice"):
        dag.add("b", ok, 1, depends_on=["a", "a"])
    with pytest.raises(TypeError, match="depends_on must hold names"):
        dag.add("b", ok, 1, depends_on=["a", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="depends_on must be an iterable"):
        dag.add("b", ok, 1, depends_on=3)  # type: ignore[arg-type]
    stages = Ignition(mode=ExecutionMode.STAGED)
    with pytest.raises(ValueError, match="stage must be an int >= 0, got -1"):
        stages.add("b", ok, 1, stage=-1)
    with pytest.raises(TypeError, match="stage must be an int >= 0, got '1'"):
        stages.add("b", ok, 1, stage="1")  # type: ignore[arg-type]
    assert ignition.names == ("a",)


async def test_graph_validation_before_anything_starts(
    autojump_clock: MockClock,
) -> None:
    """Unknown dependencies and cycles (named in order) are refused before any signal runs."""
    started: list[str] = []

    async def work(name: str) -> None:
        started.append(name)

    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    ignition.add("free", work, "free")
    ignition.add("a", work, "a", depends_on=["ghost"])
    with pytest.raises(
        ValueError, match="signal 'a' depends on unknown signal 'ghost'"
    ):
        await ignition.run()

    cyclic = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    cyclic.add("free", work, "free")
    cyclic.add("a", work, "a", depends_on=["b"])
    cyclic.add("b", work, "b", depends_on=["c"])
    cyclic.add("c", work, "c", depends_on=["a"])
    with pytest.raises(ValueError, match="dependency cycle: 'a' -> 'b' -> 'c' -> 'a'"):
        await cyclic.run()
    with pytest.raises(ValueError, match="dependency cycle"):
        await cyclic.run()  # still refused: the check starts afresh

    selfish = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    selfish.add("me", work, "me", depends_on=["me"])
    with pytest.raises(ValueError, match="dependency cycle: 'me' -> 'me'"):
        await selfish.run()
    assert started == []


async def test_runs_once(autojump_clock: MockClock) -> None:
    """An Ignition runs once; adding or running again is refused."""
    ignition = Ignition()
    ignition.add("a", ok, 1)
    await ignition.run()
    with pytest.raises(RuntimeError, match="runs once"):
        await ignition.run()
    with pytest.raises(RuntimeError, match="already ran"):
        ignition.add("b", ok, 1)


def test_public_names_are_final_and_public() -> None:
    """The ignition names live in trio_sagas and are final."""
    for name in (
        "Ignition",
        "IgnitionResult",
        "StageResult",
        "SignalStarted",
        "SignalCompleted",
        "StageStarted",
        "GlobalTimeoutReached",
        "IgnitionCompleted",
        "ExecutionMode",
        "IgnitionPolicy",
        "StagePolicy",
    ):
        obj = getattr(trio_sagas, name)
        assert name in trio_sagas.__all__
        assert obj.__module__ == "trio_sagas"
        assert getattr(obj, "__final__", False) or name.endswith(("Mode", "Policy"))
    assert issubclass(trio_sagas.SignalCompleted, trio_sagas.Event)


# -- the property over random DAGs --------------------------------------------------


@st.composite
def random_dags(draw: st.DrawFn) -> list[tuple[int, list[int], bool]]:
    """Nodes in topological order: (duration, dependencies, fails)."""
    size = draw(st.integers(1, 30))
    nodes = []
    for index in range(size):
        deps = (
            draw(st.lists(st.integers(0, index - 1), max_size=4, unique=True))
            if index
            else []
        )
        fails = draw(st.integers(0, 3)) == 0  # about one node in four fails
        nodes.append((draw(st.integers(1, 3)), deps, fails))
    return nodes


@settings(max_examples=200)
@given(dag=random_dags(), cancel_dependents=st.booleans(), reverse=st.booleans())
def test_property_random_dags(
    dag: list[tuple[int, list[int], bool]],
    cancel_dependents: bool,
    reverse: bool,
    no_task_leaks: Leaks,
) -> None:
    """Random DAGs with random failures: run-after-deps, right root cause, once, no leaks."""
    runs: dict[str, int] = {}

    async def body(name: str, duration: int, fails: bool) -> None:
        runs[name] = runs.get(name, 0) + 1
        await trio.sleep(duration)
        if fails:
            raise Boom(name)

    async def main() -> trio_sagas.IgnitionResult:
        ignition = Ignition(
            mode=ExecutionMode.DEPENDENCY_AWARE,
            global_timeout=None,
            cancel_dependents_on_failure=cancel_dependents,
        )
        order = list(range(len(dag)))
        if reverse:  # dependencies may be added after their dependents
            order.reverse()
        for index in order:
            duration, deps, fails = dag[index]
            ignition.add(
                f"n{index}",
                body,
                f"n{index}",
                duration,
                fails,
                depends_on=[f"n{d}" for d in deps],
            )
        with no_task_leaks():
            return await ignition.run()

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # Expected schedule: a node starts when its last dependency succeeded; a
    # node with an unsuccessful dependency ends when the first one ended.
    finish: list[float] = []
    good: list[bool] = []
    for index, (duration, deps, fails) in enumerate(dag):
        name = f"n{index}"
        outcome = result.outcomes[name]
        bad_deps = [d for d in deps if not good[d]]
        if bad_deps:
            end = min(finish[d] for d in bad_deps)
            assert name not in runs
            assert outcome.status is (
                Status.CANCELLED if cancel_dependents else Status.SKIPPED
            )
            assert outcome.started_at is None
            assert outcome.finished_at == end
            assert outcome.cause is not None
            assert outcome.cause.reason is CancelReason.DEPENDENCY_FAILED
            # The root cause is a failed ancestor reached through a dependency
            # that ended at that same earliest moment.
            roots = set()
            for d in bad_deps:
                if finish[d] == end:
                    dep_outcome = result.outcomes[f"n{d}"]
                    roots.add(
                        dep_outcome.cause.triggered_by if dep_outcome.cause else f"n{d}"
                    )
            trigger = outcome.cause.triggered_by
            assert trigger is not None
            assert trigger in roots
            root = result.outcomes[trigger]
            assert root.status is Status.FAILED
            finish.append(end)
            good.append(False)
        else:
            start = max((finish[d] for d in deps), default=0)
            assert runs[name] == 1
            assert times(outcome) == (start, start + duration)
            assert outcome.status is (Status.FAILED if fails else Status.SUCCEEDED)
            finish.append(start + duration)
            good.append(not fails)
    assert result.finished_at == max(finish)


@settings(max_examples=100)
@given(
    dag=random_dags(),
    limit=st.integers(1, 4),
    policy=st.sampled_from([IgnitionPolicy.BEST_EFFORT, IgnitionPolicy.FAIL_FAST]),
)
def test_property_random_dags_bounded_and_fail_fast(
    dag: list[tuple[int, list[int], bool]],
    limit: int,
    policy: IgnitionPolicy,
    no_task_leaks: Leaks,
) -> None:
    """Under max_parallelism and FAIL_FAST: bounded, deps first, once, nothing after a stop."""
    runs: dict[str, int] = {}
    running = 0
    peak = 0

    async def body(name: str, duration: int, fails: bool) -> None:
        nonlocal running, peak
        runs[name] = runs.get(name, 0) + 1
        running += 1
        peak = max(peak, running)
        try:
            await trio.sleep(duration)
        finally:
            running -= 1
        if fails:
            raise Boom(name)

    async def main() -> trio_sagas.IgnitionResult:
        ignition = Ignition(
            mode=ExecutionMode.DEPENDENCY_AWARE,
            policy=policy,
            global_timeout=None,
            max_parallelism=limit,
        )
        for index, (duration, deps, fails) in enumerate(dag):
            ignition.add(
                f"n{index}",
                body,
                f"n{index}",
                duration,
                fails,
                depends_on=[f"n{d}" for d in deps],
            )
        with no_task_leaks():
            return await ignition.run()

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert peak <= limit
    assert all(count == 1 for count in runs.values())
    failures = [o.finished_at for o in result.outcomes.values() if o.status is F]
    first_failure = min((t for t in failures if t is not None), default=math.inf)
    for index, (_, deps, _) in enumerate(dag):
        outcome = result.outcomes[f"n{index}"]
        if outcome.started_at is None:
            assert f"n{index}" not in runs
            continue
        for dep in deps:
            dep_outcome = result.outcomes[f"n{dep}"]
            assert dep_outcome.ok
            assert dep_outcome.finished_at is not None
            assert dep_outcome.finished_at <= outcome.started_at
        if policy is IgnitionPolicy.FAIL_FAST:
            assert outcome.started_at <= first_failure
            if outcome.status is C:
                assert outcome.cause is not None
                assert outcome.cause.reason is CancelReason.STEP_FAILED
