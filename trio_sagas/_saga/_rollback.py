"""The saga runner's backward half: compensate a saga scene's completed steps.

:class:`Rollback` is the base of :class:`~._runner.Runner` (split out to keep
each module small): it undoes the records the forward half kept
(:mod:`._records`), in reverse order of completion, shielded, each undo
bounded and retried, and reports every event to the run's recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from .._compensation import DEFAULT_COMPENSATION_TIMEOUT, run_compensation_action
from .._context import StepContext, forward_context
from .._outcome import Outcome
from ._events import (
    CompensationCompleted,
    CompensationStarted,
    CompensationStepCompleted,
    CompensationStepFailed,
    CompensationStepStarted,
)
from ._model import Act, Chorus
from ._recorder import JournalRecorder, MemoryRecorder
from ._records import ActRecord, Child, GroupRecord, children_of, has_undo, path_of


class Rollback:
    """Undoes one run's saga scenes (the state is the runner's)."""

    # The rollback's own state; the rest is the runner's (annotated below).
    __slots__ = ("open_rollbacks", "rolled_back", "undo_outcomes")

    open_rollbacks: int
    rolled_back: bool
    undo_outcomes: list[Outcome[Any]]
    deps: Any
    now: Callable[[], float]
    recorder: MemoryRecorder | JournalRecorder
    run_id: str
    state: Any

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
            targets = [c for c in reversed(children_of(record)) if has_undo(c)]
            self.recorder.emit(
                CompensationStarted,
                self.now(),
                scene=record.path,
                steps_to_undo=tuple(path_of(c) for c in targets),
            )
            started = self.now()
            failures = 0
            for child in targets:
                failures += await self.undo(child, record)
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

    async def undo(self, record: Child, parent: GroupRecord) -> int:
        """Undo one record of *parent*; return how many of its undo actions failed."""
        if isinstance(record, tuple):
            # A DoneAct: rebuilt as an ActRecord, off the forward path.
            _, path, _, index, value = record
            act = parent.step.steps[index]
            assert isinstance(act, Act)
            record = ActRecord(
                act, path, forward_context(act.name, path, self.deps, self.run_id)
            )
            record.done = True
            record.value = value
        if isinstance(record, ActRecord):
            return await self.undo_act(record)
        if isinstance(record.step, Chorus):
            # Branches ran in parallel; they are undone in parallel.
            failures = [0]

            async def branch(child: Child, parent: GroupRecord) -> None:
                failures[0] += await self.undo(child, parent)

            with self.recorder.parallel():
                async with trio.open_nursery() as nursery:
                    for child in children_of(record):
                        if has_undo(child):
                            nursery.start_soon(branch, child, record)
            return failures[0]
        if record.step.saga:
            return await self.roll_back(record)  # a nested saga, undone as a unit
        total = 0
        for child in reversed(children_of(record)):
            if has_undo(child):
                total += await self.undo(child, record)
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
        registered = record.ctx._pending_compensation()
        if registered is not None:
            report = await registered.run(retry=act.undo_retry, timeout=timeout)
            outcomes.extend(
                attrs.evolve(o, name=f"{record.path}:{o.name}") for o in report.outcomes
            )
        if (
            record.done or record.effect or record.uncertain
        ) and act.compensate is not None:
            ctx = StepContext(
                act.name,
                path=record.path,
                deps=self.deps,
                result=record.value,
                run_id=self.run_id,
                idempotency_key=f"{self.run_id}/{record.path}#compensate",
                forward_key=f"{self.run_id}/{record.path}",
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
