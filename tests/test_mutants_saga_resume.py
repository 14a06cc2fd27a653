"""Direct tests for the RESUME runner and recorder that planted bugs slipped
past (tools/MUTANTS.md: ``_saga/_resume.py:114``, ``_saga/_resumable.py:58``)."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from trio_sagas import (
    Act,
    Event,
    JournalError,
    OnCrash,
    RunStatus,
    Scene,
    StepContext,
    recover,
    run_scene,
)

from .memory_journal import MemoryJournal
from .test_resume import ONCE, Shop, crashed_at, order

UNDONE: list[str] = []


async def _ok(ctx: StepContext, state: object) -> str:
    return "done"


async def _undo(ctx: StepContext, state: object) -> None:
    UNDONE.append(ctx.path)


async def _declines(ctx: StepContext, state: object) -> None:
    raise RuntimeError("declined")


async def test_an_undo_whose_intent_was_not_journaled_is_not_a_failed_undo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A RESUME run failing on its own, whose undo's intent cannot be written:
    the undo does not run, and is not counted as failed (the rollback says
    ok, no CompensationStepFailed); the JournalError is raised, the run stays
    RUNNING for its recovery."""
    scene = Scene(
        "s",
        [Act("a", _ok, compensate=_undo), Act("b", _declines)],
        saga=True,
        on_crash=OnCrash.RESUME,
    )
    journal = MemoryJournal()
    journal.fail_at = 4  # create, a's intent, b's intent, then a's undo's intent
    seen: list[Event] = []
    UNDONE.clear()
    with trio.fail_after(60), pytest.raises(JournalError, match="disk full"):
        await run_scene(scene, {}, journal=journal, run_id="r", observer=seen.append)
    kinds = [type(e).__name__ for e in seen]
    assert kinds[-3:] == [
        "CompensationStarted",
        "CompensationStepStarted",
        "CompensationCompleted",
    ]
    assert getattr(seen[-1], "ok", None) is True
    assert UNDONE == []
    assert journal.records["r"].status is RunStatus.RUNNING


async def test_an_uncertain_acts_unjournaled_undo_lets_the_journal_error_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Resuming a run whose uncertain act's undo intent cannot be written:
    recover() raises that JournalError (the undo did not run, so it did not
    fail); the run stays RUNNING."""
    journal = await crashed_at(order(Shop()), 2)  # a uncertain
    journal.fail_at = len(journal.writes) + 1  # RunResumed with the undo's intent
    second = Shop()
    with trio.fail_after(60), pytest.raises(JournalError, match="disk full"):
        await recover(journal, [order(second)])
    assert second.log == []
    assert journal.records["r"].status is RunStatus.RUNNING


async def test_a_failed_undo_of_an_uncertain_act_is_journaled_as_its_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The uncertain act's undo fails for good on resume: the act is not run
    again, and the journal says ActFailed for it, with the undo's error,
    before its rollback."""
    journal = await crashed_at(order(Shop()), 2)  # a uncertain

    async def broken(ctx: StepContext, state: object) -> None:
        raise RuntimeError("cannot undo")

    scene = order(Shop())
    first = scene.steps[0]
    assert isinstance(first, Act)
    a = attrs.evolve(first, compensate=broken, compensation_retry=ONCE)
    scene = Scene("order", [a, *scene.steps[1:]], saga=True, on_crash=OnCrash.RESUME)
    with trio.fail_after(60):
        (result,) = await recover(journal, [scene])
    assert result.failed_step == "order/a"
    entries = journal.entries["r"]
    resumed = [e.kind for e in entries].index("RunResumed")
    after = [(e.kind, e.step) for e in entries[resumed:]]
    failed = after.index(("ActFailed", "order/a"))
    assert after[failed - 1] == ("CompensationStepFailed", "order/a")
    assert ("SceneFailed", "order") in after[failed:]
    assert entries[resumed + failed].data["error"] == {
        "type": "RuntimeError",
        "message": "cannot undo",
    }
