"""The one observer protocol of the toolkit, its event base record, and the emitter.

Every component reports through an *observer*: a plain sync callable taking
one event record. Observers must not block. One that raises is isolated: the
error is logged on the ``trio_sagas`` logger and the run goes on.

Components never call observers directly: they hold an :class:`Emitter`,
which decides once, at construction, whether anybody listens. Where nobody
does, ``emitter.enabled`` is False and the component builds no event at all
(as httpcore's ``Trace`` does), so instrumentation costs one attribute read::

    if self._emit.enabled:
        self._emit(ActStarted(at=now, ...))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, final

import attrs

logger = logging.getLogger("trio_sagas")


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event record.

    Attributes:
        at: Trio clock time the event happened.
    """

    at: float


class Observer(Protocol):
    """A sync callable receiving every event; its return value is ignored.

    Any function or object with a matching ``__call__`` is an observer:
    ``def observer(event: trio_sagas.Event) -> None``. It must not block; one
    that raises is logged on the ``trio_sagas`` logger and the run goes on.
    Combine several with :func:`observers`.
    """

    def __call__(self, event: Event, /) -> object:
        """Receive one event record."""


def _deliver(observer: Observer, event: Event) -> None:
    try:
        observer(event)
    except Exception:
        logger.exception(
            "observer %r raised on %s; the run goes on", observer, type(event).__name__
        )


@final
class _Fanout:
    """Several observers as one; each is isolated from the others' errors."""

    __slots__ = ("members",)

    def __init__(self, members: tuple[Observer, ...]) -> None:
        self.members = members

    def __repr__(self) -> str:
        return f"trio_sagas.observers({', '.join(map(repr, self.members))})"

    def __call__(self, event: Event) -> None:
        for member in self.members:
            _deliver(member, event)


def observers(*members: Observer | None) -> Observer | None:
    """Compose observers: every event goes to each, in order.

    ``None`` members are dropped; no member left gives ``None`` (nobody
    listens); one member is returned as it is. An observer that raises is
    isolated from the others: it is logged and the rest still get the event.

    Example::

        observer = trio_sagas.observers(LoggingObserver(), SpanObserver(tracer))
    """
    from ._validate import check_sync_observer

    flat: list[Observer] = []
    for index, member in enumerate(members):
        check_sync_observer(member, f"observers() argument {index}")
        if isinstance(member, _Fanout):
            flat.extend(member.members)
        elif member is not None:
            flat.append(member)
    if not flat:
        return None
    if len(flat) == 1:
        return flat[0]
    return _Fanout(tuple(flat))


def as_observer(observer: Observer | Sequence[Observer] | None) -> Observer | None:
    """An ``observer=`` argument (a callable, a sequence of them, or None) as one."""
    if isinstance(observer, (list, tuple)):
        return observers(*observer)
    assert observer is None or callable(observer)
    return observer


@final
class Emitter:
    """Delivers events to an observer; ``enabled`` says whether anybody listens.

    Build it once per run or component from the ``observer=`` argument; call
    it with an event only when :attr:`enabled` is True, so no event record is
    built for nobody.
    """

    __slots__ = ("enabled", "observer")

    def __init__(self, observer: Observer | Sequence[Observer] | None) -> None:
        self.observer = as_observer(observer)
        self.enabled = self.observer is not None

    def __repr__(self) -> str:
        return f"<Emitter to {self.observer!r}>"

    def __call__(self, event: Event) -> None:
        """Deliver *event*, isolating any error the observer raises."""
        if self.observer is not None:
            _deliver(self.observer, event)


SILENT = Emitter(None)
"""The emitter of a component nobody observes."""


def notify(observer: Observer | None, event: Event) -> None:
    """Deliver *event* to *observer*, isolating any error it raises.

    Prefer an :class:`Emitter`, which lets the caller skip building the event.
    """
    if observer is not None:
        _deliver(observer, event)
