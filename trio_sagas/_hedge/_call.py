"""One ``Executor.run`` call: the retry loop over groups, and its attempt timeline.

The loop runs retry groups (:mod:`._group`), waiting a backoff between
them, until a group succeeds, fails for good, runs out of attempts or a
retry budget says no. Every attempt gets a number and one
:class:`~trio_sagas.AttemptRecord` in the timeline, in launch order.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

import outcome
import trio

from .._events import Emitter
from .._outcome import CancelCause, Outcome, Status
from .._retry import (
    AttemptInfo,
    AttemptRecord,
    BudgetKind,
    Classification,
    Classifier,
    HedgePolicy,
    MissingTrigger,
    RetryPolicy,
    acquire,
    classify,
)
from .._retry import attempt_record as make_record
from .._util import is_cancellation, lone_cancelled
from ._events import (
    AttemptFinished,
    BudgetDecision,
    HedgeCancelled,
    RetryScheduled,
    TriggerMissing,
)
from ._group import Finished, Group, run_hedged
from ._latency import LatencyWindow
from ._trigger import FixedDelayTrigger, HedgeTrigger, TriggerRegistry

_SUCCESS: Final = Classification.SUCCESS
_RETRYABLE: Final = Classification.RETRYABLE
_FIXED: Final = "fixed_delay"
# What a trigger that needs no latency window is handed: always empty.
_NO_SAMPLES: Final = LatencyWindow(size=1)


def needs_latency(trigger: HedgeTrigger) -> bool:
    """Whether *trigger* reads the latency window (a fixed delay never does).

    A trigger may say so with a ``uses_latency`` attribute; any trigger that
    does not is assumed to read it.
    """
    return bool(getattr(trigger, "uses_latency", True))


class Call:
    """The state of one ``Executor.run`` call."""

    __slots__ = (
        "attempts",
        "classifier",
        "emit",
        "hedge",
        "latency",
        "missing",
        "name",
        "op",
        "policy",
        "rng",
        "started_at",
        "timeline",
        "trigger",
        "trigger_label",
        "window",
    )

    def __init__(
        self,
        *,
        op: Callable[[AttemptInfo], Awaitable[Any]],
        policy: RetryPolicy,
        name: str,
        classifier: Classifier,
        emit: Emitter,
        rng: random.Random | None,
        triggers: TriggerRegistry,
        window_for: Callable[[str], LatencyWindow],
    ) -> None:
        self.op = op
        self.policy = policy
        self.name = name
        self.classifier = classifier
        self.emit = emit
        self.rng = rng
        self.timeline: list[AttemptRecord | None] = []
        self.attempts = 0
        self.started_at = 0.0
        self.missing: MissingTrigger | None = None
        self.trigger_label = _FIXED
        self.trigger: HedgeTrigger | None = None
        self.hedge: HedgePolicy | None = None
        hedge = policy.hedge
        if hedge is not None and hedge.max_hedges > 1:
            self.trigger = self._resolve_trigger(hedge, triggers)
            if self.trigger is not None:
                self.hedge = hedge
        # Only a trigger that reads latencies gets (and feeds) a window.
        self.window: LatencyWindow | None = None
        if self.trigger is not None and needs_latency(self.trigger):
            self.window = window_for(name)
        self.latency = _NO_SAMPLES if self.window is None else self.window

    def _resolve_trigger(
        self, hedge: HedgePolicy, triggers: TriggerRegistry
    ) -> HedgeTrigger | None:
        if hedge.trigger is not None:
            found = triggers.get(hedge.trigger)
            if found is not None:
                self.trigger_label = hedge.trigger
                return found
            self.missing = hedge.missing_trigger
            if self.emit.enabled:
                self.emit(
                    TriggerMissing(
                        at=trio.current_time(),
                        name=self.name,
                        trigger=hedge.trigger,
                        action=self.missing.value,
                    )
                )
            if self.missing is MissingTrigger.DISABLE:
                return None
        return FixedDelayTrigger(hedge.delay)

    # -- the retry loop -------------------------------------------------

    async def run(self) -> Outcome[Any]:
        policy = self.policy
        self.started_at = trio.current_time()
        group: Group | None = None
        best: Finished | None = None
        reason: str | None = None
        for retry_index in range(policy.max_attempts):
            if group is not None:
                reason = self._retry_denied(retry_index)
                if reason is not None:
                    break
                await trio.sleep(self._backoff(group, retry_index))
            group = Group(retry_index, trio.current_time())
            if self.trigger is None:
                await self._plain_group(group)
            else:
                await run_hedged(self, group, self.trigger)
            if group.trigger_error is not None:
                return self._trigger_failure(group)
            best = group.decide()
            classification = best.record.classification
            if classification is _SUCCESS:
                return self._finish(Status.SUCCEEDED, best, group, None)
            if classification is not _RETRYABLE:
                break
        assert best is not None
        assert group is not None
        if reason is None:
            classification = best.record.classification
            assert classification is not None
            reason = best.record.reason or (
                "retries_exhausted"
                if classification is _RETRYABLE
                else classification.value
            )
        return self._finish(Status.FAILED, best, group, reason)

    def _retry_denied(self, retry_index: int) -> str | None:
        """None if the retry budget (if any) allows group *retry_index*, else why not."""
        budget = self.policy.budget
        if budget is None:
            return None
        denied = acquire(budget, BudgetKind.RETRY, self.name)
        if self.emit.enabled:
            self.emit(
                BudgetDecision(
                    at=trio.current_time(),
                    name=self.name,
                    kind=BudgetKind.RETRY,
                    retry_index=retry_index,
                    hedge_index=0,
                    granted=denied is None,
                )
            )
        return denied

    def _backoff(self, group: Group, retry_index: int) -> float:
        overrides = [
            r.record.backoff for r in group.finished if r.record.backoff is not None
        ]
        if overrides:
            delay = self.policy.cap(max(overrides))
        else:
            delay = self.policy.backoff(group.retry_index, rng=self.rng)
        if self.emit.enabled:
            self.emit(
                RetryScheduled(
                    at=trio.current_time(),
                    name=self.name,
                    retry_index=retry_index,
                    backoff=delay,
                    override=bool(overrides),
                )
            )
        return delay

    def _attributes(self, group: Group) -> dict[str, object]:
        attributes: dict[str, object] = {
            "attempts": tuple(r for r in self.timeline if r is not None),
            "retry_groups": group.retry_index + 1,
        }
        if self.missing is not None:
            attributes["missing_trigger"] = self.missing
        return attributes

    def _finish(
        self, status: Status, best: Finished, group: Group, reason: str | None
    ) -> Outcome[Any]:
        attributes = self._attributes(group)
        attributes["classification"] = best.record.classification
        if reason is not None:
            attributes["reason"] = reason
        return Outcome(
            self.name,
            status,
            value=best.value,
            # A classifier may call an exception a success; the record keeps it.
            error=None if status is Status.SUCCEEDED else best.record.error,
            started_at=self.started_at,
            finished_at=trio.current_time(),
            attributes=attributes,
        )

    def _trigger_failure(self, group: Group) -> Outcome[Any]:
        attributes = self._attributes(group)
        attributes["classification"] = Classification.ABORT
        attributes["reason"] = "trigger_error"
        return Outcome(
            self.name,
            Status.FAILED,
            error=group.trigger_error,
            started_at=self.started_at,
            finished_at=trio.current_time(),
            attributes=attributes,
        )

    async def _plain_group(self, group: Group) -> None:
        """One attempt, run in the caller's task: no nursery needed."""
        info = self.new_attempt(group.retry_index, 0)
        started = trio.current_time()
        result: outcome.Outcome[Any]
        try:
            result = outcome.Value(await self.op(info))
        except Exception as exc:
            result = outcome.Error(exc)
        except BaseException as exc:
            self.report_external(info, started, exc, hedged=False)
            raise
        group.finished.append(self.finish(info, result, started, hedged=False))

    # -- the attempt timeline -------------------------------------------

    def new_attempt(self, retry_index: int, hedge_index: int) -> AttemptInfo:
        """Number the next attempt and reserve its place in the timeline."""
        self.attempts += 1
        self.timeline.append(None)
        return AttemptInfo(
            name=self.name,
            retry_index=retry_index,
            hedge_index=hedge_index,
            attempt=self.attempts,
        )

    def finish(
        self,
        info: AttemptInfo,
        result: outcome.Outcome[Any],
        started: float,
        *,
        hedged: bool,
    ) -> Finished:
        """Classify and record an attempt that ended on its own."""
        verdict = classify(self.classifier, result)
        record = make_record(
            info,
            status=(
                Status.SUCCEEDED
                if verdict.classification is _SUCCESS
                else Status.FAILED
            ),
            started_at=started,
            finished_at=trio.current_time(),
            verdict=verdict,
        )
        if verdict.classification is _SUCCESS and self.window is not None:
            self.window.add(record.duration)
        self.put(info, record, hedged=hedged)
        value = result.value if isinstance(result, outcome.Value) else None
        return Finished(record, value)

    def put(
        self, info: AttemptInfo, record: AttemptRecord, *, hedged: bool = False
    ) -> None:
        """Place *record* in the timeline and report it."""
        self.timeline[info.attempt - 1] = record
        if self.emit.enabled:
            self._report(info, record, hedged=hedged)

    def _report(
        self, info: AttemptInfo, record: AttemptRecord, *, hedged: bool
    ) -> None:
        self.emit(
            AttemptFinished(
                at=record.finished_at,
                attempt=info,
                status=record.status,
                classification=record.classification,
                cause=record.cause,
                duration=record.duration,
            )
        )
        if record.cause is not None and hedged:
            self.emit(
                HedgeCancelled(
                    at=record.finished_at,
                    attempt=info,
                    reason=record.cause.reason,
                    cause=record.cause,
                )
            )

    def report_external(
        self, info: AttemptInfo, started: float, exc: BaseException, *, hedged: bool
    ) -> None:
        """Tell observers an attempt was stopped by the caller's cancel.

        The call raises, so no outcome carries this record: only observers
        see it.
        """
        if not self.emit.enabled or not is_cancellation(exc):
            return
        record = make_record(
            info,
            status=Status.CANCELLED,
            started_at=started,
            finished_at=trio.current_time(),
            cause=CancelCause.from_cancelled(lone_cancelled(exc) or exc),
        )
        self._report(info, record, hedged=hedged)
