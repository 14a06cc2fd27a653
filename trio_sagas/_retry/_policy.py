"""Retry and hedge *policies*: plain validated values, no behaviour but backoff.

They live low in the stack because compensations and saga acts retry with a
:class:`RetryPolicy` too (:func:`run_attempts`); the hedged executor
interprets the rest. A policy's ``classifier`` says which results are worth
another try, for the executor and the simple retry loop alike.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from typing import Any, Final, Protocol, final, runtime_checkable

import attrs
import outcome

from .._validate import (
    attrs_validator,
    check_bool,
    check_budget,
    check_enum,
    check_fraction,
    check_int,
    check_optional_sync_callable,
    check_real,
    check_str,
    check_timeout,
    check_type,
)

logger = logging.getLogger("trio_sagas")

BUDGET_DENIED: Final = "budget_denied"
"""The one reason recorded for a retry or a hedge that a budget denied."""
BUDGET_ERROR: Final = "budget_error"
"""The reason recorded when a budget raised instead of answering (a denial)."""
CLASSIFIER_ERROR: Final = "classifier_error"
"""The reason recorded when a classifier raised (the attempt counts as ABORT)."""


@final
class BudgetKind(enum.Enum):
    """What an attempt drawing on a Budget is."""

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


def acquire(budget: Budget, kind: BudgetKind, name: str) -> str | None:
    """Ask *budget* for one unit: None when granted, else the denial's reason.

    A budget that raises denies (fails closed): a budget protects a
    dependency, and when its own code is broken, launching *more* attempts
    is the wrong failure mode, and so is crashing the call. The error is
    logged; the reason is :data:`BUDGET_ERROR`.
    """
    try:
        granted = budget.try_acquire(kind)
    except Exception:
        logger.exception(
            "call %r: the %s budget raised; treated as a denial", name, kind.value
        )
        return BUDGET_ERROR
    return None if granted else BUDGET_DENIED


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

    classification: Classification = attrs.field()
    backoff: float | None = attrs.field(
        default=None, validator=attrs_validator(check_timeout, allow_inf=False)
    )
    reason: str | None = attrs.field(default=None)

    @classification.validator
    def _check_classification(
        self, attribute: attrs.Attribute[Classification], value: object
    ) -> None:
        check_enum(value, Classification, "classification")

    @reason.validator
    def _check_reason(
        self, attribute: attrs.Attribute[str | None], value: object
    ) -> None:
        if value is not None:
            check_str(value, "reason")


class Classifier(Protocol):
    """``classifier(result) -> Classification | Classified`` for one attempt's result.

    *result* is an :class:`outcome.Value` or :class:`outcome.Error`. It must be
    sync and quick; an exception it raises makes the attempt ABORT (reason
    ``classifier_error``). Any function with that shape is a classifier::

        def classify(result: outcome.Outcome[Any]) -> Classification: ...
    """

    def __call__(self, result: outcome.Outcome[Any], /) -> Classification | Classified:
        """Say what one attempt's result means."""


def default_classifier(result: outcome.Outcome[Any]) -> Classification:
    """A value is SUCCESS, an exception RETRYABLE."""
    if isinstance(result, outcome.Value):
        return Classification.SUCCESS
    return Classification.RETRYABLE


@attrs.define
class Verdict:
    """A classifier's answer, checked: what the loops act on (never mutated)."""

    classification: Classification
    reason: str | None = None
    backoff: float | None = None
    error: BaseException | None = None


_VALUE_SUCCEEDED: Final = Verdict(Classification.SUCCESS)


def default_verdict(error: BaseException | None) -> Verdict:
    """The default classifier's verdict, without building an outcome to ask it.

    A value (no *error*) is SUCCESS, an exception RETRYABLE. The retry loop
    of every compensation and act takes this path: no call, no outcome
    object and, for a value, no allocation.
    """
    if error is None:
        return _VALUE_SUCCEEDED
    return Verdict(Classification.RETRYABLE, None, None, error)


def classify(classifier: Classifier, result: outcome.Outcome[Any]) -> Verdict:
    """Run *classifier* on *result*; a classifier bug makes the attempt ABORT.

    The verdict's ``error`` is the attempt's exception, or the classifier's
    own when it raised or answered something that is not a classification.
    """
    if classifier is default_classifier:
        return default_verdict(
            result.error if isinstance(result, outcome.Error) else None
        )
    error = result.error if isinstance(result, outcome.Error) else None
    try:
        answer = classifier(result)
        if isinstance(answer, Classified):
            return Verdict(answer.classification, answer.reason, answer.backoff, error)
        if not isinstance(answer, Classification):
            raise TypeError(
                f"classifier must return a Classification or Classified, got {answer!r}"
            )
    except Exception as exc:
        return Verdict(Classification.ABORT, CLASSIFIER_ERROR, None, exc)
    return Verdict(answer, None, None, error)


@final
class MissingTrigger(enum.Enum):
    """What to do when a HedgePolicy names a trigger nobody registered."""

    FALLBACK = "fallback"
    """Hedge on the policy's fixed ``delay`` instead (recorded)."""
    DISABLE = "disable"
    """Do not hedge at all for that call (recorded)."""


def _optional_trigger_name(
    instance: object, attribute: attrs.Attribute[str | None], value: object
) -> None:
    if value is not None:
        check_str(value, "trigger")


@final
@attrs.frozen(kw_only=True)
class HedgePolicy:
    """How a retry group launches parallel hedged attempts.

    Attributes:
        max_hedges: Attempts per retry group, the primary included (>= 1;
            1 means no hedge).
        delay: Seconds between hedge launches for the fixed-delay trigger:
            hedge ``k`` launches at ``group_start + k * delay``, so 0
            launches every attempt at once and ``math.inf`` never hedges.
        trigger: Name of a trigger in the executor's
            :class:`TriggerRegistry`; when found it wins over ``delay``.
        cancel_on_first_terminal: End the group (and cancel its other
            attempts) at the first NON_RETRYABLE/ABORT result.
        budget: Drawn on once per hedge; a denied hedge is recorded, never
            fails the group.
        missing_trigger: What to do when ``trigger`` is not registered.
    """

    max_hedges: int = attrs.field(
        default=2, validator=attrs_validator(check_int, minimum=1)
    )
    delay: float = attrs.field(
        default=0.2, validator=attrs_validator(check_timeout, allow_none=False)
    )
    trigger: str | None = attrs.field(default=None, validator=_optional_trigger_name)
    cancel_on_first_terminal: bool = attrs.field(
        default=False, validator=attrs_validator(check_bool)
    )
    budget: Budget | None = attrs.field(
        default=None, validator=attrs_validator(check_budget)
    )
    missing_trigger: MissingTrigger = attrs.field(default=MissingTrigger.FALLBACK)

    @missing_trigger.validator
    def _check_missing_trigger(
        self, attribute: attrs.Attribute[MissingTrigger], value: object
    ) -> None:
        check_enum(value, MissingTrigger, "missing_trigger")


def _optional_hedge(
    instance: object, attribute: attrs.Attribute[HedgePolicy | None], value: object
) -> None:
    if value is not None:
        check_type(value, HedgePolicy, "hedge")


@final
@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often, and how far apart, to try again, and what is worth it.

    Attempts are grouped: each *retry group* runs one attempt (or several
    hedged ones, with ``hedge``); after a failed group the next waits
    :meth:`backoff`.

    Attributes:
        max_attempts: Retry groups at most (>= 1; 1 means no retry).
        initial_backoff: Seconds before the second group (finite).
        max_backoff: Cap on every backoff, overrides included (finite: a
            retried undo runs shielded, and an endless wait there could
            never be stopped).
        multiplier: Exponential growth per group (>= 1, finite).
        jitter: Fraction in [0, 1]: a backoff ``d`` becomes uniform in
            ``d*(1-jitter) .. d*(1+jitter)`` before the cap. 0 disables it.
        hedge: Hedging within each group, or None for none (only the
            :class:`~trio_sagas.Executor` hedges).
        budget: Drawn on once per retry group after the first; a denied
            retry ends the loop with the last group's result (reason
            ``"budget_denied"``).
        classifier: ``classifier(result) -> Classification | Classified``
            deciding what each attempt's result means. None: the executor's
            classifier, if it has one, else the default (a value is
            SUCCESS, an exception RETRYABLE). A policy's own classifier
            wins over the executor's.
    """

    max_attempts: int = attrs.field(
        default=3, validator=attrs_validator(check_int, minimum=1)
    )
    initial_backoff: float = attrs.field(
        default=0.1,
        validator=attrs_validator(check_timeout, allow_none=False, allow_inf=False),
    )
    max_backoff: float = attrs.field(
        default=10.0,
        validator=attrs_validator(check_timeout, allow_none=False, allow_inf=False),
    )
    multiplier: float = attrs.field(
        default=2.0, validator=attrs_validator(check_real, minimum=1)
    )
    jitter: float = attrs.field(default=0.0, validator=attrs_validator(check_fraction))
    hedge: HedgePolicy | None = attrs.field(default=None, validator=_optional_hedge)
    budget: Budget | None = attrs.field(
        default=None, validator=attrs_validator(check_budget)
    )
    classifier: Classifier | None = attrs.field(
        default=None, validator=attrs_validator(check_optional_sync_callable)
    )

    def __attrs_post_init__(self) -> None:
        if self.initial_backoff > self.max_backoff:
            raise ValueError(
                f"initial_backoff ({self.initial_backoff!r}) must not exceed "
                f"max_backoff ({self.max_backoff!r})"
            )

    def backoff(self, retry_index: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after retry group *retry_index* (0-based) failed.

        ``initial_backoff * multiplier ** retry_index``, jittered, capped at
        ``max_backoff``.
        """
        check_int(retry_index, "retry_index", minimum=0)
        if rng is not None:
            check_type(rng, random.Random, "rng")
        return self._delay(retry_index, rng)

    def _delay(self, retry_index: int, rng: random.Random | None = None) -> float:
        """:meth:`backoff` for arguments known to be valid (the retry loops)."""
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
        check_timeout(override, "override", allow_none=False)
        return min(override, self.max_backoff)
