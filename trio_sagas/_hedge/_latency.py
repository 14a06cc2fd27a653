"""A bounded window of recent latencies with O(1) inserts and quick quantiles.

The window keeps the last ``size`` samples in a ring buffer and counts them
in a log-linear histogram (as HdrHistogram and Finagle's windowed percentile
histogram do): each power of two is split into 64 equal sub-buckets, so a
quantile is reported to within 1/64 (1.6 %) *above* the true sample value,
never below it: a latency trigger errs toward hedging slightly later, never
toward hedging more often than its percentile promises.
Adding a sample is a few integer updates, whatever the window size; a
quantile scans at most 40 coarse and 64 fine counters.
"""

from __future__ import annotations

import math
from array import array
from typing import final

from .._validate import check_duration, check_fraction, check_int

_SUB_BITS = 6
_SUB = 1 << _SUB_BITS
_MIN_EXP = -20  # 2**-20 s ~ 1 microsecond: anything faster counts as 0
_MAX_EXP = 20  # 2**20 s ~ 12 days: anything slower lands in the top bucket
_COARSE = _MAX_EXP - _MIN_EXP
_TOP = _COARSE * _SUB - 1
_FLOOR = math.ldexp(1.0, _MIN_EXP)
_UNDERFLOW = -1
_MAX_SIZE = 2**31 - 1


def _bucket(seconds: float) -> int:
    if seconds < _FLOOR:
        return _UNDERFLOW
    mantissa, exponent = math.frexp(seconds)  # seconds = mantissa * 2**exponent
    coarse = exponent - 1 - _MIN_EXP
    if coarse >= _COARSE:
        return _TOP
    bucket = (coarse << _SUB_BITS) + int((mantissa * 2.0 - 1.0) * _SUB)
    # Buckets are (lower, upper]: a value on an edge belongs below it, so
    # the upper edge reported for it is the value itself.
    if bucket and _lower_edge(bucket) == seconds:
        bucket -= 1
    return bucket


def _lower_edge(bucket: int) -> float:
    coarse, fine = divmod(bucket, _SUB)
    return math.ldexp(1.0 + fine / _SUB, coarse + _MIN_EXP)


def _upper_edge(bucket: int) -> float:
    return _lower_edge(bucket + 1)


@final
class LatencyWindow:
    """The last *size* latency samples of one call name, for hedge triggers.

    An :class:`~trio_sagas.Executor` keeps one window per call name and
    passes it to triggers as :attr:`HedgeState.latency`. Triggers only read
    it; the executor adds the samples.

    Args:
        size: How many recent samples the window holds (>= 1).
    """

    __slots__ = ("_coarse", "_count", "_fine", "_pos", "_ring", "_size", "_underflow")

    def __init__(self, *, size: int = 1000) -> None:
        self._size = check_int(size, "size", minimum=1)
        if size > _MAX_SIZE:
            raise ValueError(f"size must be <= {_MAX_SIZE}, got {size!r}")
        # Compact arrays, not lists: an executor may keep many windows, and
        # a list of 2,560 counters alone is 20 KiB (these are 2 and 10 KiB;
        # a 32-bit counter holds any count up to the size).
        self._ring = array("h")  # bucket numbers fit in 16 bits
        self._pos = 0
        self._count = 0
        self._underflow = 0
        self._coarse = array("i", bytes(4 * _COARSE))
        self._fine = array("i", bytes(4 * _COARSE * _SUB))

    def __repr__(self) -> str:
        return f"<trio_sagas.LatencyWindow {self._count}/{self._size} samples>"

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        """How many samples the window holds at most."""
        return self._size

    def add(self, seconds: float) -> None:
        """Record one latency; the oldest sample drops out of a full window.

        Raises:
            TypeError: *seconds* is not a number.
            ValueError: *seconds* is negative, NaN or infinite.
        """
        if seconds.__class__ is not float or not 0.0 <= seconds < math.inf:
            seconds = check_duration(seconds, "seconds")
        bucket = _bucket(seconds)
        if self._count == self._size:
            self._forget(self._ring[self._pos])
            self._ring[self._pos] = bucket
            self._pos = (self._pos + 1) % self._size
        else:
            self._ring.append(bucket)
            self._count += 1
        if bucket == _UNDERFLOW:
            self._underflow += 1
        else:
            self._fine[bucket] += 1
            self._coarse[bucket >> _SUB_BITS] += 1

    def _forget(self, bucket: int) -> None:
        if bucket == _UNDERFLOW:
            self._underflow -= 1
        else:
            self._fine[bucket] -= 1
            self._coarse[bucket >> _SUB_BITS] -= 1

    def quantile(self, fraction: float) -> float | None:
        """The nearest-rank *fraction* quantile of the window, or None if empty.

        The result is the upper edge of the histogram bucket holding that
        sample: exact for values like 0.25 or 0.75 (at most seven
        significant binary digits), otherwise at most 1.6 % above the
        sample, never below. Samples under about a microsecond count as 0.

        Raises:
            ValueError: *fraction* is not in [0, 1].
        """
        fraction = check_fraction(fraction, "fraction")
        if not self._count:
            return None
        # round() first so that 0.95 * 100 is rank 95, not 95.00000000000001
        rank = max(1, math.ceil(round(fraction * self._count, 9)))
        if rank <= self._underflow:
            return 0.0
        rank -= self._underflow
        coarse_counts = self._coarse
        for coarse in range(_COARSE):
            here = coarse_counts[coarse]
            if rank > here:
                rank -= here
                continue
            base = coarse << _SUB_BITS
            fine_counts = self._fine
            for bucket in range(base, base + _SUB):
                rank -= fine_counts[bucket]
                if rank <= 0:
                    return _upper_edge(bucket)
        raise AssertionError("unreachable: histogram counts disagree with the window")
