"""The saga runner: runs a Scene tree, rolls back completed steps on failure.

A :class:`Runner` runs one run's steps and reports every event to its
*recorder* (:mod:`._recorder`): in memory, or through a journal. The runner
awaits the recorder where a durable run must have caught up (an intent
before the code it announces, a Chorus branch's end) and otherwise knows
nothing about journals. What to undo is in the records (:mod:`._records`).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import trio

from .._compensation import (
    DEFAULT_COMPENSATION_TIMEOUT,
    CompensationReport,
    StepContext,
    run_compensation_action,
)
from .._outcome import CancelCause, Outcome, Status
from .._retry import run_attempts
from .._util import contains_cancellation, is_cancellation
from ._chorus import ChorusRun, announce_failure, chorus_cause
from ._events import (
    ActCancelled,
    ActCompleted,
    ActFailed,
    ActStarted,
    CompensationCompleted,
    CompensationStarted,
    CompensationStepCompleted,
    CompensationStepFailed,
    CompensationStepStarted,
    SceneCompleted,
    SceneFailed,
    SceneStarted,
)
from ._model import Act, Chorus, Scene, Step
from ._recorder import JournalRecorder, MemoryRecorder
from ._records import OK, ActRecord, GroupRecord, Record, SagaResult, StepResult


def act_context(run_id: str, path: str, act: Act, deps: Any) -> StepContext:
    """The ``ctx`` of an act's ``run`` (its key is stable across recoveries)."""
    return StepContext._trusted(
        act.name, path=path, deps=deps, idempotency_key=f"{run_id}/{path}"
    )


class Runner:
    """Runs one run's steps forward, and rolls saga scenes back."""

    __slots__ = (
        "deps",
        "now",
        "open_rollbacks",
        "recorder",
        "rolled_back",
        "run_id",
        "state",
        "undo_outcomes",
    )

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

    def cancel_cause(self, exc: BaseException) -> CancelCause:
        cause = chorus_cause()
        return cause if cause is not None else CancelCause.from_cancelled(exc)

    def result(self, result: StepResult) -> SagaResult:
        return SagaResult(
            run_id=self.run_id,
            status=result.status,
            state=self.state,
            error=result.error,
            failed_step=result.failed_step,
            compensation=CompensationReport(tuple(self.undo_outcomes))
            if self.rolled_back
            else None,
            events=self.recorder.log(),
        )

    # -- forward ------------------------------------------------------------------

    async def step(self, step: Step, path: str, sink: list[Record]) -> StepResult:
        if isinstance(step, Act):
            return await self.act(step, path, sink)
        if isinstance(step, Scene):
            return await self.scene(step, path, sink)
        assert isinstance(step, Chorus)
        return await ChorusRun(self, step, path).run(sink)

    async def act(self, act: Act, path: str, sink: list[Record]) -> StepResult:
        ctx = StepContext._trusted(  # act_context(), inlined on the hot path
            act.name, path=path, deps=self.deps, idempotency_key=f"{self.run_id}/{path}"
        )
        record = ActRecord(act, path, ctx)
        recorder = self.recorder
        raw = recorder.raw
        started = self.now()
        ran = False
        try:
            if raw is not None:
                raw.append((ActStarted, started, {"step": path}))  # the fast path
            else:
                # The intent is durable before run runs.
                await recorder.intent(ActStarted, started, check=True, step=path)
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
                self.cancel_cause(exc)
                if contains_cancellation(exc)
                else CancelCause.external(repr(exc))
            )
            recorder.emit(
                ActCancelled,
                self.now(),
                step=path,
                cause=cause,
                duration=self.now() - started,
            )
            # A durable run's act interrupted while run ran: the journal says
            # it started and did not complete, so it is *uncertain* (its
            # effect may have happened) and undone as after a crash.
            record.uncertain = (
                ran and recorder.durable and act.uncertain == "compensate"
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
            else:
                recorder.completed(
                    ended, value, step=path, duration=duration, attempts=attempts
                )
            return OK
        assert error is not None
        recorder.emit(
            ActFailed,
            self.now(),
            step=path,
            status=status,
            error=error,
            duration=duration,
            attempts=attempts,
        )
        if record.has_undo():
            sink.append(record)
        return StepResult(status, error, cause, path)

    async def scene(self, scene: Scene, path: str, sink: list[Record]) -> StepResult:
        record = GroupRecord(scene, path)
        emit = self.recorder.emit
        emit(SceneStarted, self.now(), scene=path, saga=scene.saga)
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
                emit(
                    SceneFailed,
                    self.now(),
                    scene=path,
                    failed_at_step=index,
                    step=child,
                    status=Status.CANCELLED if cancelled else Status.FAILED,
                    error=None if cancelled else exc,
                    cause=self.cancel_cause(exc) if cancelled else None,
                    duration=self.now() - started,
                )
                await self.end_failed_scene(record, sink)
                raise
            if result is not OK and not result.ok:
                if scene.saga:
                    announce_failure(result)
                emit(
                    SceneFailed,
                    self.now(),
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
        emit(SceneCompleted, self.now(), scene=path, duration=self.now() - started)
        record.done = True
        sink.append(record)
        return OK

    async def end_failed_scene(self, record: GroupRecord, sink: list[Record]) -> None:
        assert isinstance(record.step, Scene)
        if record.step.saga:
            await self.roll_back(record)
        elif record.has_undo():
            sink.append(record)  # not a saga itself: an enclosing saga may undo it

    # -- backward -----------------------------------------------------------------

    async def roll_back(self, record: GroupRecord) -> int:
        """Compensate a saga scene's completed steps, in reverse, as one unit.

        Returns:
            How many undo actions failed in this unit (nested units included);
            counted here, not from the run's shared list, which concurrent
            rollbacks of other branches also append to.
        """
        with trio.CancelScope(shield=True):
            self.rolled_back = True
            self.open_rollbacks += 1
            targets = [c for c in reversed(record.children) if c.has_undo()]
            self.recorder.emit(
                CompensationStarted,
                self.now(),
                scene=record.path,
                steps_to_undo=tuple(c.path for c in targets),
            )
            started = self.now()
            failures = 0
            for child in targets:
                failures += await self.undo(child)
            record.compensated = True
            self.recorder.emit(
                CompensationCompleted,
                self.now(),
                scene=record.path,
                ok=failures == 0,
                duration=self.now() - started,
            )
            self.open_rollbacks -= 1
        return failures

    async def undo(self, record: Record) -> int:
        """Undo one record; return how many of its undo actions failed."""
        if isinstance(record, ActRecord):
            return await self.undo_act(record)
        if isinstance(record.step, Chorus):
            # Branches ran in parallel; they are undone in parallel.
            failures = [0]

            async def branch(child: Record) -> None:
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

    async def undo_act(self, record: ActRecord) -> int:
        act = record.act
        timeout = act.undo_timeout or DEFAULT_COMPENSATION_TIMEOUT
        raw = self.recorder.raw
        if raw is not None:
            raw.append((CompensationStepStarted, self.now(), {"step": record.path}))
        else:
            # Shielded by roll_back; a broken journal does not stop the undo.
            await self.recorder.intent(
                CompensationStepStarted, self.now(), check=False, step=record.path
            )
        started = self.now()
        outcomes: list[Outcome[Any]] = []
        registered = record.ctx.compensation
        if registered.has_actions:
            report = await registered.run(retry=act.undo_retry, timeout=timeout)
            outcomes.extend(
                attrs.evolve(o, name=f"{record.path}:{o.name}") for o in report.outcomes
            )
        if (record.done or record.uncertain) and act.compensate is not None:
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
            self.recorder.emit(
                CompensationStepFailed,
                self.now(),
                step=record.path,
                error=failed[0].error,
                duration=duration,
                attempts=attempts,
            )
        else:
            self.recorder.emit(
                CompensationStepCompleted,
                self.now(),
                step=record.path,
                duration=duration,
                attempts=attempts,
            )
        return len(failed)
