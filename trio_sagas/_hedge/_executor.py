"""The hedged retry executor: retry groups of parallel attempts (DESIGN 6).

The outer loop runs *retry groups*, waiting a backoff between them. A group
launches its primary attempt at once and, with hedging, asks a trigger when
to launch each further attempt ("hedge"). Every group is a nursery, so no
attempt outlives it. The first success wins and cancels the rest; the group
result follows the precedence SUCCESS > NON_RETRYABLE > ABORT > RETRYABLE,
counting only attempts that finished on their own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias, final

import attrs
import outcome
import trio

from .._events import Event, Observer, notify
from .._outcome import CancelCause, CancelReason, Outcome, Status
from .._retry import (
    Budget,
    BudgetKind,
    Classification,
    Classified,
    HedgePolicy,
    MissingTrigger,
    RetryPolicy,
)
from .._util import is_cancellation, lone_cancelled
from .._validate import check_async, check_sync_observer, describe_callable
from ._events import (
    AttemptFinished,
    BudgetDecision,
    HedgeCancelled,
    HedgeSpawned,
    RetryScheduled,
    TriggerDecision,
    TriggerMissing,
)
from ._latency import LatencyWindow
from ._trigger import (
    CHECK_FLOOR,
    FixedDelayTrigger,
    HedgeState,
    HedgeTrigger,
    TriggerRegistry,
    check_label,
)

Classifier: TypeAlias = Callable[[outcome.Outcome[Any]], "Classification | Classified"]
"""``classifier(result) -> Classification | Classified`` for one attempt's result."""

_SUCCESS: Final = Classification.SUCCESS
_RETRYABLE: Final = Classification.RETRYABLE
_TERMINAL: Final = frozenset({Classification.NON_RETRYABLE, Classification.ABORT})
# Lower wins; within a class the first attempt to finish decides.
_RANK: Final = {
    Classification.SUCCESS: 0,
    Classification.NON_RETRYABLE: 1,
    Classification.ABORT: 2,
    Classification.RETRYABLE: 3,
}
_FIXED: Final = "fixed_delay"


logger = logging.getLogger("trio_sagas")


def _acquire(budget: Budget, kind: BudgetKind, name: str) -> tuple[bool, str | None]:
    """Ask *budget* for one token; a budget that raises denies (fails closed).

    A budget protects a dependency: when its own code is broken, launching
    *more* attempts is the wrong failure mode, and so is crashing the call.
    The error is logged; the denial is recorded with reason ``budget_error``.
    """
    try:
        return bool(budget.try_acquire(kind)), None
    except Exception:
        logger.exception(
            "call %r: the %s budget raised; treated as a denial", name, kind.value
        )
        return False, "budget_error"


@final
@attrs.frozen(kw_only=True)
class AttemptInfo:
    """What an attempt knows about itself; the operation's only argument.

    Attributes:
        name: The call's name.
        retry_index: Its retry group (0 for the first).
        hedge_index: Its place in the group (0: the primary).
        attempt: Its number in the call, from 1, in launch order across all
            groups (a hedge the budget denied uses up a number too).
    """

    name: str
    retry_index: int
    hedge_index: int
    attempt: int

    @property
    def is_hedge(self) -> bool:
        """Whether this is a hedge rather than the group's primary attempt."""
        return self.hedge_index > 0


@final
@attrs.frozen(kw_only=True)
class AttemptRecord:
    """One entry of a call's attempt timeline (``outcome.attributes["attempts"]``).

    Attributes:
        retry_index: Its retry group.
        hedge_index: Its place in the group (0: the primary).
        attempt: Its number in the call, from 1.
        status: SUCCEEDED or FAILED (it finished), CANCELLED (the executor
            stopped it: a winner or a terminal result), or SKIPPED (the hedge
            budget denied it; it never ran).
        classification: What the classifier said about its result; None if
            it was cancelled or skipped.
        cause: Why it was cancelled (``WINNER``/``TERMINAL``, internal).
        started_at: Trio time it started (or was denied).
        finished_at: Trio time it ended.
        error: The exception it raised, if any.
        reason: The classifier's reason, ``"budget_denied"``,
            ``"classifier_error"`` or ``"trigger_error"``.
        backoff: The classifier's backoff override, if any.
    """

    retry_index: int
    hedge_index: int
    attempt: int
    status: Status
    classification: Classification | None
    cause: CancelCause | None = None
    started_at: float
    finished_at: float
    error: BaseException | None = None
    reason: str | None = None
    backoff: float | None = None

    @property
    def is_hedge(self) -> bool:
        """Whether it was a hedge rather than the group's primary attempt."""
        return self.hedge_index > 0

    @property
    def duration(self) -> float:
        """Seconds it ran (0 for a skipped hedge)."""
        return self.finished_at - self.started_at


@attrs.define(eq=False)
class _Result:
    """An attempt that finished on its own, with what the loop needs of it."""

    record: AttemptRecord
    value: object


@attrs.define(eq=False)
class _Group:
    retry_index: int
    started_at: float
    hedger: trio.CancelScope = attrs.Factory(trio.CancelScope)
    scopes: dict[int, trio.CancelScope] = attrs.Factory(dict)
    finished: list[_Result] = attrs.Factory(list)
    in_flight: int = 0
    hedges_used: int = 0
    stop_cause: CancelCause | None = None
    stopped_at: float = 0.0
    winner_latency: float = 0.0
    terminal_seen: bool = False
    trigger_error: Exception | None = None


def _default_classifier(result: outcome.Outcome[Any]) -> Classification:
    return _SUCCESS if isinstance(result, outcome.Value) else _RETRYABLE


def _external_cause(exc: BaseException) -> CancelCause:
    exc = lone_cancelled(exc) or exc
    reason = getattr(exc, "reason", None)
    return CancelCause.external(str(reason) if reason else "cancelled from outside")


@final
class Executor:
    """Runs an async operation under a :class:`~trio_sagas.RetryPolicy`, hedged.

    One executor may serve any number of concurrent calls. It keeps a
    :class:`LatencyWindow` per call name, fed by the calls it runs, for
    latency-driven triggers.

    Args:
        triggers: Named triggers that :attr:`HedgePolicy.trigger` refers to
            (a registry, or a mapping to build one from).
        classifier: ``classifier(result) -> Classification | Classified``
            for each attempt's :mod:`outcome` result. Default: a value is
            SUCCESS, an exception RETRYABLE. It must be sync and quick; an
            exception it raises makes the attempt ABORT.
        observer: Receives every event (sync; errors are isolated).
        rng: Random source for backoff jitter (seed it for reproducible runs).
        latency_window: Samples kept per call name for latency triggers.
    """

    __slots__ = (
        "_classifier",
        "_observer",
        "_rng",
        "_triggers",
        "_window_size",
        "_windows",
    )

    def __init__(
        self,
        *,
        triggers: TriggerRegistry | Mapping[str, HedgeTrigger] | None = None,
        classifier: Classifier | None = None,
        observer: Observer | None = None,
        rng: random.Random | None = None,
        latency_window: int = 1000,
    ) -> None:
        if triggers is None:
            triggers = TriggerRegistry()
        elif isinstance(triggers, Mapping):
            triggers = TriggerRegistry(dict(triggers))
        elif not isinstance(triggers, TriggerRegistry):
            raise TypeError(
                f"triggers must be a TriggerRegistry, a mapping or None, got {triggers!r}"
            )
        check_sync_observer(classifier, "classifier")
        check_sync_observer(observer)
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random or None, got {rng!r}")
        LatencyWindow(size=latency_window)  # validates the size
        self._triggers = triggers
        self._classifier = classifier
        self._observer = observer
        self._rng = rng
        self._window_size = latency_window
        self._windows: dict[str, LatencyWindow] = {}

    def __repr__(self) -> str:
        return f"<trio_sagas.Executor triggers={list(self._triggers)!r}>"

    @property
    def triggers(self) -> TriggerRegistry:
        """The registry named triggers are looked up in."""
        return self._triggers

    def latency(self, name: str) -> LatencyWindow | None:
        """The latency window of calls named *name*, or None before the first."""
        return self._windows.get(name)

    def _window(self, name: str) -> LatencyWindow:
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = LatencyWindow(size=self._window_size)
        return window

    async def run(
        self,
        op: Callable[[AttemptInfo], Awaitable[Any]],
        *,
        policy: RetryPolicy,
        name: str | None = None,
    ) -> Outcome[Any]:
        """Run ``await op(attempt_info)`` per *policy* until it succeeds or gives up.

        Args:
            op: An async function taking an :class:`AttemptInfo`.
            policy: Retries, backoff, hedging and budgets.
            name: The call's name (events, outcome, latency window);
                defaults to the function's qualified name.

        Returns:
            An :class:`~trio_sagas.Outcome`: SUCCEEDED with the winner's
            value, or FAILED with the deciding attempt's error (and value, if
            a result was classified as a failure). ``attributes`` holds
            ``"attempts"`` (the :class:`AttemptRecord` timeline),
            ``"retry_groups"``, ``"classification"`` (the last group's
            result), ``"reason"`` when it failed (the classifier's reason,
            ``"retries_exhausted"``, ``"non_retryable"``, ``"abort"``,
            ``"retry_budget_denied"`` or ``"trigger_error"``), and
            ``"missing_trigger"`` when the policy's trigger was not found.

        Raises:
            trio.Cancelled: the caller's scope was cancelled; every attempt
                was stopped at once and nothing is retried.
            TypeError: *op* is not an async function or *policy* is not a
                :class:`~trio_sagas.RetryPolicy`.
        """
        check_async(op, "op")
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"policy must be a RetryPolicy, got {policy!r}")
        name = describe_callable(op) if name is None else check_label(name, "name")
        call = _Call(self, op, policy, name)
        return await call.run()


class _Call:
    """The state of one ``Executor.run`` call."""

    __slots__ = (
        "attempts",
        "classifier",
        "executor",
        "hedge",
        "missing",
        "name",
        "observer",
        "op",
        "policy",
        "retry_budget_error",
        "started_at",
        "timeline",
        "trigger",
        "trigger_label",
        "window",
    )

    def __init__(
        self,
        executor: Executor,
        op: Callable[[AttemptInfo], Awaitable[Any]],
        policy: RetryPolicy,
        name: str,
    ) -> None:
        self.executor = executor
        self.op = op
        self.policy = policy
        self.name = name
        self.observer = executor._observer
        self.classifier = executor._classifier or _default_classifier
        self.window = executor._window(name)
        self.timeline: list[AttemptRecord | None] = []
        self.attempts = 0
        self.started_at = 0.0
        self.retry_budget_error: str | None = None
        self.missing: MissingTrigger | None = None
        self.trigger_label = _FIXED
        self.trigger: HedgeTrigger | None = None
        self.hedge: HedgePolicy | None = None
        hedge = policy.hedge
        if hedge is not None and hedge.max_hedges > 1:
            self.trigger = self._resolve_trigger(hedge)
            if self.trigger is not None:
                self.hedge = hedge

    def _emit(
        self, event_type: Callable[..., Event], at: float | None = None, **fields: Any
    ) -> None:
        """Deliver an event about this call, if anyone listens (else build nothing)."""
        if self.observer is not None:
            when = trio.current_time() if at is None else at
            notify(self.observer, event_type(at=when, name=self.name, **fields))

    def _resolve_trigger(self, hedge: HedgePolicy) -> HedgeTrigger | None:
        if hedge.trigger is not None:
            found = self.executor._triggers.get(hedge.trigger)
            if found is not None:
                self.trigger_label = hedge.trigger
                return found
            self.missing = hedge.missing_trigger
            self._emit(
                TriggerMissing,
                trigger=hedge.trigger,
                action=self.missing.value,
            )
            if self.missing is MissingTrigger.DISABLE:
                return None
        return FixedDelayTrigger(hedge.delay)

    # -- the retry loop -------------------------------------------------

    async def run(self) -> Outcome[Any]:
        policy = self.policy
        self.started_at = trio.current_time()
        group: _Group | None = None
        best: _Result | None = None
        reason: str | None = None
        for retry_index in range(policy.max_attempts):
            if group is not None:
                if not self._retry_allowed(retry_index):
                    reason = self.retry_budget_error or "retry_budget_denied"
                    break
                await trio.sleep(self._backoff(group, retry_index))
            group = _Group(retry_index, trio.current_time())
            if self.hedge is None:
                await self._plain_group(group)
            else:
                await self._hedged_group(group, self.hedge)
            if group.trigger_error is not None:
                return self._trigger_failure(group)
            best = self._decide(group)
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

    def _retry_allowed(self, retry_index: int) -> bool:
        budget = self.policy.budget
        if budget is None:
            return True
        granted, self.retry_budget_error = _acquire(budget, BudgetKind.RETRY, self.name)
        self._emit(
            BudgetDecision,
            kind=BudgetKind.RETRY,
            retry_index=retry_index,
            hedge_index=0,
            granted=granted,
        )
        return granted

    def _backoff(self, group: _Group, retry_index: int) -> float:
        overrides = [
            r.record.backoff for r in group.finished if r.record.backoff is not None
        ]
        if overrides:
            delay = self.policy.cap(max(overrides))
        else:
            delay = self.policy.backoff(group.retry_index, rng=self.executor._rng)
        self._emit(
            RetryScheduled,
            retry_index=retry_index,
            backoff=delay,
            override=bool(overrides),
        )
        return delay

    @staticmethod
    def _decide(group: _Group) -> _Result:
        best = group.finished[0]
        for result in group.finished[1:]:
            if _RANK[result.record.classification] < _RANK[best.record.classification]:  # type: ignore[index]
                best = result
        return best

    def _attributes(self, group: _Group) -> dict[str, object]:
        attributes: dict[str, object] = {
            "attempts": tuple(r for r in self.timeline if r is not None),
            "retry_groups": group.retry_index + 1,
        }
        if self.missing is not None:
            attributes["missing_trigger"] = self.missing
        return attributes

    def _finish(
        self, status: Status, best: _Result, group: _Group, reason: str | None
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

    def _trigger_failure(self, group: _Group) -> Outcome[Any]:
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

    # -- attempts -------------------------------------------------------

    def _new_attempt(self, group: _Group, hedge_index: int) -> AttemptInfo:
        self.attempts += 1
        self.timeline.append(None)
        return AttemptInfo(
            name=self.name,
            retry_index=group.retry_index,
            hedge_index=hedge_index,
            attempt=self.attempts,
        )

    def _classify(
        self, info: AttemptInfo, result: outcome.Outcome[Any], started: float
    ) -> _Result:
        reason: str | None = None
        backoff: float | None = None
        error = result.error if isinstance(result, outcome.Error) else None
        try:
            verdict = self.classifier(result)
            if isinstance(verdict, Classified):
                classification = verdict.classification
                reason, backoff = verdict.reason, verdict.backoff
            else:
                classification = verdict
            if not isinstance(classification, Classification):
                raise TypeError(
                    "classifier must return a Classification or Classified, "
                    f"got {verdict!r}"
                )
        except Exception as exc:
            classification, reason, backoff = (
                Classification.ABORT,
                "classifier_error",
                None,
            )
            error = exc
        record = AttemptRecord(
            retry_index=info.retry_index,
            hedge_index=info.hedge_index,
            attempt=info.attempt,
            status=Status.SUCCEEDED if classification is _SUCCESS else Status.FAILED,
            classification=classification,
            started_at=started,
            finished_at=trio.current_time(),
            error=error,
            reason=reason,
            backoff=backoff,
        )
        self.timeline[info.attempt - 1] = record
        if classification is _SUCCESS:
            self.window.add(record.finished_at - started)
        if self.observer is not None:
            self._report(record)
        value = result.value if isinstance(result, outcome.Value) else None
        return _Result(record, value)

    def _report(self, record: AttemptRecord, *, hedged: bool = False) -> None:
        self._emit(
            AttemptFinished,
            at=record.finished_at,
            retry_index=record.retry_index,
            hedge_index=record.hedge_index,
            attempt=record.attempt,
            status=record.status,
            classification=record.classification,
            cause=record.cause,
            duration=record.duration,
        )
        if record.cause is not None and hedged:
            self._emit(
                HedgeCancelled,
                at=record.finished_at,
                retry_index=record.retry_index,
                hedge_index=record.hedge_index,
                attempt=record.attempt,
                reason=record.cause.reason,
                cause=record.cause,
            )

    def _report_external(
        self, info: AttemptInfo, started: float, exc: BaseException, *, hedged: bool
    ) -> None:
        if self.observer is None or not is_cancellation(exc):
            return
        record = AttemptRecord(
            retry_index=info.retry_index,
            hedge_index=info.hedge_index,
            attempt=info.attempt,
            status=Status.CANCELLED,
            classification=None,
            cause=_external_cause(exc),
            started_at=started,
            finished_at=trio.current_time(),
        )
        self._report(record, hedged=hedged)

    async def _plain_group(self, group: _Group) -> None:
        """One attempt, run in the caller's task: no nursery needed."""
        info = self._new_attempt(group, 0)
        started = trio.current_time()
        result: outcome.Outcome[Any]
        try:
            result = outcome.Value(await self.op(info))
        except Exception as exc:
            result = outcome.Error(exc)
        except BaseException as exc:
            self._report_external(info, started, exc, hedged=False)
            raise
        group.finished.append(self._classify(info, result, started))

    # -- hedged groups --------------------------------------------------

    async def _hedged_group(self, group: _Group, hedge: HedgePolicy) -> None:
        trigger = self.trigger
        assert trigger is not None
        try:
            async with trio.open_nursery() as nursery:
                self._launch(nursery, group, 0)
                with group.hedger:
                    await self._hedger(nursery, group, hedge, trigger)
        except BaseExceptionGroup as exc:
            # Only the caller's cancellation reaches here as a group of
            # Cancelled (one per attempt); let it propagate as trio.Cancelled.
            cancelled = lone_cancelled(exc)
            if cancelled is None:
                raise
            raise cancelled from None

    async def _hedger(
        self,
        nursery: trio.Nursery,
        group: _Group,
        hedge: HedgePolicy,
        trigger: HedgeTrigger,
    ) -> None:
        max_hedges = hedge.max_hedges
        while group.hedges_used < max_hedges:
            # Attempts finishing at this same instant run first: trio wakes
            # same-instant sleepers in random order, and a hedge launched
            # just before a success lands is pure waste (an attempt and a
            # budget token). Zero virtual time; a cancel here ends the loop.
            await trio.lowlevel.checkpoint()
            # The group may have ended (or stopped hedging) in the same
            # scheduling turn that woke us, before our scope's cancel lands.
            if group.hedger.cancel_called:
                return
            now = trio.current_time()
            state = HedgeState(
                name=self.name,
                call_started_at=self.started_at,
                group_started_at=group.started_at,
                now=now,
                retry_index=group.retry_index,
                attempts_launched=group.hedges_used,
                in_flight=group.in_flight,
                max_hedges=max_hedges,
                delay=hedge.delay,
                latency=self.window,
            )
            try:
                spawn, next_check_in = _checked(trigger.should_spawn_hedge(state))
            except Exception as exc:
                self._trigger_raised(group, exc)
                return
            self._emit(
                TriggerDecision,
                at=now,
                retry_index=group.retry_index,
                trigger=self.trigger_label,
                spawn=spawn,
                next_check_in=next_check_in,
            )
            if spawn:
                self._try_hedge(nursery, group, hedge)
            if group.hedges_used >= max_hedges:
                return
            await trio.sleep_until(now + max(next_check_in, CHECK_FLOOR))

    def _trigger_raised(self, group: _Group, exc: Exception) -> None:
        group.trigger_error = exc
        self._emit(
            TriggerDecision,
            retry_index=group.retry_index,
            trigger=self.trigger_label,
            spawn=False,
            next_check_in=None,
            error=exc,
        )
        self._stop(
            group,
            CancelCause.of(
                CancelReason.TERMINAL,
                triggered_by=f"trigger {self.trigger_label!r}",
                message=f"trigger_error: the hedge trigger raised {exc!r}",
            ),
        )

    def _try_hedge(
        self, nursery: trio.Nursery, group: _Group, hedge: HedgePolicy
    ) -> None:
        hedge_index = group.hedges_used
        budget = hedge.budget
        if budget is not None:
            granted, error = _acquire(budget, BudgetKind.HEDGE, self.name)
            self._emit(
                BudgetDecision,
                kind=BudgetKind.HEDGE,
                retry_index=group.retry_index,
                hedge_index=hedge_index,
                granted=granted,
            )
            if not granted:
                group.hedges_used += 1
                info = self._new_attempt(group, hedge_index)
                now = trio.current_time()
                record = AttemptRecord(
                    retry_index=info.retry_index,
                    hedge_index=hedge_index,
                    attempt=info.attempt,
                    status=Status.SKIPPED,
                    classification=None,
                    started_at=now,
                    finished_at=now,
                    reason=error or "budget_denied",
                )
                self.timeline[info.attempt - 1] = record
                if self.observer is not None:
                    self._report(record)
                return
        info = self._launch(nursery, group, hedge_index)
        self._emit(
            HedgeSpawned,
            retry_index=group.retry_index,
            hedge_index=hedge_index,
            attempt=info.attempt,
            trigger=self.trigger_label,
        )

    def _launch(
        self, nursery: trio.Nursery, group: _Group, hedge_index: int
    ) -> AttemptInfo:
        group.hedges_used += 1
        info = self._new_attempt(group, hedge_index)
        # Created here, entered by the task: a stop() before the task runs
        # still reaches it (it is then cancelled at its first checkpoint).
        scope = group.scopes[info.attempt] = trio.CancelScope()
        group.in_flight += 1
        nursery.start_soon(
            self._attempt, group, info, scope, name=f"{self.name}#{info.attempt}"
        )
        return info

    async def _attempt(
        self, group: _Group, info: AttemptInfo, scope: trio.CancelScope
    ) -> None:
        started = trio.current_time()
        result: outcome.Outcome[Any] | None = None
        try:
            with scope:
                try:
                    result = outcome.Value(await self.op(info))
                except Exception as exc:
                    result = outcome.Error(exc)
        except BaseException as exc:
            # The caller's cancellation (or a crash) passing through.
            group.in_flight -= 1
            del group.scopes[info.attempt]
            self._report_external(info, started, exc, hedged=True)
            raise
        group.in_flight -= 1
        del group.scopes[info.attempt]
        if result is None or (
            scope.cancel_called and not isinstance(result, outcome.Value)
        ):
            self._cancelled(group, info, started, result)
        else:
            finished = self._classify(info, result, started)
            group.finished.append(finished)
            classification = finished.record.classification
            if group.stop_cause is None:
                if classification is _SUCCESS:
                    group.winner_latency = finished.record.duration
                    self._stop(
                        group,
                        CancelCause.of(
                            CancelReason.WINNER,
                            triggered_by=f"{self.name}#{info.attempt}",
                            message=f"attempt {info.attempt} succeeded first",
                        ),
                    )
                elif classification in _TERMINAL:
                    group.terminal_seen = True
                    assert self.hedge is not None
                    if self.hedge.cancel_on_first_terminal:
                        self._stop(
                            group,
                            CancelCause.of(
                                CancelReason.TERMINAL,
                                triggered_by=f"{self.name}#{info.attempt}",
                                message=(
                                    f"attempt {info.attempt} was {classification.value}"
                                ),
                            ),
                        )
                    else:
                        # In-flight attempts may still win; no new hedges.
                        group.hedger.cancel(reason="a terminal result: no more hedges")
        if group.in_flight == 0:
            # A group ends when nothing is in flight; a failure does not
            # launch the next hedge early (retrying is the outer loop's job).
            group.hedger.cancel(reason="no attempt in flight")

    def _cancelled(
        self,
        group: _Group,
        info: AttemptInfo,
        started: float,
        result: outcome.Outcome[Any] | None,
    ) -> None:
        cause = group.stop_cause
        assert cause is not None, (
            "only the executor's own stop cancels an attempt scope"
        )
        if cause.reason is CancelReason.WINNER:
            outrun_after = group.stopped_at - started
            if outrun_after > group.winner_latency:
                # Superseded by a faster attempt: it would have taken at
                # least this long, and leaving it out would bias the window
                # toward fast attempts. A hedge cut short because an older
                # attempt finished first says nothing about the tail.
                self.window.add(outrun_after)
        record = AttemptRecord(
            retry_index=info.retry_index,
            hedge_index=info.hedge_index,
            attempt=info.attempt,
            status=Status.CANCELLED,
            classification=None,
            cause=cause,
            started_at=started,
            finished_at=trio.current_time(),
            error=result.error if isinstance(result, outcome.Error) else None,
            reason="trigger_error" if group.trigger_error is not None else None,
        )
        self.timeline[info.attempt - 1] = record
        if self.observer is not None:
            self._report(record, hedged=True)

    @staticmethod
    def _stop(group: _Group, cause: CancelCause) -> None:
        group.stop_cause = cause
        group.stopped_at = trio.current_time()
        text = cause.describe()
        for scope in group.scopes.values():
            scope.cancel(reason=text)
        group.hedger.cancel(reason=text)


def _checked(decision: object) -> tuple[bool, float]:
    """Validate a trigger's answer; a malformed one is a trigger error.

    A negative wait (a trigger that computed ``due - now`` after the due
    time) means "now" and is clamped like any wait below the floor.
    """
    if not isinstance(decision, tuple) or len(decision) != 2:
        raise TypeError(
            f"should_spawn_hedge must return (spawn, next_check_in), got {decision!r}"
        )
    spawn, next_check_in = decision
    if (
        isinstance(next_check_in, bool)
        or not isinstance(next_check_in, (int, float))
        or next_check_in != next_check_in  # NaN
    ):
        raise ValueError(
            f"should_spawn_hedge returned next_check_in={next_check_in!r}; "
            "it must be a number of seconds"
        )
    return bool(spawn), float(next_check_in)
