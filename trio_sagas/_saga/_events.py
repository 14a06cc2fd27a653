"""Saga events, in the saga event model's exact order (plus Chorus and cancel events).

Every event carries the run id, a sequence number (0, 1, 2, … per run) and
the trio-clock time. ``step``/``scene`` fields are ``/``-joined paths from the
top scene, e.g. ``"process-order/notify/email"``.

The records are frozen but not slotted: a runner builds two or more per step,
and attrs builds a dict-based frozen record in half the time of a slotted one
(it writes ``__dict__`` instead of calling ``object.__setattr__`` per field).
"""

from __future__ import annotations

from typing import final

import attrs

from .._events import Event
from .._outcome import CancelCause, Status


@attrs.frozen(kw_only=True, slots=False)
class SagaEvent(Event):
    """Base of the saga events.

    Attributes:
        run_id: The run this event belongs to.
        seq: Position in the run's event stream, from 0.
    """

    run_id: str
    seq: int


@final
@attrs.frozen(kw_only=True, slots=False)
class SceneStarted(SagaEvent):
    """A scene began."""

    scene: str
    saga: bool


@final
@attrs.frozen(kw_only=True, slots=False)
class SceneCompleted(SagaEvent):
    """Every step of the scene completed."""

    scene: str
    duration: float


@final
@attrs.frozen(kw_only=True, slots=False)
class SceneFailed(SagaEvent):
    """A step of the scene failed, timed out or was cancelled.

    Attributes:
        failed_at_step: Index of the failing step within this scene.
        step: Path of the failing step.
        status: FAILED, TIMED_OUT or CANCELLED.
        error: The step's error (None when cancelled).
        cause: Why, when timed out or cancelled.
    """

    scene: str
    failed_at_step: int
    step: str
    status: Status
    error: BaseException | None
    cause: CancelCause | None
    duration: float


@final
@attrs.frozen(kw_only=True, slots=False)
class ActStarted(SagaEvent):
    """An act's ``run`` is about to be called (journaled before it runs)."""

    step: str


@final
@attrs.frozen(kw_only=True, slots=False)
class ActCompleted(SagaEvent):
    """An act's ``run`` returned.

    Attributes:
        duration: Seconds the act's own work took (``run``, its tries and
            backoffs), from the moment its intent was durable.
        journal_wait: Seconds the act waited for the journal before
            ``run`` could start (its intent's write); 0 without a journal.
    """

    step: str
    duration: float
    attempts: int
    journal_wait: float = 0.0


@final
@attrs.frozen(kw_only=True, slots=False)
class ActFailed(SagaEvent):
    """An act's ``run`` failed or timed out on its last try."""

    step: str
    status: Status
    error: BaseException
    duration: float
    attempts: int


@final
@attrs.frozen(kw_only=True, slots=False)
class ActCancelled(SagaEvent):
    """An act was cancelled while running (a sibling failed, a timeout, the caller)."""

    step: str
    cause: CancelCause
    duration: float


@final
@attrs.frozen(kw_only=True, slots=False)
class ChorusStarted(SagaEvent):
    """A chorus began its branches."""

    step: str
    branches: tuple[str, ...]


@final
@attrs.frozen(kw_only=True, slots=False)
class ChorusCompleted(SagaEvent):
    """A chorus succeeded (with PARTIAL_SUCCESS, some branches may have failed)."""

    step: str
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    duration: float


@final
@attrs.frozen(kw_only=True, slots=False)
class ChorusFailed(SagaEvent):
    """A chorus failed or timed out."""

    step: str
    status: Status
    error: BaseException | None
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    duration: float


@final
@attrs.frozen(kw_only=True, slots=False)
class CompensationStarted(SagaEvent):
    """A saga scene begins rolling back.

    Attributes:
        scene: The saga scene compensating (a nested saga has its own).
        steps_to_undo: Paths of its steps to undo, in the order they will be.
    """

    scene: str
    steps_to_undo: tuple[str, ...]


@final
@attrs.frozen(kw_only=True, slots=False)
class CompensationStepStarted(SagaEvent):
    """An act's undo is about to run (journaled before it runs)."""

    step: str


@final
@attrs.frozen(kw_only=True, slots=False)
class CompensationStepCompleted(SagaEvent):
    """An act's undo succeeded."""

    step: str
    duration: float
    attempts: int


@final
@attrs.frozen(kw_only=True, slots=False)
class CompensationStepFailed(SagaEvent):
    """An act's undo failed on its last try (the rollback goes on)."""

    step: str
    error: BaseException
    duration: float
    attempts: int


@final
@attrs.frozen(kw_only=True, slots=False)
class CompensationRegistered(SagaEvent):
    """A journaled run's act registered a durable undo.

    See :func:`durable_undo`.

    Attributes:
        step: The act.
        index: The undo's number within the act (0, 1, ...).
        undo: The name it was registered under with :func:`durable_undo`.
        args: Its JSON arguments.
        label: The ``name=`` given at registration, for reports (or None).
    """

    step: str
    index: int
    undo: str
    args: tuple[object, ...]
    label: str | None


@final
@attrs.frozen(kw_only=True, slots=False)
class CompensationActionCompleted(SagaEvent):
    """One durable undo an act registered succeeded: it never runs again."""

    step: str
    index: int


@final
@attrs.frozen(kw_only=True, slots=False)
class JournalWritten(Event):
    """One journal write of a run, reported to observers.

    It is never journaled itself and is not among the run's events
    (``SagaResult.events``): not a :class:`SagaEvent`.

    Attributes:
        run_id: The run written.
        seq: The last event the write made durable.
        entries: How many events the write carried (its batch).
        wait: Seconds the write waited for the run's previous write.
        commit: Seconds the journal's ``append`` took (its commit).
    """

    run_id: str
    seq: int
    entries: int
    wait: float
    commit: float


@final
@attrs.frozen(kw_only=True, slots=False)
class CompensationCompleted(SagaEvent):
    """A saga scene finished rolling back; ``ok`` is False if any undo failed."""

    scene: str
    ok: bool
    duration: float


@final
@attrs.frozen(kw_only=True, slots=False)
class RunResumed(SagaEvent):
    """A recovery took over a run whose process died, and goes on with it.

    Attributes:
        scene: The run's top scene.
        previous_owner: The worker that held the run before (None when the
            claim did not say, e.g. under :func:`run_worker` on a run's first
            takeover).
        owner: The worker going on with it.
        restored: Paths of the acts that completed before, in completion
            order: not run again, their results restored.
        uncertain: Paths of the acts that had started and not ended: run
            again (compensated first if their act says so).
    """

    scene: str
    previous_owner: str | None
    owner: str
    restored: tuple[str, ...]
    uncertain: tuple[str, ...]
