"""Direct tests for the outcome/cause checks that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import math

import pytest

from trio_sagas import CancelCause, CancelOrigin, CancelReason, Outcome, Status


def test_cause_of_refuses_the_reason_string() -> None:
    """CancelCause.of('manual') is a TypeError naming 'reason', not an AttributeError."""
    with pytest.raises(TypeError, match=r"reason.*'manual'"):
        CancelCause.of("manual")  # type: ignore[arg-type]


def test_cause_refuses_a_bad_origin_when_the_rest_is_valid() -> None:
    """A cause with a valid reason and message but a str origin is a TypeError naming 'origin'."""
    with pytest.raises(TypeError, match=r"origin.*'internal'"):
        CancelCause(reason=CancelReason.MANUAL, origin="internal")  # type: ignore[arg-type]
    cause = CancelCause(reason=CancelReason.MANUAL, origin=CancelOrigin.INTERNAL)
    assert (cause.reason, cause.origin, cause.message) == (
        CancelReason.MANUAL,
        CancelOrigin.INTERNAL,
        "",
    )


def test_outcome_refuses_a_non_str_name_with_a_valid_status() -> None:
    """Outcome(5, SUCCEEDED) is a TypeError naming 'name'."""
    with pytest.raises(TypeError, match=r"name.*5"):
        Outcome(5, Status.SUCCEEDED)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("error", "boom", TypeError),
        ("cause", "manual", TypeError),
        ("started_at", "soon", TypeError),
        ("finished_at", "later", TypeError),
        ("started_at", math.inf, ValueError),
        ("started_at", -math.inf, ValueError),
        ("finished_at", math.inf, ValueError),
        ("finished_at", -math.inf, ValueError),
    ],
)
def test_outcome_refuses_each_bad_field_beside_a_valid_name(
    field: str, value: object, error: type[Exception]
) -> None:
    """A valid name and status do not excuse one bad field: the error names that field."""
    with pytest.raises(error, match=field):
        Outcome("step", Status.FAILED, **{field: value})  # type: ignore[arg-type]


def test_outcome_keeps_finite_times_and_none() -> None:
    """Finite float times and None are kept as given."""
    outcome: Outcome[None] = Outcome(
        "step", Status.SUCCEEDED, started_at=-1.5, finished_at=2.0
    )
    assert (outcome.started_at, outcome.finished_at) == (-1.5, 2.0)
    bare: Outcome[None] = Outcome("step", Status.SUCCEEDED)
    assert (bare.started_at, bare.finished_at) == (None, None)
