"""Observer events of the hedged retry executor.

Each carries the call's ``name`` and the trio time ``at`` it happened. The
events about one attempt carry its :class:`AttemptInfo` (``event.attempt``)
and read the call's name from it.
"""

from __future__ import annotations

from typing import final

import attrs

from .._events import Event
from .._outcome import CancelCause, CancelReason, Status
from .._retry import AttemptInfo, BudgetKind, Classification


@final
@attrs.frozen(kw_only=True)
class AttemptFinished(Event):
    """An attempt ended: it finished, was cancelled, or was denied by the budget.

    Attributes:
        attempt: Which attempt (its call name, retry group, place in the
            group and global number).
        status: SUCCEEDED, FAILED, CANCELLED or SKIPPED (budget denied).
        classification: What the classifier said; None when it did not run.
        cause: Why it was cancelled, if it was.
        duration: Seconds it ran.
    """

    attempt: AttemptInfo
    status: Status
    classification: Classification | None
    cause: CancelCause | None
    duration: float

    @property
    def name(self) -> str:
        """The call's name."""
        return self.attempt.name

    @property
    def is_hedge(self) -> bool:
        """Whether it was a hedge rather than a group's primary attempt."""
        return self.attempt.hedge_index > 0


@final
@attrs.frozen(kw_only=True)
class HedgeSpawned(Event):
    """A hedge attempt launched.

    Attributes:
        attempt: Which attempt (``hedge_index >= 1``).
        trigger: What decided it (a registry name, or ``"fixed_delay"``).
    """

    attempt: AttemptInfo
    trigger: str

    @property
    def name(self) -> str:
        """The call's name."""
        return self.attempt.name


@final
@attrs.frozen(kw_only=True)
class HedgeCancelled(Event):
    """An attempt of a hedged group was cancelled before it finished.

    Reported for the primary too (``attempt.hedge_index == 0``): in a hedged
    group it races like any hedge.

    Attributes:
        attempt: Which attempt.
        reason: ``WINNER`` or ``TERMINAL`` (internal), or ``EXTERNAL``.
        cause: The full cause.
    """

    attempt: AttemptInfo
    reason: CancelReason
    cause: CancelCause

    @property
    def name(self) -> str:
        """The call's name."""
        return self.attempt.name


@final
@attrs.frozen(kw_only=True)
class BudgetDecision(Event):
    """A budget allowed or denied a retry group or a hedge.

    Attributes:
        name: The call's name.
        kind: ``RETRY`` (a new group) or ``HEDGE``.
        retry_index: The group asked for.
        hedge_index: The hedge asked for (0 for a retry).
        granted: Whether the attempt may run.
    """

    name: str
    kind: BudgetKind
    retry_index: int
    hedge_index: int
    granted: bool


@final
@attrs.frozen(kw_only=True)
class TriggerDecision(Event):
    """A hedge trigger was consulted.

    Attributes:
        name: The call's name.
        retry_index: The group.
        trigger: Which trigger (a registry name, or ``"fixed_delay"``).
        spawn: Whether it asked for a hedge now.
        next_check_in: Seconds until it is consulted again (None if it raised).
        error: What it raised, if it raised (the call then aborts).
    """

    name: str
    retry_index: int
    trigger: str
    spawn: bool
    next_check_in: float | None
    error: BaseException | None = None


@final
@attrs.frozen(kw_only=True)
class TriggerMissing(Event):
    """The policy named a trigger the executor's registry does not have.

    Attributes:
        name: The call's name.
        trigger: The missing name.
        action: ``"fallback"`` (fixed delay) or ``"disable"`` (no hedging).
    """

    name: str
    trigger: str
    action: str


@final
@attrs.frozen(kw_only=True)
class RetryScheduled(Event):
    """A retry group failed retryably; the next one starts after *backoff*.

    Attributes:
        name: The call's name.
        retry_index: The group that will start.
        backoff: Seconds waited before it.
        override: Whether *backoff* came from a classifier override.
    """

    name: str
    retry_index: int
    backoff: float
    override: bool
