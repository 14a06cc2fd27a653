"""The one observer protocol of the toolkit, and its event base record.

Every component reports through an *observer*: a plain sync callable taking
one event record. Observers must not block. One that raises is isolated: the
error is logged on the ``trio_sagas`` logger and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeAlias

import attrs

logger = logging.getLogger("trio_sagas")


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event record.

    Attributes:
        at: Trio clock time the event happened.
    """

    at: float


Observer: TypeAlias = Callable[[Event], object]
"""A sync callable receiving every event; its return value is ignored."""


def notify(observer: Observer | None, event: Event) -> None:
    """Deliver *event* to *observer*, isolating any error it raises."""
    if observer is None:
        return
    try:
        observer(event)
    except Exception:
        logger.exception(
            "observer %r raised on %s; the run goes on", observer, type(event).__name__
        )
