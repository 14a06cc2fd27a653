"""Outcome records and cancel causes: how every component says what happened."""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from typing import Any, Generic, TypeVar, final

import attrs
import outcome
import trio

from ._validate import (
    check_enum,
    check_label,
    check_mapping,
    check_optional_str,
    check_optional_time,
    check_optional_type,
    check_str,
)

T = TypeVar("T")
_INF = float("inf")


@final
class Status(enum.Enum):
    """How a unit of work ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


@final
class CancelOrigin(enum.Enum):
    """Who decided to stop the work.

    ``INTERNAL``: the toolkit's own coordination (a winner, a failed peer, a
    timeout it enforces). ``EXTERNAL``: the caller's enclosing scope, or a
    manual cancel.
    """

    INTERNAL = "internal"
    EXTERNAL = "external"


@final
class CancelReason(enum.Enum):
    """Why the work was stopped."""

    STEP_FAILED = "step_failed"
    DEPENDENCY_FAILED = "dependency_failed"
    SCOPE_CANCELLED = "scope_cancelled"
    STEP_TIMEOUT = "step_timeout"
    GLOBAL_TIMEOUT = "global_timeout"
    WINNER = "winner"
    TERMINAL = "terminal"
    MANUAL = "manual"
    EXTERNAL = "external"

    @property
    def origin(self) -> CancelOrigin:
        """The origin implied by this reason: MANUAL/EXTERNAL are external."""
        if self in (CancelReason.MANUAL, CancelReason.EXTERNAL):
            return CancelOrigin.EXTERNAL
        return CancelOrigin.INTERNAL


@final
@attrs.frozen(kw_only=True)
class CancelCause:
    """Why something was cancelled, timed out or skipped.

    Attributes:
        reason: What kind of event caused it.
        origin: Internal coordination or the outside world.
        scope: Path of the scope where the cancel began (``"app/critical"``),
            if it began in a :class:`CancellationScope`.
        triggered_by: Name of the step, signal or attempt that caused it.
        message: Free text for humans.
    """

    reason: CancelReason
    origin: CancelOrigin
    scope: str | None = None
    triggered_by: str | None = None
    message: str = ""

    def __attrs_post_init__(self) -> None:
        # Type tests inline, the argument-naming checks only for a bad
        # record: causes are built on cancellation paths the benchmarks time
        # (five attrs validators doubled the cost of a cause).
        # Read as plain objects: the annotations are what is being checked.
        reason: object = self.reason
        origin: object = self.origin
        message: object = self.message
        scope: object = self.scope
        trigger: object = self.triggered_by
        if not (
            type(reason) is CancelReason
            and type(origin) is CancelOrigin
            and type(message) is str
            and (scope is None or (type(scope) is str and scope))
            and (trigger is None or (type(trigger) is str and trigger))
        ):
            _check_cause(reason, origin, message)
            check_optional_str(scope, "scope")
            check_optional_str(trigger, "triggered_by")

    @classmethod
    def of(
        cls,
        reason: CancelReason,
        *,
        scope: str | None = None,
        triggered_by: str | None = None,
        message: str | None = None,
    ) -> CancelCause:
        """Build a cause whose origin follows from *reason*.

        Raises:
            TypeError: *reason* is not a :class:`CancelReason` (its string
                value is not accepted in its place), or a text argument is
                not a str.
        """
        given: tuple[object, object] = (reason, message)
        if type(given[0]) is not CancelReason:
            check_enum(given[0], CancelReason, "reason")
        if given[1] is not None and type(given[1]) is not str:
            check_str(given[1], "message", allow_empty=True)
        return cls(
            reason=reason,
            origin=reason.origin,
            scope=scope,
            triggered_by=triggered_by,
            message=message or "",
        )

    @classmethod
    def external(cls, message: str = "cancelled from outside") -> CancelCause:
        """The cause of a cancellation none of the toolkit's scopes started.

        Prefer :meth:`from_cancelled` when the :exc:`trio.Cancelled` is at hand:
        it keeps trio's reason text.
        """
        return cls.of(CancelReason.EXTERNAL, message=message)

    @classmethod
    def from_cancelled(cls, exc: BaseException | None) -> CancelCause:
        """The external cause of a trio.Cancelled no scope of ours started.

        Keeps trio's own reason text (``Cancelled.reason``, e.g. the string a
        caller passed to ``cancel(reason=...)``) as the message, so the cause
        says as much as the traceback would. This is the one place an
        "external cancel" cause is built from an exception.
        """
        reason = getattr(exc, "reason", None)
        return cls.external(str(reason) if reason else "cancelled from outside")

    def describe(self) -> str:
        """One readable line; also the reason string passed to trio."""
        text = f"{self.reason.value} ({self.origin.value})"
        if self.scope is not None:
            text += f" in scope {self.scope!r}"
        if self.triggered_by is not None:
            text += f", triggered by {self.triggered_by!r}"
        if self.message:
            text += f": {self.message}"
        return text

    def __str__(self) -> str:
        return self.describe()


def _check_cause(reason: object, origin: object, message: object) -> None:
    if not (
        type(reason) is CancelReason
        and type(origin) is CancelOrigin
        and type(message) is str
    ):
        check_enum(reason, CancelReason, "reason")
        check_enum(origin, CancelOrigin, "origin")
        check_str(message, "message", allow_empty=True)


def describe_error(error: BaseException) -> str:
    """``"ValueError: card declined"``: the one way errors are put in words."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def _check_outcome(
    name: object,
    status: object,
    error: object,
    cause: object,
    started_at: object,
    finished_at: object,
) -> None:
    if type(name) is not str or type(status) is not Status or not name:
        check_label(name, "name")
        check_enum(status, Status, "status")
    if error is not None:
        check_optional_type(error, BaseException, "error")
    if cause is not None:
        check_optional_type(cause, CancelCause, "cause")
    if started_at is not None:
        check_optional_time(started_at, "started_at")
    if finished_at is not None:
        check_optional_time(finished_at, "finished_at")


def _freeze(mapping: Mapping[str, object] | None) -> Mapping[str, object]:
    if mapping is None:
        return _EMPTY
    if isinstance(mapping, types.MappingProxyType):
        return mapping
    check_mapping(mapping, "attributes")
    return types.MappingProxyType(dict(mapping))


_EMPTY: Mapping[str, object] = types.MappingProxyType({})


@final
class OutcomeError(Exception):
    """Raised by Outcome.unwrap() for an outcome with no value and no error.

    That is a CANCELLED, TIMED_OUT or SKIPPED outcome; :attr:`outcome` says why.
    """

    def __init__(self, outcome: Outcome[Any]) -> None:
        self.outcome = outcome
        why = f": {outcome.cause}" if outcome.cause is not None else ""
        super().__init__(f"{outcome.name!r} {outcome.status.value}{why}")


@final
@attrs.frozen
class Outcome(Generic[T]):
    """The result of one unit of work: a step, a task, an attempt, a signal.

    Attributes:
        name: What ran.
        status: How it ended.
        value: The return value, when it succeeded.
        error: The exception, when it failed (or timed out with an error).
        cause: Why it was cancelled, timed out or skipped.
        started_at: Trio clock time it started, if it started.
        finished_at: Trio clock time it ended, if it ended.
        attributes: Component-specific extras (read-only mapping).
    """

    name: str
    status: Status
    value: T | None = None
    error: BaseException | None = None
    cause: CancelCause | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attributes: Mapping[str, object] = attrs.field(
        default=None, converter=_freeze, hash=False, repr=lambda m: repr(dict(m))
    )

    def __attrs_post_init__(self) -> None:
        # Type tests inline; only a bad record (or an int time) pays for the
        # argument-naming checks: outcomes are built per task and step.
        # Read as plain objects: the annotations are what is being checked.
        name: object = self.name
        status: object = self.status
        error: object = self.error
        cause: object = self.cause
        started: object = self.started_at
        finished: object = self.finished_at
        if not (
            type(name) is str
            and name
            and type(status) is Status
            and (error is None or isinstance(error, BaseException))
            and (cause is None or type(cause) is CancelCause)
            and (started is None or (type(started) is float and -_INF < started < _INF))
            and (
                finished is None
                or (type(finished) is float and -_INF < finished < _INF)
            )
        ):
            _check_outcome(name, status, error, cause, started, finished)

    @property
    def ok(self) -> bool:
        """Whether the status is SUCCEEDED."""
        return self.status is Status.SUCCEEDED

    @property
    def duration(self) -> float | None:
        """``finished_at - started_at``, or None if either is unknown."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def unwrap(self) -> T:
        """Return the value, or raise the error.

        Raises:
            BaseException: the recorded error, if there is one.
            OutcomeError: if the work did not succeed and recorded no error
                (cancelled, timed out without an error, skipped).
        """
        if self.status is Status.SUCCEEDED:
            return self.value  # type: ignore[return-value]
        if self.error is not None:
            raise self.error
        raise OutcomeError(self)

    def to_outcome(self) -> outcome.Outcome[T]:
        """Convert to an ``outcome.Value`` or ``outcome.Error``.

        Raises:
            OutcomeError: for an outcome with neither value nor error.
        """
        if self.status is Status.SUCCEEDED:
            return outcome.Value(self.value)  # type: ignore[arg-type]
        if self.error is not None:
            return outcome.Error(self.error)
        raise OutcomeError(self)

    @classmethod
    def from_outcome(
        cls,
        name: str,
        result: outcome.Outcome[T],
        *,
        started_at: float | None = None,
        finished_at: float | None = None,
        attributes: Mapping[str, object] | None = None,
    ) -> Outcome[T]:
        """Build from an ``outcome.Value`` or ``outcome.Error``.

        An ``Error`` holding :exc:`trio.Cancelled` becomes CANCELLED with an
        EXTERNAL cause (nothing in the toolkit started that cancel), without
        keeping the ``Cancelled`` object.
        """
        common: dict[str, Any] = {
            "started_at": started_at,
            "finished_at": finished_at,
            "attributes": attributes,
        }
        if isinstance(result, outcome.Value):
            return cls(name, Status.SUCCEEDED, value=result.value, **common)
        if isinstance(result, outcome.Error):
            error = result.error
            if isinstance(error, trio.Cancelled):
                cause = CancelCause.from_cancelled(error)
                return cls(name, Status.CANCELLED, cause=cause, **common)
            return cls(name, Status.FAILED, error=error, **common)
        raise TypeError(
            f"result must be an outcome.Value or outcome.Error, got {result!r}"
        )
