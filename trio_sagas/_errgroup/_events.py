"""The records an error group reports: its events and its statistics snapshot."""

from __future__ import annotations

from typing import Any, final

import attrs

from .._compensation import CompensationReport
from .._events import Event
from .._outcome import CancelCause, Outcome


@final
@attrs.frozen(kw_only=True)
class GroupTaskFinished(Event):
    """A task of an error group ended (any status); FAILED is a step failure."""

    group: str
    outcome: Outcome[Any]


@final
@attrs.frozen(kw_only=True)
class GroupCancelled(Event):
    """The group cancelled its tasks (first failure, or a manual ``cancel()``)."""

    group: str
    cause: CancelCause


@final
@attrs.frozen(kw_only=True)
class GroupCompensationStarted(Event):
    """Compensation began, after every task had ended."""

    group: str
    actions: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class GroupCompensationCompleted(Event):
    """Compensation ended; ``report`` says how each action went."""

    group: str
    report: CompensationReport


@final
@attrs.frozen
class ErrGroupStatistics:
    """A snapshot of a group's tasks.

    Attributes:
        running: Tasks whose function is running.
        waiting: Tasks queued for a slot under ``limit``.
        finished: Tasks with an outcome.
        failed: Tasks that FAILED.
    """

    running: int
    waiting: int
    finished: int
    failed: int
