# Every case passes a wrongly typed argument on purpose.
# mypy: disable-error-code="arg-type, list-item, call-overload, call-arg, misc"
"""Bad input to every public constructor and function: a clear error naming the argument.

One rule for the whole package (as trio's ``open_memory_channel``): a wrong
*type* is a :exc:`TypeError`, a wrong *value* a :exc:`ValueError`, and the
message names the argument. Each case feeds one bad input — a wrong type,
``None``, a negative, NaN or infinite number, an empty or duplicate name, a
sync callable where an async one is needed — and checks both the exception
type and that the message names the argument. Nothing may hang, so every
case runs under a ``trio.fail_after`` guard.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import trio

import trio_sagas as ts

NAN = math.nan
INF = math.inf


async def _async_fn(*args: object) -> None:
    pass


def _sync_fn(*args: object) -> None:
    pass


async def _step(ctx: object, state: object) -> None:
    pass


async def _handler(item: object, ctx: object) -> None:
    pass


async def _async_observer(event: object) -> None:
    pass


def _xfail(component: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(
        reason=f"component {component}: fixed on its branch", strict=False
    )


def case(
    case_id: str,
    call: Callable[[], object],
    error: type[Exception],
    argument: str,
    *,
    owner: str | None = None,
) -> Any:
    """One bad input: *call* must raise *error* with *argument* in the message.

    *owner* names another engineer's component where this branch does not
    fix the case yet: it is then an expected failure (not strict).
    """
    marks = [] if owner is None else [_xfail(owner)]
    return pytest.param(call, error, argument, id=case_id, marks=marks)


def _act(**kwargs: Any) -> ts.Act:
    return ts.Act("a", _step, **kwargs)


async def _enter_err_group(**kwargs: Any) -> None:
    async with ts.open_err_group(**kwargs):
        pass  # pragma: no cover


async def _in_err_group(action: Callable[[ts.ErrGroup], object]) -> None:
    async with ts.open_err_group() as group:
        action(group)


async def _enter_merge(*receivers: Any) -> None:
    async with ts.open_merge(*receivers):
        pass  # pragma: no cover


async def _fan_in(**kwargs: Any) -> None:
    send, receive = trio.open_memory_channel[int](1)
    await send.aclose()
    arguments: dict[str, Any] = {
        "context": ts.StepContext("ingest"),
        "receivers": [receive],
        "handler": _handler,
    }
    arguments.update(kwargs)
    await ts.fan_in(**arguments)


async def _compensation_run(**kwargs: Any) -> None:
    scope = ts.CompensationScope()
    scope.register(_async_fn)
    await scope.run(**kwargs)


async def _executor_run(**kwargs: Any) -> None:
    arguments: dict[str, Any] = {"policy": ts.RetryPolicy()}
    arguments.update(kwargs)
    op = arguments.pop("op", _async_fn)
    await ts.Executor().run(op, **arguments)


async def _run_scene(**kwargs: Any) -> None:
    arguments: dict[str, Any] = {"scene": ts.Scene("s", [_act()]), "state": {}}
    arguments.update(kwargs)
    await ts.run_scene(**arguments)


async def _ignition_run(**kwargs: Any) -> None:
    await ts.Ignition().run(**kwargs)


CORE = [
    # Outcome records and causes
    case(
        "Outcome-status-str", lambda: ts.Outcome("a", "succeeded"), TypeError, "status"
    ),
    case(
        "Outcome-name-None",
        lambda: ts.Outcome(None, ts.Status.FAILED),
        TypeError,
        "name",
    ),
    case(
        "Outcome-name-empty",
        lambda: ts.Outcome("", ts.Status.FAILED),
        ValueError,
        "name",
    ),
    case(
        "Outcome-started-nan",
        lambda: ts.Outcome("a", ts.Status.FAILED, started_at=NAN),
        ValueError,
        "started_at",
    ),
    case(
        "Outcome-finished-inf",
        lambda: ts.Outcome("a", ts.Status.FAILED, finished_at=INF),
        ValueError,
        "finished_at",
    ),
    case(
        "Outcome-error-str",
        lambda: ts.Outcome("a", ts.Status.FAILED, error="boom"),
        TypeError,
        "error",
    ),
    case(
        "Outcome-cause-str",
        lambda: ts.Outcome("a", ts.Status.CANCELLED, cause="manual"),
        TypeError,
        "cause",
    ),
    case(
        "Outcome-attributes-list",
        lambda: ts.Outcome("a", ts.Status.FAILED, attributes=[1]),
        TypeError,
        "attributes",
    ),
    case(
        "CancelCause.of-str", lambda: ts.CancelCause.of("manual"), TypeError, "reason"
    ),
    case(
        "CancelCause.of-message-int",
        lambda: ts.CancelCause.of(ts.CancelReason.MANUAL, message=3),
        TypeError,
        "message",
    ),
    case(
        "CancelCause-origin-str",
        lambda: ts.CancelCause(reason=ts.CancelReason.MANUAL, origin="external"),
        TypeError,
        "origin",
    ),
    case(
        "CancelCause-scope-empty",
        lambda: ts.CancelCause.of(ts.CancelReason.MANUAL, scope=""),
        ValueError,
        "scope",
    ),
    case(
        "CancelCause-triggered_by-int",
        lambda: ts.CancelCause.of(ts.CancelReason.MANUAL, triggered_by=1),
        TypeError,
        "triggered_by",
    ),
    # Cancellation tree
    case(
        "CancellationScope-name-None",
        lambda: ts.CancellationScope(None),
        TypeError,
        "name",
    ),
    case(
        "CancellationScope-name-empty",
        lambda: ts.CancellationScope(""),
        ValueError,
        "name",
    ),
    case(
        "CancellationScope-name-slash",
        lambda: ts.CancellationScope("a/b"),
        ValueError,
        "name",
    ),
    case(
        "CancellationScope-parent-str",
        lambda: ts.CancellationScope("a", parent="root"),
        TypeError,
        "parent",
    ),
    case(
        "CancellationScope.child-duplicate",
        lambda: _duplicate_child(),
        ValueError,
        "name",
    ),
    case(
        "CancellationScope.cancel-reason-str",
        lambda: ts.CancellationScope("r").cancel("manual"),
        TypeError,
        "reason",
    ),
    # Compensation
    case(
        "CompensationScope.register-sync",
        lambda: ts.CompensationScope().register(_sync_fn),
        TypeError,
        "fn",
    ),
    case(
        "CompensationScope.register-None",
        lambda: ts.CompensationScope().register(None),
        TypeError,
        "fn",
    ),
    case(
        "CompensationScope.register-name-empty",
        lambda: ts.CompensationScope().register(_async_fn, name=""),
        ValueError,
        "name",
    ),
    case(
        "CompensationScope.absorb-list",
        lambda: ts.CompensationScope().absorb([]),
        TypeError,
        "other",
    ),
    case(
        "CompensationScope.run-timeout-0",
        lambda: _compensation_run(timeout=0),
        ValueError,
        "timeout",
    ),
    case(
        "CompensationScope.run-timeout-nan",
        lambda: _compensation_run(timeout=NAN),
        ValueError,
        "timeout",
    ),
    case(
        "CompensationScope.run-timeout-negative",
        lambda: _compensation_run(timeout=-1),
        ValueError,
        "timeout",
    ),
    case(
        "CompensationScope.run-timeout-str",
        lambda: _compensation_run(timeout="1"),
        TypeError,
        "timeout",
    ),
    case(
        "CompensationScope.run-policy-str",
        lambda: _compensation_run(policy="parallel"),
        TypeError,
        "policy",
    ),
    case(
        "CompensationScope.run-retry-int",
        lambda: _compensation_run(retry=3),
        TypeError,
        "retry",
    ),
    case("StepContext-name-empty", lambda: ts.StepContext(""), ValueError, "name"),
    case("StepContext-name-None", lambda: ts.StepContext(None), TypeError, "name"),
    case(
        "StepContext-path-int", lambda: ts.StepContext("a", path=123), TypeError, "path"
    ),
    case(
        "StepContext-path-empty",
        lambda: ts.StepContext("a", path=""),
        ValueError,
        "path",
    ),
    case(
        "StepContext-run_id-int",
        lambda: ts.StepContext("a", run_id=7),
        TypeError,
        "run_id",
    ),
    case(
        "StepContext-key-int",
        lambda: ts.StepContext("a", idempotency_key=7),
        TypeError,
        "idempotency_key",
    ),
    case(
        "StepContext-compensation-list",
        lambda: ts.StepContext("a", compensation=[]),
        TypeError,
        "compensation",
    ),
    case(
        "StepContext-cancellation-str",
        lambda: ts.StepContext("a", cancellation="app"),
        TypeError,
        "cancellation",
    ),
    case(
        "StepContext.child-slash",
        lambda: ts.StepContext("a").child("b/c"),
        ValueError,
        "name",
    ),
    case(
        "StepContext.register-sync",
        lambda: ts.StepContext("a").register_compensation(_sync_fn),
        TypeError,
        "fn",
    ),
    case(
        "SagaError-original-str",
        lambda: ts.SagaError("boom", [ValueError()]),
        TypeError,
        "original",
    ),
    case(
        "SagaError-errors-empty",
        lambda: ts.SagaError(ValueError(), []),
        ValueError,
        "compensation_errors",
    ),
    case(
        "SagaError-errors-str",
        lambda: ts.SagaError(ValueError(), ["x"]),
        TypeError,
        "compensation_errors",
    ),
    case(
        "SagaError.from_report-ok",
        lambda: ts.SagaError.from_report(ValueError(), ts.CompensationReport()),
        ValueError,
        "report",
    ),
    # Error group
    case(
        "open_err_group-limit-0", lambda: _enter_err_group(limit=0), ValueError, "limit"
    ),
    case(
        "open_err_group-limit-str",
        lambda: _enter_err_group(limit="3"),
        TypeError,
        "limit",
    ),
    case(
        "open_err_group-limit-float",
        lambda: _enter_err_group(limit=2.5),
        TypeError,
        "limit",
    ),
    case(
        "open_err_group-name-empty",
        lambda: _enter_err_group(name=""),
        ValueError,
        "name",
    ),
    case(
        "open_err_group-name-None",
        lambda: _enter_err_group(name=None),
        TypeError,
        "name",
    ),
    case(
        "open_err_group-compensation-str",
        lambda: _enter_err_group(compensation="parallel"),
        TypeError,
        "compensation",
    ),
    case(
        "open_err_group-retry-int",
        lambda: _enter_err_group(compensation_retry=3),
        TypeError,
        "compensation_retry",
    ),
    case(
        "open_err_group-timeout-0",
        lambda: _enter_err_group(compensation_timeout=0),
        ValueError,
        "compensation_timeout",
    ),
    case(
        "open_err_group-timeout-nan",
        lambda: _enter_err_group(compensation_timeout=NAN),
        ValueError,
        "compensation_timeout",
    ),
    case(
        "open_err_group-timeout-negative",
        lambda: _enter_err_group(compensation_timeout=-1),
        ValueError,
        "compensation_timeout",
    ),
    case(
        "open_err_group-observer-async",
        lambda: _enter_err_group(observer=_async_fn),
        TypeError,
        "observer",
    ),
    case(
        "open_err_group-observer-int",
        lambda: _enter_err_group(observer=3),
        TypeError,
        "observer",
    ),
    case("ErrGroup-constructor", lambda: ts.ErrGroup(), TypeError, "ErrGroup"),
    case(
        "ErrGroup.start_soon-sync",
        lambda: _in_err_group(lambda g: g.start_soon(_sync_fn)),
        TypeError,
        "fn",
    ),
    case(
        "ErrGroup.start_soon-name-empty",
        lambda: _in_err_group(lambda g: g.start_soon(_async_fn, name="")),
        ValueError,
        "name",
    ),
    case(
        "ErrGroup.start_step-name-slash",
        lambda: _in_err_group(lambda g: g.start_step(_async_fn, name="a/b")),
        ValueError,
        "name",
    ),
    case(
        "ErrGroup.try_start_soon-None",
        lambda: _in_err_group(lambda g: g.try_start_soon(None)),
        TypeError,
        "fn",
    ),
    case(
        "ErrGroup.cancel-reason-str",
        lambda: _in_err_group(lambda g: g.cancel("manual")),
        TypeError,
        "reason",
    ),
    # Timelines
    case(
        "timeline_from_entries-item",
        lambda: ts.timeline_from_entries([object()]),
        TypeError,
        "entries[...]",
    ),
    case(
        "render_timeline-width-nan",
        lambda: ts.render_timeline([], width=NAN),
        TypeError,
        "width",
    ),
    case(
        "render_timeline-width-small",
        lambda: ts.render_timeline([], width=3),
        ValueError,
        "width",
    ),
    case(
        "render_timeline-ascii-str",
        lambda: ts.render_timeline([], ascii_only="yes"),
        TypeError,
        "ascii_only",
    ),
    case("timeline_spans-int", lambda: ts.timeline_spans(3), TypeError, "timeline"),
    case("plot_timeline-path-int", lambda: ts.plot_timeline([], 3), TypeError, "path"),
]


def _duplicate_child() -> None:
    root = ts.CancellationScope("root")
    keep = root.child("c")
    root.child("c")
    del keep  # pragma: no cover


SAGA = [
    case("Act-name-empty", lambda: ts.Act("", _step), ValueError, "name"),
    case("Act-run-sync", lambda: ts.Act("a", _sync_fn), TypeError, "run"),
    case("Act-run-None", lambda: ts.Act("a", None), TypeError, "run"),
    case(
        "Act-compensate-sync",
        lambda: _act(compensate=_sync_fn),
        TypeError,
        "compensate",
    ),
    case("Act-timeout-nan", lambda: _act(timeout=NAN), ValueError, "timeout"),
    case("Act-timeout-negative", lambda: _act(timeout=-1), ValueError, "timeout"),
    case("Act-timeout-str", lambda: _act(timeout="5"), TypeError, "timeout"),
    case("Act-retry-int", lambda: _act(retry=3), TypeError, "retry"),
    case(
        "Act-compensation_timeout-0",
        lambda: _act(compensation_timeout=0),
        ValueError,
        "compensation_timeout",
    ),
    case(
        "Act-compensation_timeout-nan",
        lambda: _act(compensation_timeout=NAN),
        ValueError,
        "compensation_timeout",
    ),
    case("Scene-name-None", lambda: ts.Scene(None, []), TypeError, "name"),
    case(
        "Scene-steps-duplicate",
        lambda: ts.Scene("s", [_act(), _act()]),
        ValueError,
        "'a'",
    ),
    case(
        "Scene-steps-str",
        lambda: ts.Scene("s", ["a"]),
        TypeError,
        "steps",
    ),
    case("Scene-saga-str", lambda: ts.Scene("s", [], saga="yes"), TypeError, "saga"),
    case(
        "Scene-on_crash-str",
        lambda: ts.Scene("s", [], on_crash="resume"),
        TypeError,
        "on_crash",
    ),
    case(
        "Act-uncertain-unknown",
        lambda: ts.Act("a", _step, uncertain="maybe"),
        ValueError,
        "uncertain",
    ),
    case(
        "Act-uncertain-int",
        lambda: ts.Act("a", _step, uncertain=1),
        TypeError,
        "uncertain",
    ),
    case(
        "Chorus-duplicate", lambda: ts.Chorus("c", [_act(), _act()]), ValueError, "'a'"
    ),
    case(
        "Chorus-mode-str",
        lambda: ts.Chorus("c", [], mode="fail_fast"),
        TypeError,
        "mode",
    ),
    case(
        "Chorus-max_workers-0",
        lambda: ts.Chorus("c", [], max_workers=0),
        ValueError,
        "max_workers",
    ),
    case(
        "Chorus-max_workers-str",
        lambda: ts.Chorus("c", [], max_workers="2"),
        TypeError,
        "max_workers",
    ),
    case(
        "Chorus-timeout-inf",
        lambda: ts.Chorus("c", [], timeout=-1),
        ValueError,
        "timeout",
    ),
    case("run_scene-scene-str", lambda: _run_scene(scene="s"), TypeError, "scene"),
    case(
        "run_scene-observer-async",
        lambda: _run_scene(observer=_async_fn),
        TypeError,
        "observer",
    ),
    case("run_scene-run_id-int", lambda: _run_scene(run_id=5), TypeError, "run_id"),
    case("run_scene-run_id-empty", lambda: _run_scene(run_id=""), ValueError, "run_id"),
    case(
        "run_scene-journal-str",
        lambda: _run_scene(journal="sagas.db"),
        TypeError,
        "journal",
    ),
    case("recover-journal-None", lambda: ts.recover(None, []), TypeError, "journal"),
    case("run_worker-journal-int", lambda: ts.run_worker(3, {}), TypeError, "journal"),
    case(
        "compensate_run-journal-None",
        lambda: ts.compensate_run(None, "r", []),
        TypeError,
        "journal",
    ),
    case("durable_undo-name-int", lambda: ts.durable_undo(3), TypeError, "name"),
    case("durable_undo-name-empty", lambda: ts.durable_undo(""), ValueError, "name"),
    case(
        "durable_undo-fn-sync",
        lambda: ts.durable_undo("x-sync")(_sync_fn),  # type: ignore[type-var]
        TypeError,
        "durable_undo",
    ),
    case(
        "Act-compensate_on_failure-int",
        lambda: _act(compensate=_step, compensate_on_failure=1),
        TypeError,
        "compensate_on_failure",
    ),
    case(
        "Act-compensate_on_failure-without-compensate",
        lambda: _act(compensate_on_failure=True),
        ValueError,
        "compensate_on_failure",
    ),
]

RETRY_AND_HEDGE = [
    case(
        "RetryPolicy-max_attempts-0",
        lambda: ts.RetryPolicy(max_attempts=0),
        ValueError,
        "max_attempts",
    ),
    case(
        "RetryPolicy-max_attempts-str",
        lambda: ts.RetryPolicy(max_attempts="3"),
        TypeError,
        "max_attempts",
    ),
    case(
        "RetryPolicy-initial_backoff-negative",
        lambda: ts.RetryPolicy(initial_backoff=-1),
        ValueError,
        "initial_backoff",
    ),
    case(
        "RetryPolicy-initial_backoff-nan",
        lambda: ts.RetryPolicy(initial_backoff=NAN),
        ValueError,
        "initial_backoff",
    ),
    case(
        "RetryPolicy-max_backoff-inf",
        lambda: ts.RetryPolicy(max_backoff=INF),
        ValueError,
        "max_backoff",
    ),
    case(
        "RetryPolicy-multiplier-0.5",
        lambda: ts.RetryPolicy(multiplier=0.5),
        ValueError,
        "multiplier",
    ),
    case(
        "RetryPolicy-jitter-2", lambda: ts.RetryPolicy(jitter=2), ValueError, "jitter"
    ),
    case("RetryPolicy-hedge-int", lambda: ts.RetryPolicy(hedge=1), TypeError, "hedge"),
    case(
        "HedgePolicy-max_hedges-0",
        lambda: ts.HedgePolicy(max_hedges=0),
        ValueError,
        "max_hedges",
    ),
    case(
        "HedgePolicy-delay-nan", lambda: ts.HedgePolicy(delay=NAN), ValueError, "delay"
    ),
    case(
        "HedgePolicy-delay-nan",
        lambda: ts.HedgePolicy(delay=math.nan),
        ValueError,
        "delay",
    ),
    case(
        "HedgePolicy-trigger-empty",
        lambda: ts.HedgePolicy(trigger=""),
        ValueError,
        "trigger",
    ),
    case(
        "Classified-classification-str",
        lambda: ts.Classified("success"),
        TypeError,
        "classification",
    ),
    case(
        "Classified-backoff-negative",
        lambda: ts.Classified(ts.Classification.RETRYABLE, backoff=-1),
        ValueError,
        "backoff",
    ),
    case(
        "FixedDelayTrigger-delay-negative",
        lambda: ts.FixedDelayTrigger(-1),
        ValueError,
        "delay",
    ),
    case(
        "FixedDelayTrigger-delay-str",
        lambda: ts.FixedDelayTrigger("1"),
        TypeError,
        "delay",
    ),
    case(
        "LatencyTrigger-percentile-2",
        lambda: ts.LatencyTrigger(percentile=2),
        ValueError,
        "percentile",
    ),
    case(
        "LatencyTrigger-min_samples-0",
        lambda: ts.LatencyTrigger(min_samples=0),
        ValueError,
        "min_samples",
    ),
    case(
        "LoggingObserver-logger-int",
        lambda: ts.LoggingObserver(logger=3),
        TypeError,
        "logger",
    ),
    case(
        "LoggingObserver-level-negative",
        lambda: ts.LoggingObserver(level=-1),
        ValueError,
        "level",
    ),
    case(
        "observers-async", lambda: ts.observers(_async_observer), TypeError, "observers"
    ),
    case("LatencyWindow-size-0", lambda: ts.LatencyWindow(size=0), ValueError, "size"),
    case(
        "LatencyWindow.add-inf",
        lambda: ts.LatencyWindow().add(INF),
        ValueError,
        "seconds",
    ),
    case(
        "LatencyWindow.add-nan",
        lambda: ts.LatencyWindow().add(NAN),
        ValueError,
        "seconds",
    ),
    case(
        "TokenBucketBudget-capacity-negative",
        lambda: ts.TokenBucketBudget(-1, 1),
        ValueError,
        "capacity",
    ),
    case(
        "TokenBucketBudget-refill-nan",
        lambda: ts.TokenBucketBudget(1, NAN),
        ValueError,
        "refill_per_second",
    ),
    case(
        "TriggerRegistry.register-name-empty",
        lambda: ts.TriggerRegistry().register("", ts.FixedDelayTrigger(1)),
        ValueError,
        "name",
    ),
    case(
        "TriggerRegistry.register-trigger-int",
        lambda: ts.TriggerRegistry().register("t", 3),
        TypeError,
        "trigger",
    ),
    case(
        "Executor-classifier-int",
        lambda: ts.Executor(classifier=3),
        TypeError,
        "classifier",
    ),
    case(
        "Executor-observer-async",
        lambda: ts.Executor(observer=_async_fn),
        TypeError,
        "observer",
    ),
    case("Executor.run-op-sync", lambda: _executor_run(op=_sync_fn), TypeError, "op"),
    case(
        "Executor.run-policy-None",
        lambda: _executor_run(policy=None),
        TypeError,
        "policy",
    ),
    case("Executor.run-name-empty", lambda: _executor_run(name=""), ValueError, "name"),
]

IGNITION = [
    case(
        "Ignition-max_parallelism-str",
        lambda: ts.Ignition(max_parallelism="3"),
        TypeError,
        "max_parallelism",
    ),
    case(
        "Ignition-max_parallelism-0",
        lambda: ts.Ignition(max_parallelism=0),
        ValueError,
        "max_parallelism",
    ),
    case(
        "Ignition-global_timeout-nan",
        lambda: ts.Ignition(global_timeout=NAN),
        ValueError,
        "global_timeout",
    ),
    case(
        "Ignition-global_timeout-negative",
        lambda: ts.Ignition(global_timeout=-1),
        ValueError,
        "global_timeout",
    ),
    case("Ignition-mode-str", lambda: ts.Ignition(mode="parallel"), TypeError, "mode"),
    case(
        "Ignition-threshold-2",
        lambda: ts.Ignition(early_promotion_threshold=2),
        ValueError,
        "early_promotion_threshold",
    ),
    case(
        "Ignition-observer-async",
        lambda: ts.Ignition(observer=_async_fn),
        TypeError,
        "observer",
    ),
    case(
        "Ignition.add-sync", lambda: ts.Ignition().add("a", _sync_fn), TypeError, "fn"
    ),
    case(
        "Ignition.add-name-empty",
        lambda: ts.Ignition().add("", _async_fn),
        ValueError,
        "name",
    ),
    case("Ignition.add-duplicate", lambda: _ignition_twice(), ValueError, "'a'"),
    case(
        "Ignition.add-timeout-nan",
        lambda: ts.Ignition().add("a", _async_fn, timeout=NAN),
        ValueError,
        "timeout",
    ),
    case(
        "Ignition.add-depends_on-str",
        lambda: ts.Ignition().add("a", _async_fn, depends_on="b"),
        TypeError,
        "depends_on",
    ),
    case(
        "Ignition.add-stage-negative",
        lambda: ts.Ignition().add("a", _async_fn, stage=-1),
        ValueError,
        "stage",
    ),
    case(
        "Ignition.add-scope-str",
        lambda: ts.Ignition().add("a", _async_fn, scope="db"),
        TypeError,
        "scope",
    ),
    case(
        "Ignition.run-nursery-str",
        lambda: _ignition_run(nursery="n"),
        TypeError,
        "nursery",
    ),
]


def _ignition_twice() -> None:
    ignition = ts.Ignition()
    ignition.add("a", _async_fn)
    ignition.add("a", _async_fn)


FAN_IN = [
    case("fan_in-context-None", lambda: _fan_in(context=None), TypeError, "context"),
    case("fan_in-receivers-int", lambda: _fan_in(receivers=3), TypeError, "receivers"),
    case(
        "fan_in-receivers-list-of-int",
        lambda: _fan_in(receivers=[3]),
        TypeError,
        "receivers",
    ),
    case(
        "fan_in-handler-sync", lambda: _fan_in(handler=_sync_fn), TypeError, "handler"
    ),
    case("fan_in-timeout-nan", lambda: _fan_in(timeout=NAN), ValueError, "timeout"),
    case("fan_in-timeout-negative", lambda: _fan_in(timeout=-1), ValueError, "timeout"),
    case("fan_in-limit-0", lambda: _fan_in(limit=0), ValueError, "limit"),
    case("fan_in-limit-str", lambda: _fan_in(limit="2"), TypeError, "limit"),
    case("open_merge-int", lambda: _enter_merge(3), TypeError, "receivers"),
]

JOURNAL = [
    case("SQLiteJournal-path-int", lambda: ts.SQLiteJournal(3), TypeError, "path"),
    case("PostgresJournal-dsn-int", lambda: ts.PostgresJournal(3), TypeError, "dsn"),
    case(
        "PostgresJournal-lease-0",
        lambda: ts.PostgresJournal("postgresql://x", lease=0),
        ValueError,
        "lease",
    ),
    case(
        "SQLiteJournal-synchronous",
        lambda: ts.SQLiteJournal(":memory:", synchronous="FAST"),
        ValueError,
        "synchronous",
    ),
    case(
        "SQLiteJournal-busy_timeout-nan",
        lambda: ts.SQLiteJournal(":memory:", busy_timeout=NAN),
        ValueError,
        "busy_timeout",
    ),
    case(
        "SQLiteJournal-busy_timeout-huge",
        lambda: ts.SQLiteJournal(":memory:", busy_timeout=3e6),
        ValueError,
        "busy_timeout",
    ),
    case(
        "SQLiteJournal-codec-str",
        lambda: ts.SQLiteJournal(":memory:", codec="json"),
        TypeError,
        "codec",
    ),
    case(
        "JSONCodec-default-int",
        lambda: ts.JSONCodec(default=3),
        TypeError,
        "default",
    ),
]

CASES = CORE + SAGA + RETRY_AND_HEDGE + IGNITION + FAN_IN + JOURNAL


@pytest.mark.parametrize(("call", "error", "argument"), CASES)
async def test_bad_input_is_refused_naming_the_argument(
    call: Callable[[], object], error: type[Exception], argument: str
) -> None:
    """The bad input raises *error* (exactly that type) and names the argument."""
    with trio.fail_after(5):
        with pytest.raises(error) as raised:
            result = call()
            if inspect.isawaitable(result):
                await result
    assert type(raised.value) is error, raised.value
    assert re.search(rf"(?<!\w){re.escape(argument)}(?!\w)", str(raised.value)), (
        f"the message does not name {argument!r}: {raised.value}"
    )


def test_every_public_callable_has_a_case() -> None:
    """Each public class with arguments and each public function appears in a case id."""
    ids = " ".join(str(param.id) for param in CASES)
    exempt = {
        # Records the library builds and hands out (events, statistics,
        # results); users read them, they do not build them.
        name
        for name in ts.__all__
        if name.endswith(("Statistics", "Started", "Completed", "Failed", "Cancelled"))
    } | {
        "ActCancelled",
        "AttemptFinished",
        "AttemptInfo",
        "AttemptRecord",
        "BudgetDecision",
        "Fence",
        "WorkerRecord",
        "ClaimedRun",
        "ChorusStarted",
        "Event",
        "GlobalTimeoutReached",
        "GroupTaskFinished",
        "HedgeSpawned",
        "HedgeState",
        "IgnitionResult",
        "JournalEntry",
        "JournalWritten",
        "CompensationRegistered",
        "RecordedFailure",
        "RecoveryReport",
        "RetryScheduled",
        "RunRecord",
        "RunResumed",
        "SagaEvent",
        "SagaResult",
        "SignalStarted",
        "SkippedRun",
        "Span",
        "StageResult",
        "TriggerDecision",
        "TriggerMissing",
        "CompensationReport",
        "MergedReceiveChannel",
        "OutcomeError",
        # Protocols describing callables, not callables one calls.
        "Classifier",
        "Observer",
    }
    missing = []
    for name in ts.__all__:
        obj = getattr(ts, name)
        if name in exempt or not callable(obj) or name.isupper():
            continue
        if isinstance(obj, type) and issubclass(obj, (BaseException,)):
            continue
        if isinstance(obj, type) and (
            issubclass(obj, __import__("enum").Enum)
            or getattr(obj, "_is_protocol", False)
        ):
            continue
        if not re.search(rf"(?<![\w.]){re.escape(name)}[-.]", ids):
            missing.append(name)
    assert not missing, f"public callables without a bad-input case: {missing}"
