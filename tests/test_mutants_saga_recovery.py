"""Direct tests for recover(), the journal recorder and run_scene that planted
bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from trio_sagas import (
    HELD_ELSEWHERE,
    Act,
    Chorus,
    ChorusMode,
    CompensationReport,
    JournalEntry,
    JournalError,
    RunStatus,
    Scene,
    SkippedRun,
    StepContext,
    compensate_run,
    durable_undo,
    recover,
    run_scene,
)
from trio_sagas._saga._journal import Fence

from .memory_journal import MemoryJournal

LOG: list[tuple[float, str]] = []


@durable_undo("mutants-recovery-void")
async def void(charge: str) -> None:
    await trio.sleep(1)
    LOG.append((trio.current_time(), f"void {charge}"))


async def _hold(ctx: StepContext, state: object) -> str:
    LOG.append((trio.current_time(), f"run {ctx.path}"))
    return "held"


async def _release(ctx: StepContext, state: object) -> None:
    await trio.sleep(1)
    LOG.append((trio.current_time(), f"undo {ctx.path}"))


def hold(name: str) -> Act:
    return Act(name, _hold, compensate=_release)


async def crashed_after(scene: Scene, writes: int, *run_ids: str) -> MemoryJournal:
    """A journal holding *run_ids*, each cut after *writes* writes, no live worker."""
    journal = MemoryJournal()
    for run_id in run_ids:
        source = MemoryJournal()
        await run_scene(scene, {}, journal=source, run_id=run_id)
        for op in source.writes[:writes]:
            op(journal)
            journal.writes.append(op)
    return journal


class Untouchable(MemoryJournal):
    """A journal recover() must not read: any read fails the test."""

    async def runs(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("recover() read the journal")

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("recover() claimed a run")

    async def events(self, run_id: str) -> Any:
        raise AssertionError("recover() read a run's events")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"observer": 3}, TypeError, "observer"),
        ({"stale_after": -1.0}, ValueError, r"stale_after.*-1"),
        ({"stale_after": None}, TypeError, r"stale_after.*None"),
    ],
)
async def test_recover_refuses_bad_arguments_before_reading_the_journal(
    autojump_clock: trio.testing.MockClock,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    """recover(observer=3 / stale_after=-1 / None) names the argument; the journal is not read."""
    with trio.fail_after(10), pytest.raises(error, match=match):
        journal: MemoryJournal = Untouchable()  # recover()'s Journal protocol
        await recover(journal, [], **kwargs)


class FailingRun(MemoryJournal):
    """Every write to run *bad* fails (a corrupt page); other runs are written."""

    def __init__(self, bad: str) -> None:
        super().__init__()
        self.bad = bad

    async def append(
        self,
        fence: Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        if fence.run_id == self.bad:
            await trio.lowlevel.checkpoint()
            raise JournalError(f"run {self.bad!r}: disk error (test)")
        await super().append(fence, entries, state=state, status=status)


async def test_recover_raises_a_runs_journal_failure_once_the_others_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A JournalError rolling back one run is raised by recover() after the other runs finished."""
    scene = Scene("s", [hold("a"), hold("b")], saga=True)
    source = await crashed_after(scene, 3, "r1", "r2", "r3")
    journal: MemoryJournal = FailingRun("r2")
    for op in source.writes:
        op(journal)
    LOG.clear()
    with trio.fail_after(60), pytest.raises(JournalError, match="'r2': disk error"):
        await recover(journal, [scene])
    assert trio.current_time() == 2.0
    assert {r: journal.records[r].status for r in ("r1", "r2", "r3")} == {
        "r1": RunStatus.COMPENSATED,
        "r2": RunStatus.RUNNING,
        "r3": RunStatus.COMPENSATED,
    }


async def _pay(ctx: StepContext, state: object) -> str:
    ctx.register_compensation(void, "c-1", name="void c-1")
    ctx.register_compensation(void, "c-2")
    return "paid"


async def test_recovered_undos_keep_their_labels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A recovered durable undo is reported under its label, or its durable_undo name."""
    scene = Scene("s", [Act("pay", _pay), hold("ship")], saga=True)
    source = MemoryJournal()
    await run_scene(scene, {}, journal=source, run_id="r")
    journal = source.as_after(
        3
    )  # create, pay's intent, pay's registrations + ship's intent
    LOG.clear()
    with trio.fail_after(60):
        (result,) = await recover(journal, [scene])
    assert result.compensation is not None
    assert [(o.name, o.finished_at) for o in result.compensation.outcomes] == [
        ("s/ship", 1.0),
        ("s/pay:mutants-recovery-void", 2.0),
        ("s/pay:void c-1", 3.0),
    ]
    assert LOG == [(1.0, "undo s/ship"), (2.0, "void c-2"), (3.0, "void c-1")]


async def test_a_failed_final_write_is_raised_and_the_run_stays_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """run_scene raises the JournalError of the write that would end the run; it stays RUNNING."""
    scene = Scene("s", [hold("a"), hold("b")], saga=True)
    clean = MemoryJournal()
    await run_scene(scene, {}, journal=clean, run_id="r")
    journal = MemoryJournal()
    journal.fail_at = len(clean.writes)  # the last write: SUCCEEDED
    LOG.clear()
    with trio.fail_after(60), pytest.raises(JournalError, match="disk full"):
        await run_scene(scene, {}, journal=journal, run_id="r")
    assert LOG == [(0.0, "run s/a"), (0.0, "run s/b")]
    assert journal.records["r"].status is RunStatus.RUNNING
    assert len(journal.writes) == len(clean.writes) - 1


class FailOnce(MemoryJournal):
    """Notes every append (its kinds); the first one carrying *kind* of *step* fails."""

    def __init__(self, kind: str, step: str) -> None:
        super().__init__()
        self.kind = kind
        self.step = step
        self.appends: list[tuple[float, list[str], RunStatus | None]] = []
        self.failed = False

    async def append(
        self,
        fence: Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        kinds = [f"{e.kind} {e.step}" for e in entries]
        self.appends.append((trio.current_time(), kinds, status))
        if not self.failed and f"{self.kind} {self.step}" in kinds:
            self.failed = True
            await trio.lowlevel.checkpoint()
            raise JournalError("disk error (test)")
        await super().append(fence, entries, state=state, status=status)


def after(seconds: float, name: str) -> Act:
    async def run(ctx: StepContext, state: object) -> str:
        await trio.sleep(seconds)
        return await _hold(ctx, state)

    return Act(name, run, compensate=_release)


async def test_after_a_failed_write_the_run_writes_nothing_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A Chorus branch's completion fails to be written: the run writes nothing after it
    (not the other branch's completion, not a final status) and raises the JournalError."""
    scene = Scene(
        "s",
        [Chorus("pack", [after(0.5, "b1"), after(1, "b2")]), hold("c")],
        saga=True,
    )
    failing = FailOnce("ActCompleted", "s/pack/b1")
    journal: MemoryJournal = failing  # run_scene's Journal protocol
    LOG.clear()
    with trio.fail_after(60), pytest.raises(JournalError, match="disk error"):
        await run_scene(scene, {}, journal=journal, run_id="r")
    *intents, last = failing.appends
    # The intents go in one write or two (the branches start in either order).
    assert {at for at, _, _ in intents} == {0.0}
    assert sorted(kind for _, kinds, _ in intents for kind in kinds) == [
        "ActStarted s/pack/b1",
        "ActStarted s/pack/b2",
        "ChorusStarted s/pack",
        "SceneStarted s",
    ]
    assert last == (0.5, ["ActCompleted s/pack/b1"], None)  # the write that failed
    # b2 ended at 1.0 (not written); c's intent found the journal broken: rollback.
    assert sorted(LOG) == [
        (0.5, "run s/pack/b1"),
        (1.0, "run s/pack/b2"),
        (2.0, "undo s/pack/b1"),
        (2.0, "undo s/pack/b2"),
    ]
    assert journal.records["r"].status is RunStatus.RUNNING


class FinishesMeanwhile(MemoryJournal):
    """Run "r2" is finished by its live worker between recover()'s listing
    and its claim (its claim then finds nothing to take)."""

    async def claim_and_load(self, *args: Any, **kwargs: Any) -> Any:
        self.records["r2"] = attrs.evolve(
            self.records["r2"], status=RunStatus.SUCCEEDED
        )
        return await super().claim_and_load(*args, **kwargs)


async def test_a_run_finished_between_listing_and_claim_is_not_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A listed run that finished before its claim is neither recovered nor
    reported as skipped (it is not held elsewhere: it is done); one a live
    worker holds is skipped as held elsewhere."""
    scene = Scene("s", [hold("a"), hold("b")], saga=True)
    source = await crashed_after(scene, 3, "r1", "r2")
    journal: MemoryJournal = FinishesMeanwhile()
    for op in source.writes:
        op(journal)
    LOG.clear()
    with trio.fail_after(60):
        async with journal.worker() as live:
            await live.create_run("r3", scene="s", state=b"{}")
            report = await recover(journal, [scene])
    assert [r.run_id for r in report.results] == ["r1"]
    assert report.skipped == (SkippedRun("r3", "s", HELD_ELSEWHERE),)
    assert journal.records["r2"].status is RunStatus.SUCCEEDED


async def _declines(ctx: StepContext, state: object) -> None:
    raise RuntimeError("declined")


def partial_then(tail: Act) -> Scene:
    """A saga: a PARTIAL_SUCCESS chorus (branch a completes; branch b fails
    but says its effect may have happened), then *tail*."""
    chorus = Chorus(
        "c",
        [
            hold("a"),
            Act("b", _declines, compensate=_release, compensate_on_failure=True),
        ],
        mode=ChorusMode.PARTIAL_SUCCESS,
    )
    return Scene("s", [chorus, tail], saga=True)


async def test_a_completed_partial_chorus_keeps_only_its_succeeded_branches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A PARTIAL_SUCCESS chorus that completed keeps only the branches that
    succeeded: a later failure undoes a, never the failed branch b -- in
    the process that ran it, and in a recovery after a crash at any write
    after the chorus completed (replay filters the chorus as the runner does)."""
    LOG.clear()
    failing = partial_then(Act("t", _declines))
    result = await run_scene(failing, {}, journal=MemoryJournal(), run_id="r")
    assert not result.ok
    assert [line for _, line in LOG if line.startswith("undo")] == ["undo s/c/a"]
    scene = partial_then(hold("t"))
    source = MemoryJournal()
    await run_scene(scene, {}, journal=source, run_id="r")
    cuts = [
        n
        for n in range(1, len(source.writes))
        if "ChorusCompleted" in [e.kind for e in source.as_after(n).entries["r"]]
    ]
    assert cuts
    for cut in cuts:
        crashed = source.as_after(cut)
        LOG.clear()
        with trio.fail_after(60):
            (recovered,) = await recover(crashed, [scene])
        undone = [line for _, line in LOG if line.startswith("undo")]
        assert "undo s/c/b" not in undone, cut
        assert undone[-1] == "undo s/c/a", cut
        assert recovered.run_id == "r"


async def test_compensate_run_of_a_compensated_run_returns_its_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """compensate_run of a run already COMPENSATED runs nothing and returns the
    run's journaled state, decoded, with its recorded failure."""

    async def keeps(ctx: StepContext, state: dict[str, Any]) -> None:
        state["kept"] = 1

    scene = Scene("s", [Act("k", keeps), Act("t", _declines)], saga=True)
    journal = MemoryJournal()
    await run_scene(scene, {"order": 7}, journal=journal, run_id="r")
    assert journal.records["r"].status is RunStatus.COMPENSATED
    LOG.clear()
    result = await compensate_run(journal, "r", [scene])
    assert LOG == []
    assert result.state == {"order": 7, "kept": 1}
    assert result.failed_step == "s/t"
    assert result.compensation == CompensationReport()
