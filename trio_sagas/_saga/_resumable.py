"""The runner and recorder of a RESUME run: no undo runs unjournaled.

A ROLL_BACK run whose journal fails mid-run rolls its sagas back in memory
(undos without their intents journaled; its recovery undoes again, at least
once). A RESUME run must not: its recovery resumes it, never running a
completed act again, and would finish it with that act's effect undone. So
every RESUME run, new (:func:`run_scene`) or resumed (:mod:`._resume`), runs
an undo only once the undo's intent is durable; once the journal failed,
nothing is undone in the failing process. The run stays RUNNING, and the
recovery resumes it (or rolls it back, if the journal says it was failing),
under journaled intents.
"""

from __future__ import annotations

from typing import Any

from ._events import CompensationStepStarted, SagaEvent
from ._journal import JournalError, RunClaimedError
from ._recorder import JournalRecorder
from ._records import ActRecord
from ._runner import Runner


class ResumableRecorder(JournalRecorder):
    """The recorder of a RESUME run: an undo's intent must be durable.

    An undo intent that cannot be written (or a journal that failed before)
    raises :exc:`JournalError`, as a step's intent does, instead of letting
    the undo run unjournaled.
    """

    async def intent(
        self, event_type: type[SagaEvent], at: float, *, check: bool, **fields: Any
    ) -> None:
        check = check or event_type is CompensationStepStarted
        await super().intent(event_type, at, check=check, **fields)


class ResumableRunner(Runner):
    """The runner of a RESUME run: once the journal failed, no undo runs here.

    The run stays RUNNING and its recovery resumes it; an undo run here
    without its intent journaled would undo an act the resume then counts
    as done.
    """

    __slots__ = ()

    async def undo_act(self, record: ActRecord) -> int:
        try:
            return await super().undo_act(record)
        except RunClaimedError:
            raise
        except JournalError:
            # Its intent is not durable, so the undo did not run: left to
            # the recovery (not a failed undo: the run is not finished here).
            return 0
