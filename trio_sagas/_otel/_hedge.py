"""Hedged calls and ignitions as spans: the parts of the observer built retroactively.

An attempt is reported once, when it ends, and a hedge is announced before
its group's primary has ended, so a retry group is buffered until every
attempt it launched has ended; then its spans are made, with their real start
and end times, under the call's span. An ignition's spans are made from its
result when it completes. The functions take the :class:`SpanObserver` as
``self``: they are its handlers, kept here to keep each module small.
"""

from __future__ import annotations

from typing import Any, final

from .._outcome import Status
from .._retry import Classification
from ._common import PREFIX as _PREFIX
from ._common import attempt_of as _attempt_of


@final
class _Group:
    """A retry group's attempts, buffered until all it launched have ended."""

    __slots__ = ("attempts", "launched", "triggers")

    def __init__(self) -> None:
        self.launched = 1  # the primary
        self.attempts: list[tuple[int, Any, dict[str, Any]]] = []
        self.triggers: dict[int, str] = {}


@final
class _Call:
    """A hedged call's span, opened with its first group's spans."""

    __slots__ = ("done", "ended_at", "name", "pending", "span", "status")

    def __init__(self, name: str) -> None:
        self.name = name
        self.span: Any = None
        self.pending: dict[int, _Group] = {}
        self.done: set[int] = set()
        self.ended_at = 0.0
        self.status = Status.FAILED

    def group_done(self, observer: Any, retry_index: int, group: _Group) -> None:
        del self.pending[retry_index]
        self.done.add(retry_index)
        events = [event for _, event, _ in group.attempts]
        start = min(e.at - e.duration for e in events)
        end = max(e.at for e in events)
        if self.span is None:
            self.span = observer._start(
                f"hedged call {self.name}",
                None,
                start,
                {_PREFIX + "hedge.name": self.name},
            )
        group_span = observer._start(
            f"retry group {retry_index}",
            self.span,
            start,
            {
                _PREFIX + "hedge.name": self.name,
                _PREFIX + "hedge.retry_index": retry_index,
            },
        )
        for attempt, event, attributes in sorted(group.attempts, key=lambda a: a[0]):
            span = observer._start(
                f"attempt {attempt}", group_span, event.at - event.duration, attributes
            )
            observer._end(span, event.at, event.status, cause=event.cause)
        succeeded = any(e.status is Status.SUCCEEDED for e in events)
        self.status = Status.SUCCEEDED if succeeded else Status.FAILED
        self.ended_at = end
        observer._end(group_span, end, self.status)
        retryable = any(e.classification is Classification.RETRYABLE for e in events)
        if succeeded or not retryable:
            self.finish(observer)
            observer._calls.pop(self.name, None)

    def finish(self, observer: Any) -> None:
        if self.span is not None and self.span.is_recording():
            observer._end(
                self.span,
                self.ended_at,
                self.status,
                attributes={_PREFIX + "hedge.retry_groups": len(self.done)},
            )


def _call(self: Any, name: str, retry_index: int) -> _Call:
    call: _Call | None = self._calls.get(name)
    if call is not None and retry_index == 0 and 0 in call.done:
        call.finish(self)  # a new call of the same name
        call = None
    if call is None:
        call = self._calls[name] = _Call(name)
    return call


def attempt_finished(self: Any, event: Any) -> None:
    name, retry_index, hedge_index, attempt = _attempt_of(event)
    call = _call(self, name, retry_index)
    group = call.pending.setdefault(retry_index, _Group())
    if event.status is Status.SKIPPED:
        group.launched += 1  # a hedge the budget denied: never spawned
    attributes: dict[str, Any] = {
        _PREFIX + "hedge.name": name,
        _PREFIX + "hedge.retry_index": retry_index,
        _PREFIX + "hedge.hedge_index": hedge_index,
        _PREFIX + "hedge.attempt": attempt,
    }
    trigger = group.triggers.get(hedge_index)
    if trigger is not None:
        attributes[_PREFIX + "hedge.trigger"] = trigger
    if event.classification is not None:
        attributes[_PREFIX + "hedge.classification"] = event.classification.value
    group.attempts.append((attempt, event, attributes))
    if len(group.attempts) >= group.launched:
        call.group_done(self, retry_index, group)


def hedge_spawned(self: Any, event: Any) -> None:
    name, retry_index, hedge_index, _ = _attempt_of(event)
    group = _call(self, name, retry_index).pending.setdefault(retry_index, _Group())
    group.launched += 1
    group.triggers[hedge_index] = event.trigger


# -- ignition -----------------------------------------------------------------


def ignition_completed(self: Any, event: Any) -> None:
    result = event.result
    failed = [n for n, o in result.outcomes.items() if not o.ok]
    root = self._start(
        "ignition",
        None,
        result.started_at,
        {
            _PREFIX + "signals": list(result.outcomes),
            _PREFIX + "timed_out": result.timed_out,
        },
    )
    stages = {n: s for n, s in self._ignitions.items()}
    self._ignitions.clear()
    for name, outcome in result.outcomes.items():
        started = outcome.started_at
        finished = (
            outcome.finished_at
            if outcome.finished_at is not None
            else result.finished_at
        )
        span = self._start(
            f"signal {name}",
            root,
            finished if started is None else started,
            {_PREFIX + "signal": name, _PREFIX + "stage": stages.get(name, 0)},
        )
        self._end(
            span, finished, outcome.status, error=outcome.error, cause=outcome.cause
        )
    self._end(
        root,
        result.finished_at,
        Status.FAILED if failed else Status.SUCCEEDED,
        attributes={_PREFIX + "failed_signals": failed},
    )


def signal_started(self: Any, event: Any) -> None:
    self._ignitions[event.name] = event.stage
