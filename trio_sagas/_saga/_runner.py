"""The saga runner: runs a Scene tree, rolls back completed steps on failure.

A :class:`Runner` runs one run's steps and reports every event to its
*recorder* (:mod:`._recorder`): in memory, or through a journal. The runner
awaits the recorder where a durable run must have caught up (an intent
before the code it announces, a Chorus branch's end) and otherwise knows
nothing about journals. What to undo is in the records (:mod:`._records`);
undoing it, in its base class (:mod:`._rollback`).
"""

from __future__ import annotations

import math
from typing import Any

import trio

from .._compensation import CompensationReport
from .._context import StepContext, forward_context
from .._outcome import CancelCause, Outcome, Status
from .._retry import run_attempts
from .._util import contains_cancellation, is_cancellation
from ._chorus import CHORUSES, ChorusRun, announce_failure, chorus_cause
from ._durable import DurableScope
from ._events import (
    ActCancelled,
    ActFailed,
    ActStarted,
    SceneCompleted,
    SceneFailed,
    SceneStarted,
)
from ._model import Act, Chorus, Scene, Step
from ._recorder import JournalRecorder, MemoryRecorder
from ._records import (
    OK,
    ActRecord,
    GroupRecord,
    Record,
    SagaResult,
    StepResult,
    new_result,
)
from ._rollback import Rollback

# A module global: Status.SUCCEEDED is an enum lookup of ~0.2 us on Python
# 3.11 (~0.08 us on 3.12), paid twice per step on the forward path.
SUCCEEDED = Status.SUCCEEDED


def act_context(run_id: str, path: str, act: Act, deps: Any) -> StepContext:
    """The ``ctx`` of an act's ``run``: its key, ``run_id/path``, is stable
    across recoveries (built from the run id on first read, not per step)."""
    return StepContext._trusted(
        act.name, path=path, deps=deps, idempotency_key=None, run_id=run_id
    )


class Runner(Rollback):
    """Runs one run's steps forward, and rolls saga scenes back."""

    __slots__ = ("deps", "ended", "now", "recorder", "run_id", "state")

    def __init__(
        self,
        run_id: str,
        state: Any,
        deps: Any,
        recorder: MemoryRecorder | JournalRecorder,
    ) -> None:
        self.run_id = run_id
        self.state = state
        self.deps = deps
        self.recorder = recorder
        self.undo_outcomes: list[Outcome[Any]] = []
        self.rolled_back = False
        # Rollbacks begun and not finished: an interruption (KeyboardInterrupt)
        # left this many units half undone, so the run is not COMPENSATED.
        self.open_rollbacks = 0
        # The clock's own method: trio.current_time() goes through a
        # KI-protection wrapper that costs as much again on this hot path.
        self.now = trio.lowlevel.current_clock().current_time
        self.ended = 0.0  # the end time of the act that last succeeded

    def cancel_cause(self, exc: BaseException) -> CancelCause:
        cause = chorus_cause()
        return cause if cause is not None else CancelCause.from_cancelled(exc)

    def result(self, result: StepResult) -> SagaResult:
        return new_result(
            self.run_id,
            result.status,
            self.state,
            result.error,
            result.failed_step,
            CompensationReport(tuple(self.undo_outcomes)) if self.rolled_back else None,
            self.recorder.log(),
            self.recorder.waited,
        )

    # -- forward ------------------------------------------------------------------

    async def step(self, step: Step, path: str, sink: list[Record]) -> StepResult:
        if isinstance(step, Act):
            return await self.act(step, path, sink, self.now())
        if isinstance(step, Scene):
            return await self.scene(step, path, sink)
        assert isinstance(step, Chorus)
        return await ChorusRun(self, step, path).run(sink)

    async def act(
        self, act: Act, path: str, sink: list[Record], started: float
    ) -> StepResult:
        """Run one act that starts at *started* (the caller's clock reading).

        On success the end time is left in :attr:`ended`, for a scene to use
        as its next act's start: one clock read per step, not two (saves
        ~0.15 us of ~3 us per step). A plain act of a scene in a memory run
        nobody observes takes :meth:`scene`'s inlined copy of this path.
        """
        ctx = forward_context(act.name, path, self.deps, self.run_id)
        recorder = self.recorder
        raw = recorder.raw
        begun = started  # the raw path writes no intent: no journal wait
        ran = False
        try:
            if raw is not None:
                raw.append((started, path))  # the fast path (see RawEvent)
            else:
                if recorder.durable:
                    # Undos registered in run are journaled (or refused).
                    ctx._compensation = DurableScope(path, recorder)
                # The intent is durable before run runs.
                await recorder.intent(ActStarted, started, check=True, step=path)
                begun = self.now()
            ran = True
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
                    status, error, cause = SUCCEEDED, None, None
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
            self.act_interrupted(act, path, ctx, started, exc, ran, sink)
            raise
        ended = self.now()
        duration = ended - begun  # the act's own time, not the intent's wait
        if status is SUCCEEDED:
            if ctx._compensation is not None or act.compensate is not None:
                record = ActRecord(act, path, ctx)
                record.done = True
                record.value = value
                sink.append(record)
            # else: nothing to undo, nothing kept
            if raw is not None:
                raw.append((ended, path, duration, attempts))  # see RawEvent
            else:
                recorder.completed(
                    ended,
                    value,
                    step=path,
                    duration=duration,
                    attempts=attempts,
                    journal_wait=begun - started,
                )
            self.ended = ended
            return OK
        assert error is not None
        return self.act_failed(
            act, path, ctx, status, error, cause, duration, attempts, sink
        )

    def act_interrupted(
        self,
        act: Act,
        path: str,
        ctx: StepContext,
        started: float,
        exc: BaseException,
        ran: bool,
        sink: list[Record],
    ) -> None:
        """An act's run was interrupted (cancelled): say so, keep its undos."""
        # A cleanup failure racing the cancel makes a mixed group: the act
        # was still cancelled, for the reason its context knows.
        cause = (
            self.cancel_cause(exc)
            if contains_cancellation(exc)
            else CancelCause.external(repr(exc))
        )
        recorder = self.recorder
        recorder.emit(
            ActCancelled,
            self.now(),
            step=path,
            cause=cause,
            duration=self.now() - started,
        )
        record = ActRecord(act, path, ctx)
        record.effect = act.compensate_on_failure
        # A durable run's act interrupted while run ran: the journal says it
        # started and did not complete, so it is *uncertain* (its effect may
        # have happened) and undone as after a crash.
        record.uncertain = ran and recorder.durable and act.uncertain != "skip"
        if record.has_undo():
            sink.append(record)  # partial progress, on the failure path

    def act_failed(
        self,
        act: Act,
        path: str,
        ctx: StepContext,
        status: Status,
        error: BaseException,
        cause: CancelCause | None,
        duration: float,
        attempts: int,
        sink: list[Record],
    ) -> StepResult:
        """An act failed (its error is a value): say so, keep its undos."""
        self.recorder.emit(
            ActFailed,
            self.now(),
            step=path,
            status=status,
            error=error,
            duration=duration,
            attempts=attempts,
        )
        record = ActRecord(act, path, ctx)
        record.effect = act.compensate_on_failure  # its effect may have happened
        if record.has_undo():
            sink.append(record)
        return StepResult(status, error, cause, path)

    async def scene(self, scene: Scene, path: str, sink: list[Record]) -> StepResult:
        record = GroupRecord(scene, path)
        children = record.children
        recorder = self.recorder
        emit = recorder.emit
        raw = recorder.raw
        started = at = self.now()
        if raw is not None:
            raw.append((SceneStarted, started, path, scene.saga))  # see RawEvent
        else:
            emit(SceneStarted, started, scene=path, saga=scene.saga)
        # A memory run nobody observes runs its scenes' plain acts inline,
        # below: no coroutine of act() per step, no ActRecord for a completed
        # act that registered no undo (a DoneAct tuple, or nothing without a
        # compensate). Measured: overhead 1.8 -> 1.1 us per step (the rest of
        # the way to ~0.9 us is the plan, flat raw events and run_scene).
        # Not for a subclass (ResumingRunner), which overrides act().
        inline = raw is not None and type(self) is Runner
        # Outside any chorus nothing else records while an act runs: its two
        # events can wait for its end, as one raw tuple (see RawEvent). A
        # tuple less per step: ~0.03 us, ~0.15 us between two checkpoints.
        solo = inline and not CHORUSES.get()
        state, deps, run_id, now = self.state, self.deps, self.run_id, self.now
        for index, (step, child, plain) in enumerate(scene._plan(path)):
            try:
                if plain and inline:
                    assert raw is not None
                    ctx = forward_context(step.name, child, deps, run_id)
                    if not solo:
                        raw.append((at, child))  # see RawEvent
                    try:
                        value = await step.run(ctx, state)
                    except Exception as exc:
                        if solo:
                            raw.append((at, child))
                        result = self.act_failed(
                            step,
                            child,
                            ctx,
                            Status.FAILED,
                            exc,
                            None,
                            now() - at,
                            1,
                            children,
                        )
                    except BaseException as exc:
                        if solo:
                            raw.append((at, child))
                        self.act_interrupted(step, child, ctx, at, exc, True, children)
                        raise
                    else:
                        ended = now()
                        if ctx._compensation is None and step.compensate is not None:
                            # A DoneAct, which outside a chorus is the act's
                            # raw event too: one tuple, not two (see RawEvent).
                            done = (at, child, ended, index, value)
                            children.append(done)  # type: ignore[arg-type]
                            raw.append(done if solo else (ended, child, ended - at, 1))
                        else:
                            raw.append(
                                (at, child, ended)
                                if solo
                                else (ended, child, ended - at, 1)
                            )  # see RawEvent
                            if ctx._compensation is not None:
                                kept = ActRecord(step, child, ctx)
                                kept.done = True
                                kept.value = value
                                children.append(kept)
                        at = ended
                        continue
                elif isinstance(step, Act):
                    # Nothing awaited since the last clock read (at): the
                    # previous act's end is this act's start.
                    result = await self.act(step, child, children, at)
                    at = self.ended
                else:
                    result = await self.step(step, child, children)
                    at = now()
            except BaseException as exc:
                cancelled = is_cancellation(exc)
                emit(
                    SceneFailed,
                    now(),
                    scene=path,
                    failed_at_step=index,
                    step=child,
                    status=Status.CANCELLED if cancelled else Status.FAILED,
                    error=None if cancelled else exc,
                    cause=self.cancel_cause(exc) if cancelled else None,
                    duration=now() - started,
                )
                await self.end_failed_scene(record, sink)
                raise
            if result is not OK and not result.ok:
                if scene.saga:
                    announce_failure(result)
                emit(
                    SceneFailed,
                    now(),
                    scene=path,
                    failed_at_step=index,
                    step=child,
                    status=result.status,
                    error=result.error,
                    cause=result.cause,
                    duration=now() - started,
                )
                await self.end_failed_scene(record, sink)
                return result
        if raw is not None:
            raw.append((SceneCompleted, at, path, at - started))  # see RawEvent
        else:
            emit(SceneCompleted, at, scene=path, duration=at - started)
        record.done = True
        sink.append(record)
        return OK

    async def end_failed_scene(self, record: GroupRecord, sink: list[Record]) -> None:
        assert isinstance(record.step, Scene)
        if record.step.saga:
            await self.roll_back(record)
        elif record.has_undo():
            sink.append(record)  # not a saga itself: an enclosing saga may undo it
