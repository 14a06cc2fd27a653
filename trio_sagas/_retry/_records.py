"""What an attempt knows about itself, and the one record of how it ended.

``outcome.attributes["attempts"]`` is a tuple of :class:`AttemptRecord` in
every component that retries: the hedged executor, compensations and saga
acts. :func:`attempt_record` is the one way to build a record.
"""

from __future__ import annotations

from typing import Protocol, final

import attrs

from .._outcome import CancelCause, Status
from ._policy import Classification, Verdict


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
    """One entry of an attempt timeline (``outcome.attributes["attempts"]``).

    Attributes:
        retry_index: Its retry group.
        hedge_index: Its place in the group (0: the primary).
        attempt: Its number in the call, from 1.
        status: SUCCEEDED or FAILED (it finished), TIMED_OUT (a try of a
            compensation or act ran past its timeout), CANCELLED (the
            executor stopped it: a winner or a terminal result; or the
            caller's cancel, as seen by observers), or SKIPPED (the hedge
            budget denied it; it never ran).
        classification: What the classifier said about its result; None if
            it was cancelled or skipped.
        cause: Why it was cancelled or timed out.
        started_at: Trio time it started (or was denied).
        finished_at: Trio time it ended.
        error: The exception it raised, if any (or the classifier's, when
            that raised).
        reason: The classifier's reason, ``"budget_denied"``,
            ``"budget_error"``, ``"classifier_error"`` or ``"trigger_error"``.
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


class Numbered(Protocol):
    """Where an attempt stands: an :class:`AttemptInfo`, or the retry loop's own."""

    @property
    def retry_index(self) -> int: ...
    @property
    def hedge_index(self) -> int: ...
    @property
    def attempt(self) -> int: ...


def attempt_record(
    info: Numbered,
    *,
    status: Status,
    started_at: float,
    finished_at: float,
    verdict: Verdict | None = None,
    cause: CancelCause | None = None,
    error: BaseException | None = None,
    reason: str | None = None,
) -> AttemptRecord:
    """The record of attempt *info*: finished (with the classifier's *verdict*) or not.

    A verdict supplies the classification, reason, backoff override and
    error; without one (cancelled, skipped) the record has no
    classification and takes *error* and *reason* as given.
    """
    if verdict is not None:
        return AttemptRecord(
            retry_index=info.retry_index,
            hedge_index=info.hedge_index,
            attempt=info.attempt,
            status=status,
            classification=verdict.classification,
            cause=cause,
            started_at=started_at,
            finished_at=finished_at,
            error=verdict.error,
            reason=verdict.reason,
            backoff=verdict.backoff,
        )
    return AttemptRecord(
        retry_index=info.retry_index,
        hedge_index=info.hedge_index,
        attempt=info.attempt,
        status=status,
        classification=None,
        cause=cause,
        started_at=started_at,
        finished_at=finished_at,
        error=error,
        reason=reason,
    )
