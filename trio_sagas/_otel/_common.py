"""Names and conversions shared by the span observer's modules."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from .._outcome import CancelCause, Status

PREFIX = "trio_sagas."

STATUS = {
    Status.SUCCEEDED: trace.StatusCode.OK,
    Status.FAILED: trace.StatusCode.ERROR,
    Status.TIMED_OUT: trace.StatusCode.ERROR,
    Status.CANCELLED: trace.StatusCode.UNSET,
    Status.SKIPPED: trace.StatusCode.UNSET,
}


def parent_path(path: str) -> str | None:
    head, sep, _ = path.rpartition("/")
    return head if sep else None


def cause_attributes(cause: CancelCause | None) -> dict[str, Any]:
    if cause is None:
        return {}
    out: dict[str, Any] = {
        PREFIX + "cancel.origin": cause.origin.value,
        PREFIX + "cancel.reason": cause.reason.value,
    }
    if cause.triggered_by is not None:
        out[PREFIX + "cancel.triggered_by"] = cause.triggered_by
    if cause.scope is not None:
        out[PREFIX + "cancel.scope"] = cause.scope
    if cause.message:
        out[PREFIX + "cancel.message"] = cause.message
    return out


# -- where each event's fields are read (adapt here when events change) --------


def attempt_of(event: Any) -> tuple[str, int, int, int]:
    """(call name, retry_index, hedge_index, attempt) of a hedge event."""
    # Hedge events carry one AttemptInfo as ``attempt``; older shapes had
    # its fields on the event itself.
    info: Any = getattr(event, "attempt", None)
    source: Any = info if hasattr(info, "retry_index") else event
    return source.name, source.retry_index, source.hedge_index, source.attempt
