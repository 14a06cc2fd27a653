"""Hedge triggers: when a retry group launches its next parallel attempt.

A trigger is consulted by the executor right after a group's primary
attempt starts and then whenever the trigger asked to be consulted again
(never sooner than :data:`CHECK_FLOOR`). Each consultation launches at most
one hedge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import ClassVar, Protocol, final, runtime_checkable

import attrs

from .._util import documented_constant
from .._validate import (
    check_fraction,
    check_int,
    check_label,
    check_str,
    check_timeout,
    check_trigger,
)
from ._latency import LatencyWindow

CHECK_FLOOR = documented_constant(
    0.001,
    "CHECK_FLOOR",
    """Seconds the executor waits at least between two trigger consultations (0.001).

    It keeps a trigger that keeps answering "check again now" without launching
    anything from spinning the event loop. A trigger asking for a later check is
    consulted exactly then; one that just launched a hedge and says the next is
    due now too is consulted again at once (so ``HedgePolicy(delay=0)`` launches
    every attempt of a group at the same instant).
    """,
)


@final
@attrs.frozen(kw_only=True)
class HedgeState:
    """What a trigger knows when it is consulted.

    Attributes:
        name: The call's name (``Executor.run(name=...)``).
        call_started_at: Trio time the call started.
        group_started_at: Trio time this retry group started (its primary
            attempt launched).
        now: Trio time of this consultation.
        retry_index: This group's index (0 for the first group).
        attempts_launched: Hedge indices used so far in this group, the
            primary included; a hedge the budget denied counts, so a
            schedule stays anchored at the group start.
        in_flight: Attempts of this group still running.
        max_hedges: Attempts allowed per group (the primary included).
        delay: The policy's fixed hedge delay.
        latency: Recent latencies of calls with this name on this executor.
    """

    name: str
    call_started_at: float
    group_started_at: float
    now: float
    retry_index: int
    attempts_launched: int
    in_flight: int
    max_hedges: int
    delay: float
    latency: LatencyWindow

    @property
    def elapsed(self) -> float:
        """Seconds since this group started."""
        return self.now - self.group_started_at


@runtime_checkable
class HedgeTrigger(Protocol):
    """Decides when to launch the next hedge of a retry group.

    ``should_spawn_hedge`` must be quick and must not block. It returns
    ``(spawn, next_check_in)``: whether to launch one hedge now, and in how
    many seconds to be consulted again (``math.inf``: not before something
    else changes). An exception it raises aborts the call (reason
    ``trigger_error``).

    A trigger that never reads :attr:`HedgeState.latency` may say so with a
    class attribute ``uses_latency = False`` (as :class:`FixedDelayTrigger`
    does): the executor then keeps no latency window for its calls. Without
    it, the executor assumes the trigger reads the window.
    """

    def should_spawn_hedge(self, state: HedgeState) -> tuple[bool, float]:
        """Whether to launch a hedge now, and when to ask again."""
        ...


def _check_delay(value: object) -> float:
    seconds = check_timeout(value, "delay", allow_none=False)
    assert seconds is not None
    return seconds


def _due_in(due: float, now: float) -> float:
    """Seconds from *now* to *due* such that ``now + result >= due`` holds in floats.

    Without this, a rounding error could wake the executor one ulp early,
    find the hedge not yet due, and launch it a whole :data:`CHECK_FLOOR` late.
    """
    wait = due - now
    if now + wait < due:
        wait = math.nextafter(wait, math.inf)
    return wait


def _schedule(state: HedgeState, interval: float) -> tuple[bool, float]:
    # Hedge k (k = attempts_launched) is due at group_start + k * interval.
    due = state.group_started_at + state.attempts_launched * interval
    if state.now >= due:
        # A late check (overdue by more than one interval) asks to be
        # consulted again at once rather than with a negative wait.
        return True, max(0.0, _due_in(due + interval, state.now))
    return False, _due_in(due, state.now)


@final
@attrs.frozen
class FixedDelayTrigger:
    """Hedge ``k`` of a group launches at ``group_start + k * delay``.

    The schedule is absolute, so late consultations never make it drift.

    Args:
        delay: Seconds between hedge launches (>= 0; ``math.inf`` never
            hedges).
    """

    uses_latency: ClassVar[bool] = False
    delay: float = attrs.field(converter=_check_delay)

    def should_spawn_hedge(self, state: HedgeState) -> tuple[bool, float]:
        """Spawn when the next slot of the fixed schedule has come."""
        return _schedule(state, self.delay)


def _check_percentile(value: object) -> float:
    return check_fraction(value, "percentile", allow_zero=False)


def _check_min_samples(value: object) -> int:
    return check_int(value, "min_samples", minimum=1)


def _check_fallback_delay(value: object) -> float | None:
    return check_timeout(value, "fallback_delay")


@final
@attrs.frozen(kw_only=True)
class LatencyTrigger:
    """Hedge once an attempt is slower than a percentile of recent latencies.

    The threshold is the *percentile* of :attr:`HedgeState.latency` (the
    executor's window for the call's name). Hedge ``k`` of a group launches
    at ``group_start + k * threshold``, and at most one hedge launches per
    consultation, so a late check never bursts several hedges at once.

    Until the window holds *min_samples* samples the trigger does not trust
    it and hedges on a fixed delay instead: *fallback_delay*, or the
    policy's ``delay`` when that is None (``math.inf`` disables hedging
    during warm-up).

    Args:
        percentile: A fraction in (0, 1]: 0.95 hedges the slowest 5 %.
        min_samples: Samples needed before the percentile is used.
        fallback_delay: Fixed delay during warm-up; None uses the policy's.
    """

    uses_latency: ClassVar[bool] = True
    percentile: float = attrs.field(default=0.95, converter=_check_percentile)
    min_samples: int = attrs.field(default=50, converter=_check_min_samples)
    fallback_delay: float | None = attrs.field(
        default=None, converter=_check_fallback_delay
    )

    def threshold(self, state: HedgeState) -> float:
        """Seconds between hedges for this consultation."""
        window = state.latency
        if len(window) >= self.min_samples:
            value = window.quantile(self.percentile)
            if value is not None:
                return value
        return state.delay if self.fallback_delay is None else self.fallback_delay

    def should_spawn_hedge(self, state: HedgeState) -> tuple[bool, float]:
        """Spawn when the attempt has run longer than the threshold."""
        threshold = self.threshold(state)
        spawn, next_check_in = _schedule(state, threshold)
        if spawn:
            # The next hedge comes a full threshold after this one even when
            # this check came late or the threshold shrank: no bursts.
            return True, max(next_check_in, threshold)
        return False, next_check_in


@final
class TriggerRegistry:
    """Named hedge triggers an Executor looks up.

    A :class:`~trio_sagas.HedgePolicy` names its trigger (``trigger="p95"``);
    the executor resolves the name here for every call.

    Args:
        triggers: Initial ``name -> trigger`` entries (a mapping).
    """

    __slots__ = ("_triggers",)

    def __init__(self, triggers: Mapping[str, HedgeTrigger] | None = None) -> None:
        self._triggers: dict[str, HedgeTrigger] = {}
        if triggers is None:
            return
        if not isinstance(triggers, Mapping):
            raise TypeError(
                f"triggers must be a mapping of name to trigger or None, got {triggers!r}"
            )
        for name, trigger in triggers.items():
            self.register(name, trigger)

    def __repr__(self) -> str:
        return f"<trio_sagas.TriggerRegistry {sorted(self._triggers)!r}>"

    def __contains__(self, name: object) -> bool:
        return name in self._triggers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._triggers))

    def __len__(self) -> int:
        return len(self._triggers)

    def register(self, name: str, trigger: HedgeTrigger) -> None:
        """Register *trigger* under *name*.

        Raises:
            TypeError: *trigger* has no ``should_spawn_hedge`` method, or
                *name* is not a string.
            ValueError: *name* is empty or already registered.
        """
        check_label(name, "name")
        check_trigger(trigger)
        if name in self._triggers:
            raise ValueError(f"a trigger named {name!r} is already registered")
        self._triggers[name] = trigger

    def get(self, name: str) -> HedgeTrigger | None:
        """The trigger registered under *name*, or None.

        Raises:
            TypeError: *name* is not a string.
        """
        return self._triggers.get(check_str(name, "name", allow_empty=True))
