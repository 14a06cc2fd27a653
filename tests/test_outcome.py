"""Outcome records and cancel causes."""

from __future__ import annotations

import math

import attrs
import outcome
import pytest
import trio

from trio_sagas import (
    CancelCause,
    CancelOrigin,
    CancelReason,
    Outcome,
    OutcomeError,
    Status,
)


def test_defaults_for_all_but_name_and_status() -> None:
    """Every field but name and status has a None/empty default."""
    o: Outcome[int] = Outcome("x", Status.SKIPPED)
    assert (o.value, o.error, o.cause, o.started_at, o.finished_at) == (None,) * 5
    assert dict(o.attributes) == {}
    assert not o.ok
    assert o.duration is None


def test_ok_duration_and_unwrap_value() -> None:
    """A succeeded outcome is ok, knows its duration and unwraps to its value."""
    o = Outcome("x", Status.SUCCEEDED, value=42, started_at=1.5, finished_at=4.0)
    assert o.ok
    assert o.duration == 2.5
    assert o.unwrap() == 42


def test_unwrap_raises_recorded_error() -> None:
    """A failed outcome re-raises its own error object."""
    error = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as info:
        Outcome("x", Status.FAILED, error=error).unwrap()
    assert info.value is error


def test_unwrap_without_error_raises_outcome_error() -> None:
    """Cancelled/skipped outcomes without an error raise OutcomeError naming why."""
    cause = CancelCause.of(CancelReason.WINNER, triggered_by="attempt-2")
    o: Outcome[None] = Outcome("attempt-1", Status.CANCELLED, cause=cause)
    with pytest.raises(OutcomeError, match="'attempt-1' cancelled: winner") as info:
        o.unwrap()
    assert info.value.outcome is o


def test_frozen_and_attributes_read_only() -> None:
    """Outcomes are immutable, attributes included."""
    source = {"attempts": 2}
    o: Outcome[None] = Outcome("x", Status.SUCCEEDED, attributes=source)
    source["attempts"] = 3
    assert o.attributes["attempts"] == 2
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        o.status = Status.FAILED  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.attributes["attempts"] = 5  # type: ignore[index]


def test_equality_and_hash_ignore_nothing_but_attribute_hash() -> None:
    """Equal fields make equal outcomes; hashing works with attributes present."""
    a: Outcome[int] = Outcome("x", Status.SUCCEEDED, value=1, attributes={"k": 1})
    b: Outcome[int] = Outcome("x", Status.SUCCEEDED, value=1, attributes={"k": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert a != attrs.evolve(a, attributes={"k": 2})


@pytest.mark.parametrize(
    ("reason", "origin"),
    [
        (CancelReason.MANUAL, CancelOrigin.EXTERNAL),
        (CancelReason.EXTERNAL, CancelOrigin.EXTERNAL),
        *[
            (r, CancelOrigin.INTERNAL)
            for r in CancelReason
            if r not in (CancelReason.MANUAL, CancelReason.EXTERNAL)
        ],
    ],
)
def test_origin_follows_reason(reason: CancelReason, origin: CancelOrigin) -> None:
    """MANUAL and EXTERNAL are external causes; every other reason is internal."""
    assert reason.origin is origin
    assert CancelCause.of(reason).origin is origin


def test_cause_describe_is_readable() -> None:
    """describe() names reason, origin, scope, trigger and message."""
    cause = CancelCause.of(
        CancelReason.STEP_FAILED, scope="app/db", triggered_by="auth", message="boom"
    )
    assert cause.describe() == (
        "step_failed (internal) in scope 'app/db', triggered by 'auth': boom"
    )
    assert str(CancelCause.of(CancelReason.MANUAL)) == "manual (external)"


def test_from_outcome_value_and_error() -> None:
    """outcome.Value and outcome.Error convert both ways."""
    ok = Outcome.from_outcome("v", outcome.Value(3), started_at=0.0, finished_at=1.0)
    assert (ok.status, ok.value, ok.duration) == (Status.SUCCEEDED, 3, 1.0)
    assert ok.to_outcome() == outcome.Value(3)
    error = KeyError("k")
    bad: Outcome[object] = Outcome.from_outcome("e", outcome.Error(error))
    assert (bad.status, bad.error) == (Status.FAILED, error)
    converted = bad.to_outcome()
    assert isinstance(converted, outcome.Error)
    assert converted.error is error


async def test_from_outcome_captures_async_call() -> None:
    """outcome.acapture results convert, keeping the exception."""

    async def fails() -> int:
        raise ZeroDivisionError

    captured = await outcome.acapture(fails)
    o = Outcome.from_outcome("fails", captured)
    assert o.status is Status.FAILED
    assert isinstance(o.error, ZeroDivisionError)


async def test_from_outcome_cancelled_is_external() -> None:
    """An outcome.Error holding trio.Cancelled is CANCELLED from outside, not kept."""
    with trio.CancelScope() as cs:
        cs.cancel(reason="shutting down")
        captured = await outcome.acapture(trio.sleep, math.inf)
    o = Outcome.from_outcome("sleeper", captured)
    assert o.status is Status.CANCELLED
    assert o.error is None
    assert o.cause == CancelCause.of(CancelReason.EXTERNAL, message="shutting down")


def test_from_outcome_rejects_other_types() -> None:
    """Passing something that is not an outcome is a TypeError naming it."""
    with pytest.raises(TypeError, match=r"result must be an outcome\.Value"):
        Outcome.from_outcome("x", 3)  # type: ignore[arg-type]


def test_to_outcome_without_value_or_error() -> None:
    """A skipped outcome has nothing to convert."""
    with pytest.raises(OutcomeError):
        Outcome("x", Status.SKIPPED).to_outcome()
