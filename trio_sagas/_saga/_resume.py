"""Roll-forward recovery: a claimed run goes on from where its process died.

Replay (:mod:`._replay`) rebuilds the records of the dead process: every
act that completed, with what its ``run`` returned, every group's children,
and the *uncertain* acts (started, never ended). :class:`ResumingRunner` is
the runner with three differences, nothing else:

* an act that completed is not run again: its record (``done``, value) goes
  to its parent as if it had just completed, so a later rollback undoes it
  with its journaled ``ctx.result``;
* a Scene or Chorus that completed is not entered again (the same, for the
  whole group);
* an uncertain act is run again under its same idempotency key -- after its
  ``compensate`` ran (``ctx.result`` None) if its act says
  :attr:`Uncertain.COMPENSATE`.

Groups still open are entered again from the start: their completed
children return at once, so a Scene goes on at its first unfinished step and
a Chorus runs only its unfinished branches. The events of the new process
follow those of the dead one in the run's stream, after a
:class:`RunResumed`; the lease and fencing rules are those of any run.

Every RESUME run, new or resumed, runs on the runner and recorder of
:mod:`._resumable`: once its journal failed, nothing is undone unjournaled.
"""

from __future__ import annotations

from typing import Any

import trio

from .._events import Emitter
from .._outcome import Status
from ._chorus import CHORUSES
from ._events import ActFailed, RunResumed
from ._journal import Fence, Journal
from ._model import Act, Scene, Step, Uncertain
from ._recorder import JournalRecorder
from ._records import OK, Record, SagaResult, StepResult
from ._replay import Replay
from ._resumable import ResumableRecorder, ResumableRunner
from ._run import drive


class ResumingRunner(ResumableRunner):
    """A runner that takes what the journal says completed as done."""

    __slots__ = ("replay",)

    def __init__(
        self,
        run_id: str,
        state: Any,
        deps: Any,
        recorder: JournalRecorder,
        replay: Replay,
    ) -> None:
        super().__init__(run_id, state, deps, recorder)
        self.replay = replay

    async def step(self, step: Step, path: str, sink: list[Record]) -> StepResult:
        if isinstance(step, Act):
            return await self.act(step, path, sink, self.now())
        group = self.replay.groups.get(path)
        if group is not None and group.done:
            sink.append(group)  # completed before the crash, children and all
            return OK
        return await super().step(step, path, sink)

    async def scene(self, scene: Scene, path: str, sink: list[Record]) -> StepResult:
        group = self.replay.groups.get(path)
        if group is not None and group.done:
            sink.append(group)
            return OK
        return await super().scene(scene, path, sink)

    async def act(
        self, act: Act, path: str, sink: list[Record], started: float
    ) -> StepResult:
        replay = self.replay
        record = replay.acts.get(path)
        if record is not None:
            if replay.open_acts.pop(path, None) is not None:
                # Uncertain: handled once, then run again below.
                if act.uncertain is Uncertain.COMPENSATE and act.compensate:
                    result = await self.undo_uncertain(record, path)
                    if result is not None:
                        return result
                    started = self.now()  # the undo took time
            elif record.done:
                sink.append(record)
                self.ended = started  # restored, not run: no time passed
                return OK
        return await super().act(act, path, sink, started)

    async def undo_uncertain(self, record: Any, path: str) -> StepResult | None:
        """Compensate an uncertain try before the act runs again.

        Returns:
            None if the undo succeeded; else the act's failure (the run then
            fails there, and its sagas roll back what completed).
        """
        record.done = True
        record.value = None
        with trio.CancelScope(shield=True):
            before = len(self.undo_outcomes)
            failures = await self.undo_act(record)
        record.done = False
        if not failures:
            return None
        error = next(o.error for o in self.undo_outcomes[before:] if not o.ok)
        assert error is not None
        self.recorder.emit(
            ActFailed,
            self.now(),
            step=path,
            status=Status.FAILED,
            error=error,
            duration=0.0,
            attempts=0,
        )
        return StepResult(Status.FAILED, error, None, path)


async def resume_claimed(
    journal: Journal,
    fence: Fence,
    scene: Scene,
    replay: Replay,
    state: Any,
    *,
    first_seq: int,
    deps: Any,
    emitter: Emitter,
    previous_owner: str | None,
) -> SagaResult:
    """Go on with a claimed run, under this worker's lease; write its final status.

    Raises:
        RunClaimedError: another worker claimed the run meanwhile (nothing
            more ran here).
        LeaseLostError: this worker's lease lapsed while the run went on.
        JournalError: the journal failed (the run stays RUNNING).
    """
    run_id = fence.run_id
    token = CHORUSES.set(())
    try:
        async with journal.hold() as lease_scope:
            recorder = ResumableRecorder(
                run_id,
                emitter,
                journal,
                fence,
                first_seq=first_seq,
                state=state,
                lease_scope=lease_scope,
            )
            runner = ResumingRunner(run_id, state, deps, recorder, replay)
            recorder.emit(
                RunResumed,
                runner.now(),
                scene=scene.name,
                previous_owner=previous_owner or replay.previous_owner,
                owner=fence.worker,
                restored=tuple(p for p in replay.completed if replay.acts[p].done),
                uncertain=replay.uncertain(),
            )
            result = await drive(runner, recorder, scene, lease_scope, fence)
    finally:
        CHORUSES.reset(token)
    recorder.check()
    return runner.result(result)
