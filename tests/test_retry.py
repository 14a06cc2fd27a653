"""Retry and hedge policy values: defaults, validation, backoff."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_sagas import (
    BudgetKind,
    Classification,
    Classified,
    HedgePolicy,
    MissingTrigger,
    RetryPolicy,
)


def test_defaults() -> None:
    """Defaults: 3 attempts, 0.1 s doubling to 10 s, no jitter, no hedge; hedges 2, 0.2 s apart."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (
        3,
        0.1,
        10.0,
    )
    assert (policy.multiplier, policy.jitter, policy.hedge, policy.budget) == (
        2.0,
        0.0,
        None,
        None,
    )
    hedge = HedgePolicy()
    assert (hedge.max_hedges, hedge.delay, hedge.trigger) == (2, 0.2, None)
    assert hedge.missing_trigger is MissingTrigger.FALLBACK
    assert not hedge.cancel_on_first_terminal


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be an int >= 1, got 0"),
        (
            {"max_attempts": 1.5},
            TypeError,
            "max_attempts must be an int >= 1, got 1.5",
        ),
        (
            {"max_attempts": True},
            TypeError,
            "max_attempts must be an int >= 1, got True",
        ),
        (
            {"initial_backoff": -1},
            ValueError,
            "initial_backoff must be >= 0 seconds, got -1",
        ),
        (
            {"max_backoff": -0.1},
            ValueError,
            "max_backoff must be >= 0 seconds, got -0.1",
        ),
        (
            {"initial_backoff": 5, "max_backoff": 1},
            ValueError,
            r"initial_backoff \(5\) must not exceed max_backoff \(1\)",
        ),
        (
            {"multiplier": 0.5},
            ValueError,
            "multiplier must be a finite number >= 1, got 0.5",
        ),
        (
            {"jitter": 1.5},
            ValueError,
            "jitter must be 0 <= x <= 1, got 1.5",
        ),
        (
            {"jitter": -0.1},
            ValueError,
            "jitter must be 0 <= x <= 1, got -0.1",
        ),
        ({"hedge": 2}, TypeError, "hedge must be a HedgePolicy, got 2"),
        ({"budget": object()}, TypeError, r"budget must implement try_acquire\(kind\)"),
        (
            {"initial_backoff": "1"},
            TypeError,
            "initial_backoff must be a number of seconds, got '1'",
        ),
    ],
)
def test_retry_policy_validation(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad values fail fast naming the argument and the value."""
    with pytest.raises(error, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_hedges": 0}, ValueError, "max_hedges must be an int >= 1, got 0"),
        ({"delay": -0.2}, ValueError, "delay must be >= 0 seconds, got -0.2"),
        ({"trigger": 3}, TypeError, "trigger must be a str, got 3"),
        (
            {"missing_trigger": "fallback"},
            TypeError,
            "missing_trigger must be one of MissingTrigger.FALLBACK",
        ),
        ({"budget": "x"}, TypeError, r"budget must implement try_acquire\(kind\)"),
    ],
)
def test_hedge_policy_validation(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad hedge values fail fast naming the argument and the value."""
    with pytest.raises(error, match=match):
        HedgePolicy(**kwargs)  # type: ignore[arg-type]


def test_exponential_backoff_capped() -> None:
    """Backoff doubles from initial_backoff and stops at max_backoff."""
    policy = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=5)
    assert [policy.backoff(i) for i in range(5)] == [1, 2, 4, 5, 5]
    assert policy.backoff(10_000) == 5
    assert policy.cap(100) == 5
    assert policy.cap(0.5) == 0.5
    with pytest.raises(ValueError, match="retry_index must be an int >= 0, got -1"):
        policy.backoff(-1)


@given(
    initial=st.floats(0, 10),
    multiplier=st.floats(1, 5),
    jitter=st.floats(0, 1),
    index=st.integers(0, 50),
    seed=st.integers(0, 2**32),
)
def test_jitter_bounds(
    initial: float, multiplier: float, jitter: float, index: int, seed: int
) -> None:
    """A jittered backoff lies within d(1-j)..d(1+j), capped at max_backoff."""
    policy = RetryPolicy(
        initial_backoff=initial, multiplier=multiplier, jitter=jitter, max_backoff=100
    )
    base = min(initial * multiplier**index, math.inf) if index < 40 else math.inf
    delay = policy.backoff(index, rng=random.Random(seed))
    assert 0 <= delay <= 100
    if base <= 100 / (1 + jitter):
        assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_classified_validation() -> None:
    """A Classified backoff override must be a non-negative number."""
    assert Classified(Classification.RETRYABLE, backoff=2.0).backoff == 2.0
    with pytest.raises(ValueError, match="backoff must be >= 0 seconds, got -1"):
        Classified(Classification.RETRYABLE, backoff=-1)


def test_budget_kinds() -> None:
    """Budget kinds are retry and hedge."""
    assert [k.value for k in BudgetKind] == ["retry", "hedge"]
