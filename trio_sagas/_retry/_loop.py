"""The simple retry loop of compensations and saga acts: one try at a time.

It honours the same :class:`RetryPolicy` as the hedged executor, its
``classifier`` included (hedging aside), and reports the same
:class:`AttemptRecord` timeline in ``attributes["attempts"]``, built when
first read: most undos and acts succeed at their first try and nobody reads
their timeline, and building the records on every try made a compensation
action under a retry policy a fifth slower (``bench_errgroup.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, final

import outcome
import trio

from .._outcome import CancelCause, CancelReason, Outcome, Status
from ._policy import (
    BudgetKind,
    Classification,
    Classifier,
    RetryPolicy,
    Verdict,
    acquire,
    classify,
    default_verdict,
)
from ._records import AttemptRecord, attempt_record


class _Place(NamedTuple):
    """A try's place, for its record (the loop hands its function no
    AttemptInfo, so it builds none)."""

    retry_index: int
    hedge_index: int
    attempt: int


# One try as the loop keeps it: (retry_index, status, started_at, finished_at,
# verdict, cause, error); verdict None is the default classifier's (a value
# SUCCESS, an error RETRYABLE), built only for a record. A plain tuple: a
# third of a named tuple's cost.
_Try = tuple[
    int, Status, float, float, Verdict | None, CancelCause | None, Exception | None
]


def _record(one: _Try) -> AttemptRecord:
    retry_index, status, started_at, finished_at, verdict, cause, error = one
    if verdict is None:
        verdict = default_verdict(error)
    return attempt_record(
        _Place(retry_index, 0, retry_index + 1),
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        verdict=verdict,
        cause=cause,
    )


@final
class _Attributes(Mapping[str, object]):
    """A retried outcome's attributes, its ``"attempts"`` built when first read.

    Holds ``"attempts"``, ``"classification"`` and, for a failure,
    ``"reason"``. Read-only (the outcome wraps it in a mapping proxy) and
    equal to the plain dict it stands for. Outcomes outlive their run in
    reports, so the common one, a first try's success, keeps just its two
    times: every object an outcome keeps is one more for the cyclic GC to
    walk.
    """

    __slots__ = (
        "_attempts",
        "_classification",
        "_finished",
        "_reason",
        "_started",
        "_tries",
    )

    def __init__(
        self,
        tries: list[_Try] | None,
        classification: Classification,
        reason: str | None,
        started: float = 0.0,
        finished: float = 0.0,
    ) -> None:
        self._tries = tries  # None: one try, SUCCEEDED from *started* to *finished*
        self._attempts: tuple[AttemptRecord, ...] | None = None
        self._classification = classification
        self._reason = reason
        self._started = started
        self._finished = finished

    def __getitem__(self, key: str) -> object:
        if key == "attempts":
            attempts = self._attempts
            if attempts is None:
                tries = self._tries
                if tries is None:
                    tries = [
                        (0, _SUCCEEDED, self._started, self._finished, None, None, None)
                    ]
                attempts = self._attempts = tuple(map(_record, tries))
            return attempts
        if key == "classification":
            return self._classification
        if key == "reason" and self._reason is not None:
            return self._reason
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield "attempts"
        yield "classification"
        if self._reason is not None:
            yield "reason"

    def __len__(self) -> int:
        return 2 if self._reason is None else 3

    def __contains__(self, key: object) -> bool:
        # Mapping's own would read the value, building the records.
        return key in ("attempts", "classification") or (
            key == "reason" and self._reason is not None
        )

    def __repr__(self) -> str:
        return repr(dict(self))

    def copy(self) -> dict[str, object]:
        """A plain dict of the attributes (what ``mappingproxy.copy()`` returns)."""
        return dict(self)


_SUCCESS = Classification.SUCCESS
_RETRYABLE = Classification.RETRYABLE
_SUCCEEDED = Status.SUCCEEDED


@final
class ResultRejected(Exception):
    """A try returned a value that the policy's classifier called a failure.

    It stands in for the missing exception where a failure needs one: the
    error of a compensation's or an act's outcome (so a rollback report and
    a :class:`~trio_sagas.SagaError` can name it).

    Attributes:
        value: What the try returned.
        classification: What the classifier said about it.
        reason: The classifier's reason, if it gave one.
    """

    def __init__(
        self,
        name: str,
        value: object,
        classification: Classification,
        reason: str | None,
    ) -> None:
        self.value = value
        self.classification = classification
        self.reason = reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"{name!r} returned {value!r}, classified {classification.value}{why}"
        )


def _failure_reason(last: Verdict) -> str:
    if last.reason is not None:
        return last.reason
    if last.classification is Classification.RETRYABLE:
        return "retries_exhausted"
    return str(last.classification.value)


async def run_attempts(
    fn: Callable[..., Awaitable[object]],
    args: Sequence[object],
    *,
    name: str,
    retry: RetryPolicy | None,
    timeout: float,
    what: str,
) -> Outcome[object]:
    """Call ``fn(*args)`` up to ``retry.max_attempts`` times, each try bounded.

    Each try's result goes through ``retry.classifier`` (default: a value is
    SUCCESS, an exception RETRYABLE): SUCCESS ends the loop, NON_RETRYABLE
    and ABORT end it at once as a failure, RETRYABLE tries again after the
    policy's backoff (or the classifier's override, capped). A try that
    runs past *timeout* counts as a :exc:`TimeoutError`. A retry budget that
    denies a retry ends the tries (reason ``"budget_denied"``).

    Never raises for an :exc:`Exception` from *fn*: the outcome says
    SUCCEEDED, FAILED (the last error; a value the classifier rejected is a
    :exc:`ResultRejected`) or TIMED_OUT (cause ``STEP_TIMEOUT``).
    ``attributes`` holds ``"attempts"`` (the :class:`AttemptRecord` of every
    try), ``"classification"`` (the last try's) and, when it failed,
    ``"reason"``. :exc:`trio.Cancelled` (and any other
    :exc:`BaseException`) propagates: callers that must not be cancelled
    shield the call.

    Args:
        fn: The async function to try.
        args: Its positional arguments.
        name: Names the work in records, messages and budget logs.
        retry: The policy, or None for a single try.
        timeout: Seconds one try may take (``math.inf``: no limit).
        what: Names the kind of work in the timeout message ("act",
            "compensation").
    """
    max_attempts = 1 if retry is None else retry.max_attempts
    classifier: Classifier | None = None  # None: the default, inlined below
    if retry is not None and retry.classifier is not None:
        classifier = retry.classifier
    tries: list[_Try] = []
    error: Exception | None = None
    verdict: Verdict | None = None
    attributes: _Attributes | None = None
    denied: str | None = None
    started = trio.current_time()
    try:
        for retry_index in range(max_attempts):
            if retry_index:
                assert retry is not None
                if retry.budget is not None:
                    denied = acquire(retry.budget, BudgetKind.RETRY, name)
                    if denied is not None:
                        break
                verdict = tries[-1][4]
                override = None if verdict is None else verdict.backoff
                await trio.sleep(
                    retry._delay(retry_index - 1)
                    if override is None
                    else retry.cap(override)
                )
                try_started = trio.current_time()
            else:
                try_started = started  # one clock read less on the common path
            cause: CancelCause | None = None
            value: object = None
            error = None
            returned = False
            # The try wraps the timed scope, not the other way round: when a
            # try times out while fn's own nursery has a child failing in
            # cleanup, fn raises [Cancelled, ValueError]; the scope strips the
            # Cancelled and the rest must still be caught here as this try's
            # failure.
            try:
                with trio.move_on_after(timeout):
                    value = await fn(*args)
                    returned = True
            except Exception as exc:
                error = exc
            if returned and classifier is None:
                # The common path: a value, which the default classifier
                # calls SUCCESS (asked nothing, no verdict built).
                ended = trio.current_time()
                if retry_index:
                    tries.append(
                        (retry_index, _SUCCEEDED, try_started, ended, None, None, None)
                    )
                    attributes = _Attributes(tries, _SUCCESS, None)
                else:
                    attributes = _Attributes(None, _SUCCESS, None, try_started, ended)
                return Outcome(
                    name,
                    _SUCCEEDED,
                    value=value,
                    started_at=started,
                    finished_at=ended,
                    # A proxy is what Outcome keeps; given one, it keeps it.
                    attributes=MappingProxyType(attributes),
                )
            if not returned and error is None:  # the timeout's cancel was caught
                cause = CancelCause.of(
                    CancelReason.STEP_TIMEOUT,
                    triggered_by=name,
                    message=f"{what} try exceeded {timeout} s",
                )
                error = TimeoutError(
                    f"{what} {name!r} timed out after {timeout} s "
                    f"(try {retry_index + 1})"
                )
            verdict = None  # the default's: an error is RETRYABLE
            classification = _RETRYABLE
            if classifier is not None:
                verdict = _judge(classifier, value, error)
                classification = verdict.classification
            if classification is _SUCCESS:
                status = _SUCCEEDED
            elif cause is not None:
                status = Status.TIMED_OUT
            else:
                status = Status.FAILED
            ended = trio.current_time()
            tries.append(
                (retry_index, status, try_started, ended, verdict, cause, error)
            )
            if classification is _SUCCESS:
                return Outcome(
                    name,
                    _SUCCEEDED,
                    value=value,
                    started_at=started,
                    finished_at=ended,
                    attributes=MappingProxyType(_Attributes(tries, _SUCCESS, None)),
                )
            if classification is not _RETRYABLE:
                break
        return _failed(name, value, tries, denied, started)
    finally:
        # A failed try's traceback holds this frame, and the frame its
        # locals: dropping the ones that reach the tries' errors leaves no
        # reference cycle for the garbage collector to find (it cost ~3 us
        # per retried action).
        del tries
        error = verdict = attributes = None


def _judge(classifier: Classifier, value: object, error: Exception | None) -> Verdict:
    result: outcome.Outcome[Any] = (
        outcome.Value(value) if error is None else outcome.Error(error)
    )
    return classify(classifier, result)


def _failed(
    name: str, value: object, tries: list[_Try], denied: str | None, started: float
) -> Outcome[object]:
    """The outcome of tries that did not succeed: the last one's."""
    _, status, _, _, judged, cause, error = tries[-1]
    if judged is None:
        judged = default_verdict(error)
    final_error = judged.error
    if final_error is None:
        final_error = ResultRejected(name, value, judged.classification, judged.reason)
    return Outcome(
        name,
        status,
        value=value,
        error=final_error,
        cause=cause,
        started_at=started,
        finished_at=trio.current_time(),
        attributes=MappingProxyType(
            _Attributes(tries, judged.classification, denied or _failure_reason(judged))
        ),
    )
