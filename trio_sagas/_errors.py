"""The toolkit's own exceptions, in one place.

::

    Exception
    ├── OutcomeError          Outcome.unwrap() of work that neither returned nor raised
    └── ExceptionGroup
        └── SagaError         a failure, then a failing compensation

Components raise the user's own exceptions wherever they can (an error group
raises its first failure itself); these are for what has no exception of its
own. :class:`OutcomeError` lives with the outcome records it describes and is
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, final

from ._outcome import OutcomeError, describe_error

if TYPE_CHECKING:
    from ._compensation import CompensationReport

__all__ = ["OutcomeError", "SagaError"]


@final
class SagaError(ExceptionGroup[Exception]):
    """A failure that was followed by a failing compensation.

    Its members are ``(original, *compensation_errors)``, so
    ``except* OriginalType`` catches it. Build one with :meth:`from_report`.

    Attributes:
        original: The first failure, the one that triggered the rollback.
        compensation_errors: The final error of every action that failed.
        report: The full compensation report (names, attempts, timings).
    """

    original: Exception
    compensation_errors: tuple[Exception, ...]
    report: CompensationReport | None

    def __new__(
        cls,
        original: Exception,
        compensation_errors: Sequence[Exception],
        *,
        report: CompensationReport | None = None,
        message: str | None = None,
    ) -> SagaError:
        if not isinstance(original, Exception):
            raise TypeError(f"original must be an Exception, got {original!r}")
        errors = tuple(compensation_errors)
        if not errors:
            raise ValueError("compensation_errors must not be empty")
        for index, error in enumerate(errors):
            if not isinstance(error, Exception):
                raise TypeError(
                    f"compensation_errors[{index}] must be an Exception, got {error!r}"
                )
        if message is None:
            failed = f"{len(errors)} compensation action(s) failed"
            message = f"{describe_error(original)}; then {failed}"
        self = super().__new__(cls, message, (original, *errors))
        self.original = original
        self.compensation_errors = errors
        self.report = report
        return self

    def __init__(
        self,
        original: Exception,
        compensation_errors: Sequence[Exception],
        *,
        report: CompensationReport | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(self.message, self.exceptions)

    @classmethod
    def from_report(cls, original: Exception, report: CompensationReport) -> SagaError:
        """The error for *original* followed by the failed compensation *report*.

        The one way components build a :class:`SagaError`: the members are
        the report's errors, in run order; an error that is not an
        :exc:`Exception` (a compensation interrupted by a ``BaseException``)
        is named in a :exc:`RuntimeError` so the group stays an
        :exc:`ExceptionGroup`.

        Raises:
            ValueError: the report has no error (compensation succeeded).
        """
        errors = [
            error if isinstance(error, Exception) else RuntimeError(repr(error))
            for error in report.errors
        ]
        if not errors:
            raise ValueError(
                f"report must hold a failed compensation, got an ok report {report!r}"
            )
        return cls(original, errors, report=report)

    def derive(self, excs: Sequence[Exception]) -> ExceptionGroup[Exception]:  # type: ignore[override]
        """Split/subgroup results are plain groups (they may lack the original)."""
        return ExceptionGroup(self.message, excs)
