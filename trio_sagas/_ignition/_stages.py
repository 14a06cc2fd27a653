"""The stages of a STAGED Ignition run and when the next one starts.

The functions act on the run through :class:`StageHost`, the few things
of it they need, so this module does not depend on the run's module.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._events import Emitter
from .._outcome import CancelCause, Outcome, Status
from ._records import StagePolicy, StageStarted
from ._signal import Stage, stop_cause

if TYPE_CHECKING:
    from ._settings import Settings
    from ._signal import Signal


class StageHost(Protocol):
    """What the stage functions need of the run."""

    settings: Settings
    emit: Emitter
    stages: list[Stage]
    stopped: CancelCause | None
    closed: bool

    def spawn(self, sig: Signal) -> None: ...

    def stop(self, cause: CancelCause) -> None: ...

    def record(self, sig: Signal, outcome: Outcome[Any]) -> bool: ...


def build_stages(signals: list[Signal], threshold: float) -> list[Stage]:
    """The stages of a STAGED run in ascending order, each knowing its signals."""
    by_number: dict[int, Stage] = {}
    stages: list[Stage] = []
    for number in sorted({sig.stage for sig in signals}):
        by_number[number] = Stage(number, len(stages))
        stages.append(by_number[number])
    for sig in signals:
        stage = by_number[sig.stage]
        stage.signals.append(sig)
        sig.stage_state = stage
    for stage in stages:
        # round() first: 0.7 * 10 is 7.000000000000001 in binary.
        stage.needed = max(1, math.ceil(round(threshold * len(stage.signals), 9)))
    return stages


def start_stage(run: StageHost, stage: Stage) -> None:
    """Start *stage*: spawn its signals, then see whether it is already decided."""
    stage.started = True
    if run.emit.enabled:
        run.emit(
            StageStarted(
                at=trio.current_time(),
                stage=stage.number,
                names=tuple(s.name for s in stage.signals),
            )
        )
    for sig in stage.signals:
        run.spawn(sig)
    check_stage(run, stage)


def check_stage(run: StageHost, stage: Stage) -> None:
    """Act on *stage*'s progress: stop the run, promote it, or skip later stages."""
    if not stage.started or run.stopped is not None or run.closed:
        return
    policy = run.settings.stage_policy
    if policy is StagePolicy.FAIL_FAST and stage.first_bad is not None:
        run.stop(
            stop_cause(
                stage.first_bad,
                f"stage {stage.number} failed under StagePolicy.FAIL_FAST",
            )
        )
        return
    if stage.promoted:
        return
    if policy is StagePolicy.EARLY_PROMOTION:
        met = stage.succeeded >= stage.needed
    elif stage.decided < len(stage.signals):
        return
    else:
        met = policy is StagePolicy.BEST_EFFORT or stage.first_bad is None
    if met:
        stage.promoted = True
        stage.promoted_at = trio.current_time()
        if stage.position + 1 < len(run.stages):
            start_stage(run, run.stages[stage.position + 1])
    elif stage.decided == len(stage.signals):
        assert stage.first_bad is not None
        cause = stop_cause(
            stage.first_bad,
            f"stage {stage.number} did not meet StagePolicy.{policy.name}",
        )
        for later in run.stages[stage.position + 1 :]:
            for sig in later.signals:
                if sig.outcome is None:
                    run.record(sig, sig.unstarted(Status.SKIPPED, cause))
