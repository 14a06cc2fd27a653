"""A token bucket that caps how many extra attempts (retries, hedges) run."""

from __future__ import annotations

from typing import final

import attrs
import trio

from .._retry import BudgetKind
from .._validate import check_enum, check_rate


@final
@attrs.frozen(kw_only=True)
class TokenBucketStatistics:
    """A snapshot of a TokenBucketBudget.

    Attributes:
        capacity: Tokens the bucket holds when full.
        refill_per_second: Tokens added per second of trio time.
        tokens: Tokens available now (fractional while refilling).
        retries_granted: Retry groups allowed so far.
        retries_denied: Retry groups denied so far.
        hedges_granted: Hedges allowed so far.
        hedges_denied: Hedges denied so far.
    """

    capacity: float
    refill_per_second: float
    tokens: float
    retries_granted: int
    retries_denied: int
    hedges_granted: int
    hedges_denied: int


@final
class TokenBucketBudget:
    """A Budget that takes one token per extra attempt.

    The bucket starts full and refills continuously on the trio clock
    (:func:`trio.current_time`), up to *capacity*. An attempt is allowed
    when a whole token is available. ``capacity=0`` denies every attempt.
    One bucket may serve both retries and hedges (and several policies);
    use two buckets to budget them separately.

    Args:
        capacity: Tokens when full (a burst allowance), >= 0.
        refill_per_second: Tokens added per second, >= 0.
    """

    __slots__ = ("_capacity", "_denied", "_granted", "_rate", "_tokens", "_updated")

    def __init__(self, capacity: float, refill_per_second: float) -> None:
        self._capacity = check_rate(capacity, "capacity")
        self._rate = check_rate(refill_per_second, "refill_per_second")
        self._tokens = self._capacity
        # Set on first use: a budget may be built before trio.run starts.
        self._updated: float | None = None
        self._granted = dict.fromkeys(BudgetKind, 0)
        self._denied = dict.fromkeys(BudgetKind, 0)

    def __repr__(self) -> str:
        return (
            f"<trio_sagas.TokenBucketBudget capacity={self._capacity!r} "
            f"refill_per_second={self._rate!r}>"
        )

    def _refill(self) -> float:
        now = trio.current_time()
        if self._updated is not None and now > self._updated:
            self._tokens = min(
                self._capacity, self._tokens + (now - self._updated) * self._rate
            )
        self._updated = now
        return self._tokens

    def try_acquire(self, kind: BudgetKind) -> bool:
        """Take one token for an attempt of *kind*; False when none is left."""
        check_enum(kind, BudgetKind, "kind")
        if self._refill() >= 1:
            self._tokens -= 1
            self._granted[kind] += 1
            return True
        self._denied[kind] += 1
        return False

    def statistics(self) -> TokenBucketStatistics:
        """Tokens available now and the decisions made so far.

        Call it from inside :func:`trio.run` (it reads the trio clock), or
        before first use.
        """
        tokens = self._tokens if self._updated is None else self._refill()
        return TokenBucketStatistics(
            capacity=self._capacity,
            refill_per_second=self._rate,
            tokens=tokens,
            retries_granted=self._granted[BudgetKind.RETRY],
            retries_denied=self._denied[BudgetKind.RETRY],
            hedges_granted=self._granted[BudgetKind.HEDGE],
            hedges_denied=self._denied[BudgetKind.HEDGE],
        )
