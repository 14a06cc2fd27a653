"""One retry group: its primary attempt and, when hedged, the race of its hedges.

A hedged group is a nursery, so no attempt outlives it. A *hedger* loop
consults the trigger and launches hedges; each attempt runs in its own
cancel scope. The first success wins and cancels the rest (``WINNER``);
with ``cancel_on_first_terminal`` a NON_RETRYABLE/ABORT result does the
same (``TERMINAL``). A group ends when no attempt is in flight: a failure
does not launch the next hedge early (retrying is the outer loop's job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs
import outcome
import trio

from .._outcome import CancelCause, CancelReason, Status
from .._retry import AttemptInfo, AttemptRecord, BudgetKind, Classification, acquire
from .._retry import attempt_record as make_record
from .._util import lone_cancelled
from ._events import BudgetDecision, HedgeSpawned, TriggerDecision
from ._trigger import CHECK_FLOOR, HedgeState, HedgeTrigger

if TYPE_CHECKING:
    from ._call import Call

_SUCCESS: Final = Classification.SUCCESS
_TERMINAL: Final = frozenset({Classification.NON_RETRYABLE, Classification.ABORT})
# Lower wins; within a class the first attempt to finish decides.
_RANK: Final = {
    Classification.SUCCESS: 0,
    Classification.NON_RETRYABLE: 1,
    Classification.ABORT: 2,
    Classification.RETRYABLE: 3,
}


@attrs.define(eq=False)
class Finished:
    """An attempt that finished on its own, with what the loop needs of it."""

    record: AttemptRecord
    value: object


@attrs.define(eq=False)
class Group:
    """One retry group's state: plain (one attempt) or hedged."""

    retry_index: int
    started_at: float
    finished: list[Finished] = attrs.Factory(list)
    hedger: trio.CancelScope = attrs.Factory(trio.CancelScope)
    scopes: dict[int, trio.CancelScope] = attrs.Factory(dict)
    in_flight: int = 0
    hedges_used: int = 0
    stop_cause: CancelCause | None = None
    stopped_at: float = 0.0
    winner_latency: float = 0.0
    trigger_error: Exception | None = None

    def decide(self) -> Finished:
        """The group's result: SUCCESS > NON_RETRYABLE > ABORT > RETRYABLE."""
        best = self.finished[0]
        for result in self.finished[1:]:
            if _RANK[result.record.classification] < _RANK[best.record.classification]:  # type: ignore[index]
                best = result
        return best


async def run_hedged(call: Call, group: Group, trigger: HedgeTrigger) -> None:
    """Run *group* as a race of a primary and its hedges, launched by *trigger*."""
    try:
        async with trio.open_nursery() as nursery:
            _launch(call, nursery, group, 0)
            with group.hedger:
                await _hedger(call, nursery, group, trigger)
    except BaseExceptionGroup as exc:
        # Only the caller's cancellation reaches here as a group of
        # Cancelled (one per attempt); let it propagate as trio.Cancelled.
        cancelled = lone_cancelled(exc)
        if cancelled is None:
            raise
        raise cancelled from None


async def _hedger(
    call: Call, nursery: trio.Nursery, group: Group, trigger: HedgeTrigger
) -> None:
    hedge = call.hedge
    assert hedge is not None
    max_hedges = hedge.max_hedges
    emit = call.emit
    while group.hedges_used < max_hedges:
        # Attempts finishing at this same instant run first: trio wakes
        # same-instant sleepers in random order, and a hedge launched just
        # before a success lands is pure waste (an attempt and a budget
        # token). Zero virtual time; a cancel here ends the loop.
        await trio.lowlevel.checkpoint()
        # The group may have ended (or stopped hedging) in the same
        # scheduling turn that woke us, before our scope's cancel lands.
        if group.hedger.cancel_called:
            return
        now = trio.current_time()
        state = HedgeState(
            name=call.name,
            call_started_at=call.started_at,
            group_started_at=group.started_at,
            now=now,
            retry_index=group.retry_index,
            attempts_launched=group.hedges_used,
            in_flight=group.in_flight,
            max_hedges=max_hedges,
            delay=hedge.delay,
            latency=call.latency,
        )
        try:
            spawn, next_check_in = _checked(trigger.should_spawn_hedge(state))
        except Exception as exc:
            _trigger_raised(call, group, exc)
            return
        if emit.enabled:
            emit(
                TriggerDecision(
                    at=now,
                    name=call.name,
                    retry_index=group.retry_index,
                    trigger=call.trigger_label,
                    spawn=spawn,
                    next_check_in=next_check_in,
                )
            )
        if spawn:
            _try_hedge(call, nursery, group)
        if group.hedges_used >= max_hedges:
            return
        if spawn and next_check_in <= 0:
            # The next hedge is due now too (a zero delay): consult again at
            # once. No spinning: every such round uses up a hedge index.
            continue
        await trio.sleep_until(now + max(next_check_in, CHECK_FLOOR))


def _trigger_raised(call: Call, group: Group, exc: Exception) -> None:
    group.trigger_error = exc
    if call.emit.enabled:
        call.emit(
            TriggerDecision(
                at=trio.current_time(),
                name=call.name,
                retry_index=group.retry_index,
                trigger=call.trigger_label,
                spawn=False,
                next_check_in=None,
                error=exc,
            )
        )
    _stop(
        group,
        CancelCause.of(
            CancelReason.TERMINAL,
            triggered_by=f"trigger {call.trigger_label!r}",
            message=f"trigger_error: the hedge trigger raised {exc!r}",
        ),
    )


def _try_hedge(call: Call, nursery: trio.Nursery, group: Group) -> None:
    hedge = call.hedge
    assert hedge is not None
    hedge_index = group.hedges_used
    if hedge.budget is not None:
        denied = acquire(hedge.budget, BudgetKind.HEDGE, call.name)
        if call.emit.enabled:
            call.emit(
                BudgetDecision(
                    at=trio.current_time(),
                    name=call.name,
                    kind=BudgetKind.HEDGE,
                    retry_index=group.retry_index,
                    hedge_index=hedge_index,
                    granted=denied is None,
                )
            )
        if denied is not None:
            # The denied hedge uses up its index (the schedule stays anchored
            # at the group start) but is never in flight: the group still
            # ends when the attempts that do run have ended.
            group.hedges_used += 1
            info = call.new_attempt(group.retry_index, hedge_index)
            now = trio.current_time()
            call.put(
                info,
                make_record(
                    info,
                    status=Status.SKIPPED,
                    started_at=now,
                    finished_at=now,
                    reason=denied,
                ),
            )
            return
    info = _launch(call, nursery, group, hedge_index)
    if call.emit.enabled:
        call.emit(
            HedgeSpawned(
                at=trio.current_time(), attempt=info, trigger=call.trigger_label
            )
        )


def _launch(
    call: Call, nursery: trio.Nursery, group: Group, hedge_index: int
) -> AttemptInfo:
    group.hedges_used += 1
    info = call.new_attempt(group.retry_index, hedge_index)
    # Created here, entered by the task: a stop() before the task runs
    # still reaches it (it is then cancelled at its first checkpoint).
    scope = group.scopes[info.attempt] = trio.CancelScope()
    group.in_flight += 1
    nursery.start_soon(
        _attempt, call, group, info, scope, name=f"{call.name}#{info.attempt}"
    )
    return info


async def _attempt(
    call: Call, group: Group, info: AttemptInfo, scope: trio.CancelScope
) -> None:
    started = trio.current_time()
    result: outcome.Outcome[Any] | None = None
    try:
        with scope:
            try:
                result = outcome.Value(await call.op(info))
            except Exception as exc:
                result = outcome.Error(exc)
    except BaseException as exc:
        # The caller's cancellation (or a crash) passing through.
        group.in_flight -= 1
        del group.scopes[info.attempt]
        call.report_external(info, started, exc, hedged=True)
        raise
    group.in_flight -= 1
    del group.scopes[info.attempt]
    if result is None or (
        scope.cancel_called and not isinstance(result, outcome.Value)
    ):
        _cancelled(call, group, info, started, result)
    else:
        finished = call.finish(info, result, started, hedged=True)
        group.finished.append(finished)
        if group.stop_cause is None:
            _judge(call, group, info, finished.record)
    if group.in_flight == 0:
        # A group ends when nothing is in flight; a failure does not launch
        # the next hedge early (retrying is the outer loop's job).
        group.hedger.cancel(reason="no attempt in flight")


def _judge(call: Call, group: Group, info: AttemptInfo, record: AttemptRecord) -> None:
    """React to an attempt that finished while the group was still racing."""
    classification = record.classification
    if classification is _SUCCESS:
        group.winner_latency = record.duration
        _stop(
            group,
            CancelCause.of(
                CancelReason.WINNER,
                triggered_by=f"{call.name}#{info.attempt}",
                message=f"attempt {info.attempt} succeeded first",
            ),
        )
    elif classification in _TERMINAL:
        assert call.hedge is not None
        assert classification is not None
        if call.hedge.cancel_on_first_terminal:
            _stop(
                group,
                CancelCause.of(
                    CancelReason.TERMINAL,
                    triggered_by=f"{call.name}#{info.attempt}",
                    message=f"attempt {info.attempt} was {classification.value}",
                ),
            )
        else:
            # In-flight attempts may still win; no new hedges.
            group.hedger.cancel(reason="a terminal result: no more hedges")


def _cancelled(
    call: Call,
    group: Group,
    info: AttemptInfo,
    started: float,
    result: outcome.Outcome[Any] | None,
) -> None:
    cause = group.stop_cause
    assert cause is not None, "only the executor's own stop cancels an attempt scope"
    if cause.reason is CancelReason.WINNER and call.window is not None:
        outrun_after = group.stopped_at - started
        if outrun_after > group.winner_latency:
            # Superseded by a faster attempt: it would have taken at least
            # this long, and leaving it out would bias the window toward
            # fast attempts. A hedge cut short because an older attempt
            # finished first says nothing about the tail.
            call.window.add(outrun_after)
    call.put(
        info,
        make_record(
            info,
            status=Status.CANCELLED,
            started_at=started,
            finished_at=trio.current_time(),
            cause=cause,
            error=result.error if isinstance(result, outcome.Error) else None,
            reason="trigger_error" if group.trigger_error is not None else None,
        ),
        hedged=True,
    )


def _stop(group: Group, cause: CancelCause) -> None:
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
