"""Retry and hedge *policies*: plain validated values, no behaviour but backoff.

They live low in the stack because compensation (layer 2) retries with a
:class:`RetryPolicy` too; the hedged executor (layer 4) interprets the rest.
"""

from __future__ import annotations

import enum
import math
import random
from typing import Protocol, final, runtime_checkable

import attrs

from ._validate import check_int, check_timeout


@final
class BudgetKind(enum.Enum):
    """What an attempt drawing on a :class:`Budget` is."""

    RETRY = "retry"
    HEDGE = "hedge"


@runtime_checkable
class Budget(Protocol):
    """Something that may deny extra attempts to protect a dependency.

    ``try_acquire`` is called once per retry or hedge attempt (never for the
    first attempt of a call) and must not block.
    """

    def try_acquire(self, kind: BudgetKind) -> bool:
        """Take one unit for an attempt of *kind*; False denies the attempt."""
        ...


@final
class Classification(enum.Enum):
    """What an attempt's result means for the retry loop."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    NON_RETRYABLE = "non_retryable"
    ABORT = "abort"


@final
@attrs.frozen
class Classified:
    """A classification with an optional backoff override and a reason.

    Attributes:
        classification: What the result means.
        backoff: Seconds to wait before the next retry group, used as given
            (capped at ``max_backoff``, no jitter). None: the policy decides.
        reason: Free text recorded in the attempt timeline.
    """

    classification: Classification
    backoff: float | None = attrs.field(default=None)
    reason: str | None = None

    @backoff.validator
    def _check_backoff(
        self, attribute: attrs.Attribute[float | None], value: float | None
    ) -> None:
        check_timeout(value, "backoff")


def _seconds(
    instance: object, attribute: attrs.Attribute[float], value: object
) -> None:
    check_timeout(value, attribute.name, allow_none=False)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@final
class MissingTrigger(enum.Enum):
    """What to do when a :class:`HedgePolicy` names a trigger nobody registered."""

    FALLBACK = "fallback"
    """Hedge on the policy's fixed ``delay`` instead (recorded)."""
    DISABLE = "disable"
    """Do not hedge at all for that call (recorded)."""


@final
@attrs.frozen(kw_only=True)
class HedgePolicy:
    """How a retry group launches parallel hedged attempts.

    Attributes:
        max_hedges: Attempts per retry group, the primary included (>= 1;
            1 means no hedge).
        delay: Seconds between hedge launches for the fixed-delay trigger:
            hedge ``k`` launches at ``group_start + k * delay``.
        trigger: Name of a trigger in the executor's
            :class:`TriggerRegistry`; when found it wins over ``delay``.
        cancel_on_first_terminal: End the group (and cancel its other
            attempts) at the first NON_RETRYABLE/ABORT result.
        budget: Drawn on once per hedge; a denied hedge is recorded, never
            fails the group.
        missing_trigger: What to do when ``trigger`` is not registered.
    """

    max_hedges: int = attrs.field(default=2)
    delay: float = attrs.field(default=0.2, validator=_seconds)
    trigger: str | None = None
    cancel_on_first_terminal: bool = False
    budget: Budget | None = None
    missing_trigger: MissingTrigger = MissingTrigger.FALLBACK

    @max_hedges.validator
    def _check_max_hedges(self, attribute: attrs.Attribute[int], value: object) -> None:
        check_int(value, "max_hedges", minimum=1)

    def __attrs_post_init__(self) -> None:
        if self.trigger is not None and not isinstance(self.trigger, str):
            raise TypeError(
                f"trigger must be a registered trigger name, got {self.trigger!r}"
            )
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise TypeError(
                f"budget must implement try_acquire(kind), got {self.budget!r}"
            )
        if not isinstance(self.missing_trigger, MissingTrigger):
            raise TypeError(
                f"missing_trigger must be a MissingTrigger, got {self.missing_trigger!r}"
            )


@final
@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often, and how far apart, to try again.

    Attempts are grouped: each *retry group* runs one attempt (or several
    hedged ones, with ``hedge``); after a failed group the next waits
    :meth:`backoff`.

    Attributes:
        max_attempts: Retry groups at most (>= 1; 1 means no retry).
        initial_backoff: Seconds before the second group.
        max_backoff: Cap on every backoff, overrides included.
        multiplier: Exponential growth per group (>= 1).
        jitter: Fraction in [0, 1]: a backoff ``d`` becomes uniform in
            ``d*(1-jitter) .. d*(1+jitter)`` before the cap. 0 disables it.
        hedge: Hedging within each group, or None for none.
        budget: Drawn on once per retry group after the first; a denied
            retry ends the loop with the last group's result.
    """

    max_attempts: int = attrs.field(default=3)
    initial_backoff: float = attrs.field(default=0.1, validator=_seconds)
    max_backoff: float = attrs.field(default=10.0, validator=_seconds)
    multiplier: float = attrs.field(default=2.0)
    jitter: float = attrs.field(default=0.0)
    hedge: HedgePolicy | None = None
    budget: Budget | None = None

    @max_attempts.validator
    def _check_max_attempts(
        self, attribute: attrs.Attribute[int], value: object
    ) -> None:
        check_int(value, "max_attempts", minimum=1)

    @multiplier.validator
    def _check_multiplier(
        self, attribute: attrs.Attribute[float], value: object
    ) -> None:
        if not _is_real(value) or not value >= 1:  # type: ignore[operator]
            raise ValueError(f"multiplier must be a number >= 1, got {value!r}")

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[float], value: object) -> None:
        if not _is_real(value) or not 0 <= value <= 1:  # type: ignore[operator]
            raise ValueError(f"jitter must be a fraction in [0, 1], got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.initial_backoff > self.max_backoff:
            raise ValueError(
                f"initial_backoff ({self.initial_backoff!r}) must not exceed "
                f"max_backoff ({self.max_backoff!r})"
            )
        if self.hedge is not None and not isinstance(self.hedge, HedgePolicy):
            raise TypeError(f"hedge must be a HedgePolicy or None, got {self.hedge!r}")
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise TypeError(
                f"budget must implement try_acquire(kind), got {self.budget!r}"
            )

    def backoff(self, retry_index: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after retry group *retry_index* (0-based) failed.

        ``initial_backoff * multiplier ** retry_index``, jittered, capped at
        ``max_backoff``.
        """
        if retry_index < 0:
            raise ValueError(f"retry_index must be >= 0, got {retry_index!r}")
        try:
            delay = self.initial_backoff * math.pow(self.multiplier, retry_index)
        except OverflowError:
            delay = math.inf
        if self.jitter and math.isfinite(delay):
            uniform = (rng or random).uniform
            delay *= uniform(1 - self.jitter, 1 + self.jitter)
        return min(delay, self.max_backoff)

    def cap(self, override: float) -> float:
        """An override backoff, used as given but capped at ``max_backoff``."""
        return min(override, self.max_backoff)
