"""Configuration enums, result records and observer events of the Ignition coordinator."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, final

import attrs

from .._events import Event
from .._outcome import CancelCause, Outcome, Status


@final
class ExecutionMode(enum.Enum):
    """How an Ignition schedules its signals."""

    PARALLEL = "parallel"
    """Every signal starts at once (bounded by ``max_parallelism``)."""
    SEQUENTIAL = "sequential"
    """One signal at a time, in the order they were added."""
    DEPENDENCY_AWARE = "dependency_aware"
    """A signal starts once every signal it ``depends_on`` succeeded."""
    STAGED = "staged"
    """Stages in ascending order; signals of one stage run in parallel and
    ``stage_policy`` decides when the next stage starts."""


@final
class IgnitionPolicy(enum.Enum):
    """Whether the run goes on after a signal that ran has finished.

    Instead of a member, :class:`Ignition` also takes a sync callable
    ``policy(finished: Outcome, results: Mapping[str, Outcome]) -> bool``
    (True: continue).
    """

    FAIL_FAST = "fail_fast"
    """Stop at the first signal that did not succeed."""
    BEST_EFFORT = "best_effort"
    """Never stop: run everything that can run."""
    CONTINUE_ON_TIMEOUT = "continue_on_timeout"
    """Go on past timeouts, stop at any other unsuccessful outcome."""


PolicyCallable: TypeAlias = Callable[[Outcome[Any], Mapping[str, Outcome[Any]]], bool]
"""A custom policy: ``policy(finished, results) -> bool`` (True: continue)."""


@final
class StagePolicy(enum.Enum):
    """When the next stage of an ExecutionMode.STAGED run starts."""

    ALL_MUST_SUCCEED = "all_must_succeed"
    """Once the stage is over and every signal of it succeeded."""
    BEST_EFFORT = "best_effort"
    """Once the stage is over, whatever its outcomes."""
    FAIL_FAST = "fail_fast"
    """Like ALL_MUST_SUCCEED, but the first unsuccessful signal of the stage
    stops the run at once (the rest of the stage is cancelled)."""
    EARLY_PROMOTION = "early_promotion"
    """As soon as ``early_promotion_threshold`` of the stage's signals
    succeeded, while the rest of the stage keeps running."""


@final
@attrs.frozen(kw_only=True)
class StageResult:
    """What one stage of a STAGED run did.

    Attributes:
        stage: The stage number.
        outcomes: The outcomes of the stage's signals, in the order added.
        promoted: Whether the stage met its :class:`StagePolicy`, so the
            next stage started (for the last stage: would have started).
        promoted_at: Trio clock time the stage met its policy, or None.
    """

    stage: int
    outcomes: Mapping[str, Outcome[Any]] = attrs.field(hash=False)
    promoted: bool
    promoted_at: float | None = None


_ORDER = tuple(Status)


def _duration(outcome: Outcome[Any]) -> str:
    return "-" if outcome.duration is None else f"{outcome.duration:.3f}s"


def _detail(outcome: Outcome[Any]) -> str:
    if outcome.status is Status.FAILED and outcome.error is not None:
        return f"{type(outcome.error).__name__}: {outcome.error}"
    if outcome.cause is not None:
        return outcome.cause.describe()
    return ""


@final
@attrs.frozen(kw_only=True)
class IgnitionResult:
    """Everything one Ignition.run() decided.

    ``str(result)`` is :meth:`summary`, the table an operator prints at
    startup.

    Attributes:
        outcomes: One :class:`~trio_sagas.Outcome` per signal, by name, in the
            order the signals were added.
        timed_out: Whether the global timeout fired.
        started_at: Trio clock time the run started.
        finished_at: Trio clock time the run decided its last outcome.
        stages: One :class:`StageResult` per stage, in stage order, for a
            STAGED run; empty for the other modes.
    """

    outcomes: Mapping[str, Outcome[Any]] = attrs.field(hash=False)
    timed_out: bool
    started_at: float
    finished_at: float
    stages: tuple[StageResult, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every signal succeeded (an empty run is ok)."""
        return all(o.ok for o in self.outcomes.values())

    @property
    def duration(self) -> float:
        """Seconds from the start of the run to its last decision."""
        return self.finished_at - self.started_at

    def counts(self) -> Mapping[Status, int]:
        """How many signals ended with each status (every status listed)."""
        counts = dict.fromkeys(_ORDER, 0)
        for outcome in self.outcomes.values():
            counts[outcome.status] += 1
        return counts

    def summary(self) -> str:
        """A readable table: one line per signal with status, duration and cause."""
        verdict = "ok" if self.ok else "FAILED"
        if self.timed_out:
            verdict += " (global timeout)"
        tally = ", ".join(
            f"{count} {status.value.replace('_', ' ')}"
            for status, count in self.counts().items()
            if count
        )
        lines = [f"ignition {verdict} in {self.duration:.3f}s: {tally or 'no signals'}"]
        width = max((len(name) for name in self.outcomes), default=0)

        def row(outcome: Outcome[Any], indent: str) -> str:
            text = (
                f"{indent}{outcome.name:<{width}}  {outcome.status.value:<9}  "
                f"{_duration(outcome):>8}"
            )
            detail = _detail(outcome)
            return f"{text}  {detail}" if detail else text

        if self.stages:
            for stage in self.stages:
                state = (
                    f"promoted after {stage.promoted_at - self.started_at:.3f}s"
                    if stage.promoted and stage.promoted_at is not None
                    else "not promoted"
                )
                lines.append(f"  stage {stage.stage}: {state}")
                lines.extend(row(o, "    ") for o in stage.outcomes.values())
        else:
            lines.extend(row(o, "  ") for o in self.outcomes.values())
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.summary()


@final
@attrs.frozen(kw_only=True)
class SignalStarted(Event):
    """A signal started: its task was spawned and calls its function in this turn.

    Signals started at the same moment are reported in a deterministic order
    (the order they were added, or became ready), and their ``started_at`` is
    this event's ``at``.

    Attributes:
        name: The signal.
        stage: Its stage number (0 outside STAGED mode).
    """

    name: str
    stage: int


@final
@attrs.frozen(kw_only=True)
class SignalCompleted(Event):
    """A signal's outcome was decided (it may never have started).

    Attributes:
        name: The signal.
        status: How it ended.
        cause: Why it was cancelled, timed out or skipped, if it was.
        outcome: The full outcome.
    """

    name: str
    status: Status
    cause: CancelCause | None
    outcome: Outcome[Any]


@final
@attrs.frozen(kw_only=True)
class StageStarted(Event):
    """A stage of a STAGED run started.

    Attributes:
        stage: The stage number.
        names: Its signals, in the order added.
    """

    stage: int
    names: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class GlobalTimeoutReached(Event):
    """The global timeout fired.

    Attributes:
        pending: The signals whose outcome was still open, now TIMED_OUT.
    """

    pending: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class IgnitionCompleted(Event):
    """The run decided every outcome and is about to return.

    Attributes:
        result: What :meth:`Ignition.run` returns.
    """

    result: IgnitionResult
