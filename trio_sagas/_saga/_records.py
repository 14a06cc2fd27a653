"""What a run keeps in memory: its step records, step results and the SagaResult.

Every Scene and Chorus owns a list of the records of its sub-steps, appended
*as each sub-step completes* (or, for a failing or cancelled sub-step, as it
ends with partial progress). The list is in the parent's hands before the
sub-step starts, so whatever way a step ends -- a failure returned as a value,
or trio.Cancelled propagating -- the enclosing saga holds exactly the
completed work, in completion order. Replay (:mod:`._replay`) rebuilds the
same records from a journal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, final

import attrs

from .._compensation import CompensationReport, SagaError
from .._context import StepContext
from .._outcome import CancelCause, Status
from ._events import ActCompleted, ActStarted, SagaEvent, SceneCompleted, SceneStarted
from ._model import Act, Chorus, Scene

RawEvent = tuple[Any, ...]
"""An event not built yet: ``(type, time, fields)``. The events of every act
and scene are flatter, with no fields dict, and an act's without its type:
``(time, step)`` is an ActStarted, ``(time, step, duration, attempts)`` an
ActCompleted, ``(started, step, ended)`` both (one try, nothing recorded
between them), as does a :data:`DoneAct` ``(started, step, ended, index,
value)`` (the act's rollback record, kept once for both uses),
``(SceneStarted, time, scene, saga)`` and
``(SceneCompleted, time, scene, duration)``. That saves ~0.3 us per step, and
a tuple of plain values only is untracked by the garbage collector after its
first pass, so a long run's events add nothing to later collections
(per-step cost stays flat)."""


def _build(run_id: str, seq: int, raw: RawEvent) -> Iterator[SagaEvent]:
    head = raw[0]
    if isinstance(head, type):
        if len(raw) == 3:
            yield head(run_id=run_id, seq=seq, at=raw[1], **raw[2])
        elif head is SceneStarted:
            yield SceneStarted(
                run_id=run_id, seq=seq, at=raw[1], scene=raw[2], saga=raw[3]
            )
        else:
            yield SceneCompleted(
                run_id=run_id, seq=seq, at=raw[1], scene=raw[2], duration=raw[3]
            )
    elif len(raw) == 2:
        yield ActStarted(run_id=run_id, seq=seq, at=head, step=raw[1])
    elif len(raw) != 4:  # 3, or 5: a DoneAct
        started, step, ended = raw[:3]
        yield ActStarted(run_id=run_id, seq=seq, at=started, step=step)
        yield ActCompleted(
            run_id=run_id,
            seq=seq + 1,
            at=ended,
            step=step,
            duration=ended - started,
            attempts=1,
        )
    else:
        at, step, duration, attempts = raw
        yield ActCompleted(
            run_id=run_id,
            seq=seq,
            at=at,
            step=step,
            duration=duration,
            attempts=attempts,
        )


class EventLog:
    """A run's events, recorded raw and built on first read.

    Building an attrs record costs as much as the rest of a step's
    bookkeeping; a run nobody observed need not pay for records nobody reads.
    """

    __slots__ = ("_built", "_raw", "_run_id")

    def __init__(self, run_id: str, raw: list[RawEvent]) -> None:
        self._run_id = run_id
        self._raw = raw
        self._built: tuple[SagaEvent, ...] | None = None

    def build(self) -> tuple[SagaEvent, ...]:
        if self._built is None:
            run_id = self._run_id
            events: list[SagaEvent] = []
            for raw in self._raw:
                events.extend(_build(run_id, len(events), raw))
            self._built = tuple(events)
            self._raw = []
        return self._built


def _as_tuple(log: tuple[SagaEvent, ...] | EventLog) -> tuple[SagaEvent, ...]:
    return log.build() if isinstance(log, EventLog) else log


@final
@attrs.frozen(weakref_slot=False)  # see new_result()
class SagaResult:
    """How a saga run ended.

    Attributes:
        run_id: The run's id.
        status: SUCCEEDED, FAILED or TIMED_OUT.
        state: The state object, as the steps (and undos) left it.
        error: The failing step's error (a :exc:`TimeoutError` if it timed out).
        failed_step: Path of the innermost failing step.
        compensation: Every undo action's outcome, if a rollback ran.
        events: The run's events, in order (a tuple, built on first access
            when nobody observed the run: most callers never read it).
        journal_wait: Seconds the run's steps and undos waited for the
            journal (their intents' writes) in this call; 0 without one.
            Step durations (``ActCompleted.duration``) exclude it.
    """

    run_id: str
    status: Status
    state: Any
    error: BaseException | None = None
    failed_step: str | None = None
    compensation: CompensationReport | None = None
    _events: tuple[SagaEvent, ...] | EventLog = attrs.field(
        default=(),
        alias="events",
        eq=lambda log: _as_tuple(log),
        repr=lambda log: repr(_as_tuple(log)),
    )
    journal_wait: float = attrs.field(default=0.0, eq=False)

    @property
    def events(self) -> tuple[SagaEvent, ...]:
        """The run's events, in order."""
        return _as_tuple(self._events)

    @property
    def ok(self) -> bool:
        """Whether every step completed."""
        return self.status is Status.SUCCEEDED

    def unwrap(self) -> Any:
        """Return the state, or raise what went wrong.

        Raises:
            SagaError: a step failed and its rollback failed too.
            Exception: the failing step's error, when the rollback (if any)
                succeeded.
        """
        if self.ok:
            return self.state
        assert self.error is not None
        if self.compensation is not None and not self.compensation.ok:
            original = (
                self.error
                if isinstance(self.error, Exception)
                else RuntimeError(repr(self.error))
            )
            errors = [
                e if isinstance(e, Exception) else RuntimeError(repr(e))
                for e in self.compensation.errors
            ]
            raise SagaError(original, errors, report=self.compensation)
        raise self.error


class _ResultSlots:
    """SagaResult's slots, without its frozen __setattr__: what new_result fills."""

    __slots__ = SagaResult.__slots__  # type: ignore[attr-defined]
    run_id: str
    status: Status
    state: Any
    error: BaseException | None
    failed_step: str | None
    compensation: CompensationReport | None
    _events: tuple[SagaEvent, ...] | EventLog
    journal_wait: float


def new_result(
    run_id: str,
    status: Status,
    state: Any,
    error: BaseException | None,
    failed_step: str | None,
    compensation: CompensationReport | None,
    events: tuple[SagaEvent, ...] | EventLog,
    journal_wait: float = 0.0,
) -> SagaResult:
    """``SagaResult(...)`` for a runner, once per run.

    attrs' frozen __init__ sets each field through object.__setattr__ (~2 us
    in all); plain stores on a class with the same slots, then a __class__
    assignment, cost ~0.5 us: ~0.15 us per step of a 10-step run. (CPython
    refuses that assignment when the class has a __weakref__ slot.)
    """
    result = _ResultSlots()
    result.run_id = run_id
    result.status = status
    result.state = state
    result.error = error
    result.failed_step = failed_step
    result.compensation = compensation
    result._events = events
    result.journal_wait = journal_wait
    result.__class__ = SagaResult  # type: ignore[assignment]
    return result  # type: ignore[return-value]


class ActRecord:
    """One act that ran: its context (registered undos) and, once done, its value.

    ``uncertain``: in a durable run, its ``run`` was interrupted (cancelled)
    after it began, so its effect may have happened; unless the act says
    ``uncertain="skip"`` its ``compensate`` runs on rollback (``ctx.result``
    None), as after a crash. ``effect``: it failed, but says its effect may
    have happened (``Act.compensate_on_failure``).
    """

    __slots__ = ("act", "ctx", "done", "effect", "path", "uncertain", "value")

    def __init__(self, act: Act, path: str, ctx: StepContext) -> None:
        self.act = act
        self.path = path
        self.ctx = ctx
        self.done = False
        # Failed, but its effect may have happened (Act.compensate_on_failure).
        self.effect = False
        self.uncertain = False
        self.value: object = None

    def has_undo(self) -> bool:
        # Not ctx.compensation: that would create the scope most acts never use.
        return (
            (self.done or self.effect or self.uncertain)
            and self.act.compensate is not None
        ) or self.ctx._pending_compensation() is not None


class GroupRecord:
    """A Scene or Chorus that ran: its sub-steps' records in completion order."""

    __slots__ = ("children", "compensated", "done", "path", "step")

    def __init__(self, step: Scene | Chorus, path: str) -> None:
        self.step = step
        self.path = path
        self.children: list[Record] = []
        self.done = False
        self.compensated = False

    def has_undo(self) -> bool:
        return not self.compensated and any(map(has_undo, children_of(self)))


DoneAct = tuple[float, str, float, int, Any]
"""A completed act of a Scene, as the in-memory fast path keeps it:
``(started, path, ended, index of the act in the scene's steps, what run
returned)`` -- outside a chorus the very tuple of its raw events (see
:data:`RawEvent`), so one tuple serves both.

Kept only for an act with a ``compensate`` that registered no undo of its own
(else an :class:`ActRecord` keeps its context), so it always has an undo.
Against an ActRecord and the step's context, it saves ~0.15 us per step, and
a tuple of plain values is untracked by the garbage collector after its first
pass: a long saga's records add nothing to later collections (a 50,000-step
run's per-step cost stays near a 1,000-step one's).
"""

Record = ActRecord | GroupRecord
"""A record as replay (:mod:`._replay`) builds them: never a DoneAct."""

Child = ActRecord | GroupRecord | DoneAct
"""A record in a :class:`GroupRecord`'s children, as the runner sees them."""


def children_of(group: GroupRecord) -> list[Child]:
    """*group*'s children, DoneActs included (only the runner makes those:
    a group that replay built holds records only, as its ``children`` says)."""
    return group.children  # type: ignore[return-value]


def is_done(record: Child) -> bool:
    """Whether *record*'s step completed."""
    return isinstance(record, tuple) or record.done


def has_undo(record: Child) -> bool:
    """Whether a rollback has anything to undo in *record*."""
    return isinstance(record, tuple) or record.has_undo()


def path_of(record: Child) -> str:
    """The path of *record*'s step."""
    return record[1] if isinstance(record, tuple) else record.path


@attrs.frozen
class StepResult:
    """How one step ended, as the runner passes it up (failures are values)."""

    status: Status
    error: BaseException | None = None
    cause: CancelCause | None = None
    failed_step: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED


OK = StepResult(Status.SUCCEEDED)
"""The one result of every step that succeeded (compared by identity)."""
