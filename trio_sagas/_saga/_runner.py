"""The saga runner: runs a Scene tree, rolls back completed steps on failure.

How the runner knows what to undo: every Scene and Chorus owns a list of the
records of its sub-steps, appended *as each sub-step completes* (or, for a
failing or cancelled sub-step, as it ends with partial progress). The list
is in the parent's hands before the sub-step starts, so whatever way a step
ends — a failure returned as a value, or trio.Cancelled propagating — the
enclosing saga holds exactly the completed work, in completion order.

With a journal (``_durable.py``), the same code runs on a ``_DurableRun``:
``emit`` also queues each event for the journal, and the runner awaits
``flush()`` at the points where the journal must have caught up — before an
act's ``run`` or an undo runs (the intent is durable before the code it
announces), when a Chorus branch ends (its completion must not wait for a
slow sibling), and when the run ends. Every other event rides along with
the next flush, in the same transaction. Without a journal each of those
points costs one attribute test.
"""

from __future__ import annotations

import contextvars
import math
import uuid
from collections.abc import Callable
from typing import Any, final

import attrs
import trio

from .._compensation import (
    DEFAULT_COMPENSATION_TIMEOUT,
    CompensationReport,
    SagaError,
    StepContext,
    run_compensation_action,
)
from .._errgroup import ErrGroup, open_err_group
from .._events import Observer, notify
from .._outcome import CancelCause, CancelReason, Outcome, Status
from .._retry import run_attempts
from .._util import contains_cancellation, is_cancellation
from .._validate import check_label, check_sync_observer
from ._events import (
    ActCancelled,
    ActCompleted,
    ActFailed,
    ActStarted,
    ChorusCompleted,
    ChorusFailed,
    ChorusStarted,
    CompensationCompleted,
    CompensationStarted,
    CompensationStepCompleted,
    CompensationStepFailed,
    CompensationStepStarted,
    SagaEvent,
    SceneCompleted,
    SceneFailed,
    SceneStarted,
)
from ._journal import Journal
from ._model import Act, Chorus, ChorusMode, Scene, Step


@attrs.frozen
class _ChorusFrame:
    """What a task inside a Chorus may ask of it.

    ``why()``: the chorus's own cancel cause (a branch failed, it timed out),
    or None. ``fail(result)``: a failure certain to fail this branch; a
    FAIL_FAST chorus cancels the other branches at once.
    """

    why: Callable[[], CancelCause | None]
    fail: Callable[[_Result], None] | None


# The enclosing choruses, outermost first. Tasks inherit the tuple from the
# task that spawned them, so every branch sees its own chain.
_CHORUSES: contextvars.ContextVar[tuple[_ChorusFrame, ...]] = contextvars.ContextVar(
    "trio_sagas_choruses", default=()
)


class _EventLog:
    """A run's events, recorded as (type, time, fields) and built on first read.

    Building an attrs record costs as much as the rest of a step's
    bookkeeping; a run nobody observed need not pay for records nobody reads.
    """

    __slots__ = ("_built", "_raw", "_run_id")

    def __init__(
        self, run_id: str, raw: list[tuple[type[SagaEvent], float, dict[str, Any]]]
    ) -> None:
        self._run_id = run_id
        self._raw = raw
        self._built: tuple[SagaEvent, ...] | None = None

    def build(self) -> tuple[SagaEvent, ...]:
        if self._built is None:
            run_id = self._run_id
            self._built = tuple(
                event_type(run_id=run_id, seq=seq, at=at, **fields)
                for seq, (event_type, at, fields) in enumerate(self._raw)
            )
            self._raw = []
        return self._built


def _as_tuple(log: tuple[SagaEvent, ...] | _EventLog) -> tuple[SagaEvent, ...]:
    return log.build() if isinstance(log, _EventLog) else log


@final
@attrs.frozen
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
    """

    run_id: str
    status: Status
    state: Any
    error: BaseException | None = None
    failed_step: str | None = None
    compensation: CompensationReport | None = None
    _events: tuple[SagaEvent, ...] | _EventLog = attrs.field(
        default=(),
        alias="events",
        eq=lambda log: _as_tuple(log),
        repr=lambda log: repr(_as_tuple(log)),
    )

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


class _ActRecord:
    __slots__ = ("act", "ctx", "done", "path", "value")

    def __init__(self, act: Act, path: str, ctx: StepContext) -> None:
        self.act = act
        self.path = path
        self.ctx = ctx
        self.done = False
        self.value: object = None

    def has_undo(self) -> bool:
        return (
            self.done and self.act.compensate is not None
        ) or self.ctx.compensation.has_actions


class _GroupRecord:
    __slots__ = ("children", "compensated", "done", "path", "step")

    def __init__(self, step: Scene | Chorus, path: str) -> None:
        self.step = step
        self.path = path
        self.children: list[_Record] = []
        self.done = False
        self.compensated = False

    def has_undo(self) -> bool:
        return not self.compensated and any(c.has_undo() for c in self.children)


_Record = _ActRecord | _GroupRecord


@attrs.frozen
class _Result:
    status: Status
    error: BaseException | None = None
    cause: CancelCause | None = None
    failed_step: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED


_OK = _Result(Status.SUCCEEDED)


class _Run:
    def __init__(
        self, run_id: str, state: Any, deps: Any, observer: Observer | None
    ) -> None:
        self.run_id = run_id
        self.state = state
        self.deps = deps
        self.observer = observer
        self.events: list[SagaEvent] = []
        # Without an observer, events are recorded raw and built on first read.
        self.raw_events: list[tuple[type[SagaEvent], float, dict[str, Any]]] | None = (
            [] if observer is None else None
        )
        self.undo_outcomes: list[Outcome[Any]] = []
        self.rolled_back = False
        self.journal: Any = None  # set by _DurableRun
        self.last_value: object = None
        # The clock's own method: trio.current_time() goes through a
        # KI-protection wrapper that costs as much again on this hot path.
        self.now = trio.lowlevel.current_clock().current_time

    def emit(
        self, event_type: type[SagaEvent], at: float | None = None, **fields: Any
    ) -> None:
        if at is None:
            at = self.now()
        if self.raw_events is not None:
            self.raw_events.append((event_type, at, fields))
            return
        event = event_type(run_id=self.run_id, seq=len(self.events), at=at, **fields)
        self.events.append(event)
        if self.observer is not None:
            notify(self.observer, event)

    async def flush(self, *, check: bool = True) -> None:
        """Make every event so far durable (only a ``_DurableRun`` has a journal).

        Args:
            check: Raise if the journal failed (on the forward path, no more
                user code may run); on rollback paths the undo goes on.
        """

    def check_journal(self) -> None:
        """Raise the journal's failure, if it failed (a ``_DurableRun``)."""

    def cancel_cause(self) -> CancelCause:
        for frame in reversed(_CHORUSES.get()):
            cause = frame.why()
            if cause is not None:
                return cause
        return CancelCause.external()

    def announce_failure(self, result: _Result) -> None:
        """Tell the enclosing FAIL_FAST choruses now, before a long rollback.

        Stops at the first chorus of another mode: it does not cancel its
        branches, and whether it fails is decided later.
        """
        for frame in reversed(_CHORUSES.get()):
            if frame.fail is None:
                return
            frame.fail(result)

    def result(self, result: _Result) -> SagaResult:
        return SagaResult(
            run_id=self.run_id,
            status=result.status,
            state=self.state,
            error=result.error,
            failed_step=result.failed_step,
            compensation=CompensationReport(tuple(self.undo_outcomes))
            if self.rolled_back
            else None,
            events=tuple(self.events)
            if self.raw_events is None
            else _EventLog(self.run_id, self.raw_events),
        )

    # -- forward ------------------------------------------------------------------

    async def step(self, step: Step, path: str, sink: list[_Record]) -> _Result:
        if isinstance(step, Act):
            return await self.act(step, path, sink)
        if isinstance(step, Scene):
            return await self.scene(step, path, sink)
        return await self.chorus(step, path, sink)

    async def act(self, act: Act, path: str, sink: list[_Record]) -> _Result:
        ctx = StepContext._trusted(
            act.name, path=path, deps=self.deps, idempotency_key=f"{self.run_id}/{path}"
        )
        record = _ActRecord(act, path, ctx)
        started = self.now()
        raw = self.raw_events
        if raw is not None:
            raw.append((ActStarted, started, {"step": path}))  # emit(), inlined
        else:
            self.emit(ActStarted, started, step=path)
        try:
            if self.journal is not None:
                await self.flush()  # the intent is durable before run runs
            if act.retry is None and act.timeout is None:
                # The common case, without the per-try cancel scope and record.
                attempts = 1
                try:
                    value = await act.run(ctx, self.state)
                except Exception as exc:
                    status: Status = Status.FAILED
                    error: BaseException | None = exc
                    cause = None
                else:
                    status, error, cause = Status.SUCCEEDED, None, None
            else:
                outcome = await run_attempts(
                    act.run,
                    (ctx, self.state),
                    name=path,
                    retry=act.retry,
                    timeout=math.inf if act.timeout is None else act.timeout,
                    what="act",
                )
                status, value, error, cause = (
                    outcome.status,
                    outcome.value,
                    outcome.error,
                    outcome.cause,
                )
                attempts = len(outcome.attributes["attempts"])  # type: ignore[arg-type]
        except BaseException as exc:
            # A cleanup failure racing the cancel makes a mixed group: the
            # act was still cancelled, for the reason its context knows.
            cause = (
                self.cancel_cause()
                if contains_cancellation(exc)
                else CancelCause.external(repr(exc))
            )
            self.emit(
                ActCancelled, step=path, cause=cause, duration=self.now() - started
            )
            if record.has_undo():
                sink.append(record)  # partial progress, on the failure path
            raise
        ended = self.now()
        duration = ended - started
        if status is Status.SUCCEEDED:
            record.done = True
            record.value = value
            sink.append(record)
            if raw is not None:
                raw.append(
                    (
                        ActCompleted,
                        ended,
                        {"step": path, "duration": duration, "attempts": attempts},
                    )
                )
                return _OK
            if self.journal is not None:
                self.last_value = value  # journaled with ActCompleted
            self.emit(
                ActCompleted, ended, step=path, duration=duration, attempts=attempts
            )
            return _OK
        assert error is not None
        self.emit(
            ActFailed,
            step=path,
            status=status,
            error=error,
            duration=duration,
            attempts=attempts,
        )
        if record.has_undo():
            sink.append(record)
        return _Result(status, error, cause, path)

    async def scene(self, scene: Scene, path: str, sink: list[_Record]) -> _Result:
        record = _GroupRecord(scene, path)
        self.emit(SceneStarted, scene=path, saga=scene.saga)
        started = self.now()
        for index, step in enumerate(scene.steps):
            child = f"{path}/{step.name}"
            try:
                if isinstance(step, Act):
                    result = await self.act(step, child, record.children)
                else:
                    result = await self.step(step, child, record.children)
            except BaseException as exc:
                cancelled = is_cancellation(exc)
                self.emit(
                    SceneFailed,
                    scene=path,
                    failed_at_step=index,
                    step=child,
                    status=Status.CANCELLED if cancelled else Status.FAILED,
                    error=None if cancelled else exc,
                    cause=self.cancel_cause() if cancelled else None,
                    duration=self.now() - started,
                )
                await self.end_failed_scene(record, sink)
                raise
            if result is not _OK and not result.ok:
                if scene.saga:
                    self.announce_failure(result)
                self.emit(
                    SceneFailed,
                    scene=path,
                    failed_at_step=index,
                    step=child,
                    status=result.status,
                    error=result.error,
                    cause=result.cause,
                    duration=self.now() - started,
                )
                await self.end_failed_scene(record, sink)
                return result
        self.emit(SceneCompleted, scene=path, duration=self.now() - started)
        record.done = True
        sink.append(record)
        return _OK

    async def end_failed_scene(self, record: _GroupRecord, sink: list[_Record]) -> None:
        assert isinstance(record.step, Scene)
        if record.step.saga:
            await self.roll_back(record)
        elif record.has_undo():
            sink.append(record)  # not a saga itself: an enclosing saga may undo it

    async def chorus(self, chorus: Chorus, path: str, sink: list[_Record]) -> _Result:
        record = _GroupRecord(chorus, path)
        names = tuple(step.name for step in chorus.steps)
        self.emit(ChorusStarted, step=path, branches=names)
        started = self.now()
        results: dict[str, _Result] = {}
        finished: list[str] = []
        deadline = (
            math.inf if chorus.timeout is None else trio.current_time() + chorus.timeout
        )
        timeout_scope = trio.CancelScope(deadline=deadline)
        group_cause: list[CancelCause] = []
        groups: list[ErrGroup] = []

        def why() -> CancelCause | None:
            if timeout_scope.cancel_called:
                return CancelCause.of(
                    CancelReason.STEP_TIMEOUT,
                    scope=path,
                    triggered_by=path,
                    message=f"chorus timed out after {chorus.timeout} s",
                )
            return group_cause[0] if group_cause else None

        def fail(result: _Result) -> None:
            if group_cause:
                return
            group_cause.append(
                CancelCause.of(
                    CancelReason.STEP_FAILED,
                    scope=path,
                    triggered_by=result.failed_step,
                    message=f"{type(result.error).__name__}: {result.error}",
                )
            )
            if groups:
                cause = group_cause[0]
                groups[0].cancel(
                    CancelReason.STEP_FAILED,
                    triggered_by=cause.triggered_by,
                    message=cause.message,
                )

        fail_fast = chorus.mode is ChorusMode.FAIL_FAST

        async def branch(step: Step) -> None:
            branch_path = f"{path}/{step.name}"
            try:
                result = await self.step(step, branch_path, record.children)
            except Exception as exc:
                # Steps report failures as values; one that raises still
                # fails only its branch, never the chorus's bookkeeping.
                result = _Result(Status.FAILED, exc, None, branch_path)
            results[step.name] = result
            finished.append(step.name)
            if self.journal is not None:
                # Durable now, not when a slow sibling next writes.
                await self.flush(check=False)
            if not result.ok and fail_fast:
                assert result.error is not None
                fail(result)
                raise result.error

        def end_failed(status: Status, error: BaseException | None) -> None:
            succeeded = tuple(n for n in names if n in results and results[n].ok)
            self.emit(
                ChorusFailed,
                step=path,
                status=status,
                error=error,
                succeeded=succeeded,
                failed=tuple(n for n in names if n not in succeeded),
                duration=self.now() - started,
            )
            if record.has_undo():
                sink.append(record)  # the completed branches, for the saga to undo

        frame = _ChorusFrame(why=why, fail=fail if fail_fast else None)
        token = _CHORUSES.set((*_CHORUSES.get(), frame))
        try:
            with timeout_scope:
                try:
                    async with open_err_group(
                        name=chorus.name, limit=chorus.max_workers
                    ) as group:
                        groups.append(group)
                        for step in chorus.steps:
                            group.start_soon(branch, step, name=step.name)
                except Exception:
                    pass  # every branch's result, failures included, is in results
                if self.journal is not None:
                    self.check_journal()
        except BaseException as exc:
            cancelled = is_cancellation(exc)
            end_failed(
                Status.CANCELLED if cancelled else Status.FAILED,
                None if cancelled else exc,
            )
            raise
        finally:
            _CHORUSES.reset(token)

        succeeded = tuple(n for n in names if n in results and results[n].ok)
        failed = tuple(n for n in names if n not in succeeded)
        if timeout_scope.cancelled_caught:
            error = TimeoutError(f"chorus {path!r} timed out after {chorus.timeout} s")
            cause = why()
            end_failed(Status.TIMED_OUT, error)
            return _Result(Status.TIMED_OUT, error, cause, path)
        if chorus.mode is ChorusMode.PARTIAL_SUCCESS:
            ok = bool(succeeded) or not names
        else:
            ok = not failed
        if ok:
            # Only what succeeded is undone later (seed open question 5).
            record.children = [c for c in record.children if c.done]
            record.done = True
            sink.append(record)
            self.emit(
                ChorusCompleted,
                step=path,
                succeeded=succeeded,
                failed=failed,
                duration=self.now() - started,
            )
            return _OK
        failing = next((n for n in finished if not results[n].ok), None)
        if failing is None:
            # Branches that never finished, without a failing one: the group
            # was cancelled by something else. Report it, never crash.
            missing = [n for n in names if n not in results]
            stray = RuntimeError(f"chorus {path!r}: branches {missing} did not finish")
            end_failed(Status.FAILED, stray)
            return _Result(Status.FAILED, stray, why(), path)
        first = results[failing]
        end_failed(Status.FAILED, first.error)
        return _Result(Status.FAILED, first.error, first.cause, first.failed_step)

    # -- backward -----------------------------------------------------------------

    async def roll_back(self, record: _GroupRecord) -> int:
        """Compensate a saga scene's completed steps, in reverse, as one unit.

        Returns:
            How many undo actions failed in this unit (nested units included);
            counted here, not from the run's shared list, which concurrent
            rollbacks of other branches also append to.
        """
        with trio.CancelScope(shield=True):
            self.rolled_back = True
            targets = [c for c in reversed(record.children) if c.has_undo()]
            self.emit(
                CompensationStarted,
                scene=record.path,
                steps_to_undo=tuple(c.path for c in targets),
            )
            started = self.now()
            failures = 0
            for child in targets:
                failures += await self.undo(child)
            record.compensated = True
            self.emit(
                CompensationCompleted,
                scene=record.path,
                ok=failures == 0,
                duration=self.now() - started,
            )
        return failures

    async def undo(self, record: _Record) -> int:
        """Undo one record; return how many of its undo actions failed."""
        if isinstance(record, _ActRecord):
            return await self.undo_act(record)
        if isinstance(record.step, Chorus):
            # Branches ran in parallel; they are undone in parallel.
            failures = [0]

            async def branch(child: _Record) -> None:
                failures[0] += await self.undo(child)

            async with trio.open_nursery() as nursery:
                for child in record.children:
                    if child.has_undo():
                        nursery.start_soon(branch, child)
            return failures[0]
        if record.step.saga:
            return await self.roll_back(record)  # a nested saga, undone as a unit
        total = 0
        for child in reversed(record.children):
            if child.has_undo():
                total += await self.undo(child)
        return total

    async def undo_act(self, record: _ActRecord) -> int:
        act = record.act
        timeout = act.undo_timeout or DEFAULT_COMPENSATION_TIMEOUT
        self.emit(CompensationStepStarted, step=record.path)
        if self.journal is not None:
            # Shielded by roll_back; a broken journal does not stop the undo.
            await self.flush(check=False)
        started = self.now()
        outcomes: list[Outcome[Any]] = []
        registered = record.ctx.compensation
        if registered.has_actions:
            report = await registered.run(retry=act.undo_retry, timeout=timeout)
            outcomes.extend(
                attrs.evolve(o, name=f"{record.path}:{o.name}") for o in report.outcomes
            )
        if record.done and act.compensate is not None:
            ctx = StepContext(
                act.name,
                path=record.path,
                deps=self.deps,
                result=record.value,
                idempotency_key=f"{self.run_id}/{record.path}#compensate",
            )
            outcomes.append(
                await run_compensation_action(
                    act.compensate,
                    (ctx, self.state),
                    name=record.path,
                    retry=act.undo_retry,
                    timeout=timeout,
                )
            )
        self.undo_outcomes.extend(outcomes)
        duration = self.now() - started
        attempts = sum(len(o.attributes["attempts"]) for o in outcomes)  # type: ignore[arg-type, misc]
        failed = [o for o in outcomes if not o.ok]
        if failed:
            assert failed[0].error is not None
            self.emit(
                CompensationStepFailed,
                step=record.path,
                error=failed[0].error,
                duration=duration,
                attempts=attempts,
            )
        else:
            self.emit(
                CompensationStepCompleted,
                step=record.path,
                duration=duration,
                attempts=attempts,
            )
        return len(failed)


async def run_scene(
    scene: Scene,
    state: Any,
    *,
    deps: Any = None,
    observer: Observer | None = None,
    run_id: str | None = None,
    journal: Journal | None = None,
) -> SagaResult:
    """Run *scene* with *state*; never raises for a step failure.

    Steps run in order (a :class:`Chorus`'s branches concurrently). When a
    step fails inside a ``saga=True`` scene, that scene's completed steps are
    compensated in reverse order of completion — shielded, each undo bounded
    and retried — and the result says what happened.

    Args:
        scene: The top scene.
        state: Any object; every ``run``/``compensate`` receives it.
        deps: Passed to every step as ``ctx.deps``.
        observer: Receives every event as it happens.
        run_id: The run's id (default: a random hex string); appears in
            events and idempotency keys. With a journal it must be new.
        journal: Make the run durable (see :doc:`durable`): every event is
            journaled, intents before the code they announce runs, with the
            state; :func:`recover` rolls the run back if this process dies.

    Returns:
        A :class:`SagaResult`.

    Raises:
        trio.Cancelled: cancelled from outside — after the completed steps of
            every enclosing saga scene were compensated.
        RunIdInUseError: *run_id* is already in *journal* (nothing ran).
        TypeError: the journal's codec cannot encode *state* (nothing ran).
        JournalError: the journal failed during the run. No step runs after
            that; the run's sagas were rolled back in memory, and the journal
            still says RUNNING, so :func:`recover` will roll it back again
            (compensation is at-least-once: use ``ctx.idempotency_key``).
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"scene must be a Scene, got {scene!r}")
    check_sync_observer(observer)
    run_id = uuid.uuid4().hex if run_id is None else check_label(run_id, "run_id")
    if journal is not None and not isinstance(journal, Journal):
        raise TypeError(
            f"journal must implement trio_sagas.Journal (e.g. a "
            f"SQLiteJournal), got {journal!r}"
        )
    # A run is independent of any run it is called from (an act may call
    # run_scene): the enclosing run's choruses must not see its failures.
    token = _CHORUSES.set(())
    try:
        if journal is not None:
            # Imported here: _durable builds on this module.
            from ._durable import run_durable

            return await run_durable(scene, state, deps, observer, run_id, journal)
        run = _Run(run_id, state, deps, observer)
        result = await run.scene(scene, scene.name, [])
        return run.result(result)
    finally:
        _CHORUSES.reset(token)
