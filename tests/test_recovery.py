"""recover() and compensate_run(): semantics on virtual time, with a journal in
memory that can be cut after any write (a crash at that point)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    Act,
    Chorus,
    CompensationStepStarted,
    JournalEntry,
    RecordedFailure,
    RetryPolicy,
    RunNotFoundError,
    RunStatus,
    Scene,
    StepContext,
    compensate_run,
    recover,
    run_scene,
)

from .helpers import Declined
from .memory_journal import MemoryJournal
from .test_saga_property import _Builder, _lowest_common_kind, _nodes

ONCE = RetryPolicy(max_attempts=1)


class Shop:
    """Acts that log their calls (with idempotency keys and results)."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.undo_fails: set[str] = set()

    def act(self, name: str, *, fail: bool = False, **options: Any) -> Act:
        async def run(ctx: StepContext, state: dict[str, Any]) -> str:
            await trio.sleep(1)
            self.log.append(f"run {ctx.idempotency_key}")
            if fail:
                raise Declined(f"{name} declined")
            state[name] = True
            return f"{name}-receipt"

        async def compensate(ctx: StepContext, state: dict[str, Any]) -> None:
            self.log.append(f"undo {ctx.idempotency_key} result={ctx.result}")
            if name in self.undo_fails:
                raise RuntimeError(f"cannot undo {name}")
            state.pop(name, None)

        return Act(name, run, compensate=compensate, compensation_retry=ONCE, **options)


def analyse(entries: tuple[JournalEntry, ...]) -> dict[str, list[str]]:
    """What the journal says about each act.

    An act journaled as cancelled (its run was interrupted after it began) is
    uncertain too: its effect may have happened, so it is undone as after a
    crash.
    """
    ended = {e.step for e in entries if e.kind in ("ActCompleted", "ActFailed")}
    return {
        "completed": [e.step for e in entries if e.kind == "ActCompleted"],
        "uncertain": [
            e.step for e in entries if e.kind == "ActStarted" and e.step not in ended
        ],
        "undone": [e.step for e in entries if e.kind == "CompensationStepCompleted"],
        "undo_failed": [e.step for e in entries if e.kind == "CompensationStepFailed"],
    }


async def crash_after(
    scene: Scene, writes: int, state: Any = None
) -> tuple[MemoryJournal, int]:
    """Run *scene* on a memory journal; return the journal cut after *writes*."""
    journal = MemoryJournal()
    await run_scene(scene, {} if state is None else state, journal=journal, run_id="r")
    return journal.as_after(writes), len(journal.writes)


# -- the property ------------------------------------------------------------------


@given(
    children=st.lists(_nodes(2), min_size=1, max_size=4),
    cut=st.floats(0, 1),
)
def test_recovery_property(children: list[tuple[Any, ...]], cut: float) -> None:
    """Cut the journal after any write of a random saga: recovery undoes every act
    completed (or uncertain) and not yet undone, once, in reverse completion order,
    and never an undo the journal records as done."""
    first, second = _Builder(), _Builder()
    top = Scene("top", [first.build(c) for c in children], saga=True)
    again = Scene("top", [second.build(c) for c in children], saga=True)
    second.kinds["top"] = "scene"
    box: dict[str, Any] = {}

    async def main() -> None:
        journal = MemoryJournal()
        await run_scene(top, None, journal=journal, run_id="r")
        writes = len(journal.writes)
        cut_at = round(cut * (writes - 1)) + 1  # 1 .. writes
        crashed = journal.as_after(cut_at)
        box["before"] = await crashed.events("r")
        box["final"] = cut_at == writes
        box["report"] = await recover(crashed, [again])
        box["again"] = await recover(crashed, [again])
        (box["run"],) = await crashed.runs()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    facts = analyse(box["before"])
    assert box["again"] == trio_sagas.RecoveryReport()
    if box["final"]:
        assert box["report"] == trio_sagas.RecoveryReport()
        assert second.undone == []
        return
    assert box["run"].status in (RunStatus.COMPENSATED, RunStatus.NEEDS_INTERVENTION)
    undone = second.undone
    assert len(undone) == len(set(undone)), "an act was undone twice"
    assert not set(undone) & set(facts["undone"]), "a completed undo ran again"
    assert not set(undone) & set(facts["undo_failed"]), "recover retried a failed undo"
    expected = (
        (set(facts["completed"]) | set(facts["uncertain"]))
        - set(facts["undone"])
        - set(facts["undo_failed"])
    )
    assert set(undone) == expected
    order = {step: i for i, step in enumerate(facts["completed"])}
    for step in facts["uncertain"]:
        order[step] = len(order) + 1000  # "completed" at the crash, last
    position = {step: i for i, step in enumerate(undone)}
    for x, y in itertools.combinations(undone, 2):
        if _lowest_common_kind(second, x, y) == "chorus":
            continue
        if order[x] < order[y]:
            assert position[y] < position[x], f"{y} completed after {x}, undone first"
    events = box["report"].results[0].events
    first_seq = box["before"][-1].seq + 1 if box["before"] else 0
    assert [e.seq for e in events] == list(range(first_seq, first_seq + len(events)))


# -- recover --------------------------------------------------------------------------


async def test_uncertain_step_is_compensated_or_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A step whose run started but never ended is undone (result None), unless uncertain='skip'."""
    for option, expected in (
        ("compensate", ["undo r/s/b#compensate result=None"]),
        ("skip", []),
    ):
        shop = Shop()
        scene = Scene("s", [shop.act("a"), shop.act("b", uncertain=option)], saga=True)
        # writes: create, ActStarted(a), ActStarted(b) (with a's completion) ...
        crashed, _ = await crash_after(scene, 3)
        shop.log.clear()
        report = await recover(crashed, {"s": scene})
        assert shop.log == [*expected, "undo r/s/a#compensate result=a-receipt"]
        (result,) = report.results
        assert result.failed_step == "s/b"
        assert result.state == {}
        assert isinstance(result.error, RecordedFailure)
        assert result.error.interrupted
        assert result.error.error_type is None


async def test_recover_reports_runs_it_does_not_touch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Runs of scenes not passed in, or that do not match the definition, are reported."""
    shop = Shop()
    scene = Scene("s", [shop.act("a"), shop.act("b")], saga=True)
    crashed, _ = await crash_after(scene, 3)
    shop.log.clear()
    report = await recover(crashed, {})
    assert report.results == ()
    (skipped,) = report.skipped
    assert (skipped.run_id, skipped.scene) == ("r", "s")
    assert "not passed" in skipped.reason
    changed = Scene("s", [shop.act("a"), shop.act("c")], saga=True)
    report = await recover(crashed, [changed])
    (skipped,) = report.skipped
    assert "'s/b'" in skipped.reason
    assert shop.log == []
    (run,) = await crashed.runs()
    assert run.status is RunStatus.RUNNING
    report = await recover(crashed, [scene])  # the right definition still works
    assert len(report) == 1
    assert list(report) == list(report.results)


async def test_recover_leaves_runs_live_in_this_process(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run in progress in this process is reported, not rolled back."""
    journal = MemoryJournal()
    seen: list[trio_sagas.RecoveryReport] = []

    async def look(ctx: StepContext, state: object) -> None:
        seen.append(await recover(journal, [scene]))

    scene = Scene("s", [Act("look", look)], saga=True)
    result = await run_scene(scene, {}, journal=journal, run_id="live")
    assert result.ok
    (report,) = seen
    assert report.results == ()
    assert [(s.run_id, s.reason) for s in report.skipped] == [
        ("live", trio_sagas.HELD_ELSEWHERE)
    ]
    assert (await recover(journal, [scene])) == trio_sagas.RecoveryReport()


async def test_recover_resumes_an_interrupted_recovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A recovery that itself dies is resumed: no undo recorded as done runs twice."""
    shop = Shop()
    scene = Scene("s", [shop.act(n) for n in "abc"], saga=True)
    first, _ = await crash_after(scene, 4)  # c uncertain, a and b completed
    shop.log.clear()
    await recover(first, [scene])
    assert shop.log == [
        "undo r/s/c#compensate result=None",
        "undo r/s/b#compensate result=b-receipt",
        "undo r/s/a#compensate result=a-receipt",
    ]
    # The recovery wrote: intent c, intent b (+ c done), intent a (+ b done), final.
    assert len(first.writes) == 8
    for cut in range(5, 8):
        shop.log.clear()
        again = first.as_after(cut)
        done_before = analyse(await again.events("r"))["undone"]
        await recover(again, [scene])
        facts = analyse(await again.events("r"))
        assert sorted(facts["undone"]) == ["s/a", "s/b", "s/c"]
        assert len(facts["undone"]) == 3
        assert [line.split()[1] for line in shop.log] == [
            f"r/s/{n}#compensate" for n in "cba" if f"s/{n}" not in done_before
        ]


# -- compensate_run --------------------------------------------------------------------


async def test_compensate_run_retries_failed_undos(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """NEEDS_INTERVENTION: compensate_run retries the failed undo (same key), once fixed."""
    shop = Shop()
    shop.undo_fails.add("a")
    journal = MemoryJournal()
    scene = Scene(
        "s", [shop.act("a"), shop.act("b"), shop.act("c", fail=True)], saga=True
    )
    result = await run_scene(scene, {}, journal=journal, run_id="r")
    assert result.compensation is not None
    assert not result.compensation.ok
    assert (await journal.get_run("r")).status is RunStatus.NEEDS_INTERVENTION  # type: ignore[union-attr]
    needing = await journal.runs(status=RunStatus.NEEDS_INTERVENTION)
    assert [r.run_id for r in needing] == ["r"]
    shop.log.clear()
    again = await compensate_run(journal, "r", [scene])  # still failing
    assert shop.log == ["undo r/s/a#compensate result=a-receipt"]
    assert again.compensation is not None
    assert not again.compensation.ok
    shop.undo_fails.clear()
    shop.log.clear()
    fixed = await compensate_run(journal, "r", [scene])
    assert shop.log == ["undo r/s/a#compensate result=a-receipt"]
    assert fixed.compensation is not None
    assert fixed.compensation.ok
    assert fixed.state == {}
    assert isinstance(fixed.error, RecordedFailure)
    assert fixed.error.error_type == "Declined"
    assert fixed.failed_step == "s/c"
    assert (await journal.get_run("r")).status is RunStatus.COMPENSATED  # type: ignore[union-attr]
    shop.log.clear()
    idle = await compensate_run(journal, "r", [scene])
    assert shop.log == []
    assert idle.compensation == trio_sagas.CompensationReport()


async def test_compensate_run_undoes_a_failed_plain_scene(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A non-saga run that failed keeps its completed steps (FAILED) until compensate_run."""
    shop = Shop()
    journal = MemoryJournal()
    inner = Scene("pay", [shop.act("hold"), shop.act("capture", fail=True)], saga=True)
    scene = Scene("s", [shop.act("a"), Chorus("c", [shop.act("x")]), inner])
    await run_scene(scene, {}, journal=journal, run_id="r")
    assert shop.log[-1] == "undo r/s/pay/hold#compensate result=hold-receipt"
    assert (await journal.get_run("r")).status is RunStatus.FAILED  # type: ignore[union-attr]
    shop.log.clear()
    result = await compensate_run(journal, "r", {"s": scene})
    assert shop.log == [
        "undo r/s/c/x#compensate result=x-receipt",
        "undo r/s/a#compensate result=a-receipt",
    ]
    assert result.state == {}
    assert (await journal.get_run("r")).status is RunStatus.COMPENSATED  # type: ignore[union-attr]


async def test_compensate_run_refusals(autojump_clock: trio.testing.MockClock) -> None:
    """Unknown, running or succeeded runs, and missing or changed scenes, are refused."""
    shop = Shop()
    journal = MemoryJournal()
    scene = Scene("s", [shop.act("a")], saga=True)
    await run_scene(scene, {}, journal=journal, run_id="ok")
    with pytest.raises(RunNotFoundError, match="no run 'nope'"):
        await compensate_run(journal, "nope", [scene])
    with pytest.raises(ValueError, match="succeeded"):
        await compensate_run(journal, "ok", [scene])
    crashed, _ = await crash_after(scene, 2)
    with pytest.raises(ValueError, match="has not finished"):
        await compensate_run(crashed, "r", [scene])
    failing = Scene("f", [shop.act("a"), shop.act("b", fail=True)])
    await run_scene(failing, {}, journal=journal, run_id="failed")
    with pytest.raises(ValueError, match="scene 'f', which is not in scenes"):
        await compensate_run(journal, "failed", [scene])
    with pytest.raises(ValueError, match="'f/a'"):
        await compensate_run(journal, "failed", [Scene("f", [shop.act("z")])])
    with pytest.raises(ValueError, match="key 'x' does not match"):
        await compensate_run(journal, "failed", {"x": failing})
    with pytest.raises(TypeError, match="journal must implement"):
        await compensate_run(object(), "failed", [failing])  # type: ignore[arg-type]
    assert (await journal.get_run("failed")).status is RunStatus.FAILED  # type: ignore[union-attr]


async def test_recovered_undo_sees_decoded_state_and_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Recovery hands undos the journaled state and results, decoded, and deps."""
    seen: list[object] = []

    async def run(ctx: StepContext, state: dict[str, Any]) -> dict[str, int]:
        state["n"] = state.get("n", 0) + 1
        return {"charge": 42}

    async def undo(ctx: StepContext, state: dict[str, Any]) -> None:
        seen.append((dict(state), ctx.result, ctx.deps))

    scene = Scene("s", [Act("a", run, compensate=undo), Act("b", run)], saga=True)
    crashed, _ = await crash_after(scene, 3, state={"order": "o-1"})
    await recover(crashed, [scene], deps="clients")
    assert seen == [({"order": "o-1", "n": 1}, {"charge": 42}, "clients")]


async def test_recovery_events_go_to_the_observer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """recover() reports its events, which continue the run's seq numbering."""
    shop = Shop()
    scene = Scene("s", [shop.act("a"), shop.act("b")], saga=True)
    crashed, _ = await crash_after(scene, 3)
    events: list[trio_sagas.Event] = []
    report = await recover(crashed, [scene], observer=events.append)
    (result,) = report.results
    writes = [e for e in events if isinstance(e, trio_sagas.JournalWritten)]
    assert writes  # one per journal write, not among the run's events
    events = [e for e in events if not isinstance(e, trio_sagas.JournalWritten)]
    assert tuple(events) == result.events
    assert [type(e).__name__ for e in events] == [
        "CompensationStarted",
        "CompensationStepStarted",
        "CompensationStepCompleted",
        "CompensationStepStarted",
        "CompensationStepCompleted",
        "CompensationCompleted",
    ]
    assert isinstance(events[1], CompensationStepStarted)
    assert events[1].step == "s/b"
    assert events[0].seq == (await crashed.events("r"))[-len(events) - 1].seq + 1  # type: ignore[attr-defined]


async def test_undecodable_or_inconsistent_journal_is_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A result the codec cannot decode, or an entry without its start, is reported."""
    shop = Shop()
    scene = Scene("s", [shop.act("a"), shop.act("b")], saga=True)
    crashed, _ = await crash_after(scene, 3)
    entries = crashed.entries["r"]
    index = next(i for i, e in enumerate(entries) if e.kind == "ActCompleted")
    good = entries[index]
    entries[index] = JournalEntry(
        run_id="r", seq=good.seq, kind=good.kind, step=good.step, at=0.0, value=b"{"
    )
    (skipped,) = (await recover(crashed, [scene])).skipped
    assert "cannot decode a journaled value" in skipped.reason
    entries[index] = good
    del entries[:index]  # SceneStarted and ActStarted(a): a completes unstarted
    (skipped,) = (await recover(crashed, [scene])).skipped
    assert "the journal is inconsistent" in skipped.reason
    assert shop.log == ["run r/s/a", "run r/s/b"]


async def test_concurrent_recoveries_do_not_share_a_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two recover() calls at once in one process: each run is rolled back once."""
    shop = Shop()
    scene = Scene("s", [shop.act("a"), shop.act("b")], saga=True)
    crashed, _ = await crash_after(scene, 3)
    shop.log.clear()
    reports: list[trio_sagas.RecoveryReport] = []

    async def one() -> None:
        reports.append(await recover(crashed, [scene]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
    assert sorted(len(r.results) for r in reports) == [0, 1]
    assert shop.log == [
        "undo r/s/b#compensate result=None",
        "undo r/s/a#compensate result=a-receipt",
    ]


async def test_replay_keeps_what_a_resume_needs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Replay rebuilds, besides the rollback records, the completed acts with
    their results, the uncertain act, and every group's position (per Chorus
    branch and nested scene)."""
    from trio_sagas._saga._replay import Replay

    shop = Shop()
    scene = Scene(
        "s",
        [
            shop.act("a"),
            trio_sagas.Chorus("c", [shop.act("x"), shop.act("y")]),
            Scene("n", [shop.act("m1"), shop.act("m2")]),
        ],
        saga=True,
    )
    journal = MemoryJournal()
    await run_scene(scene, {}, journal=journal, run_id="r")
    entries = journal.entries["r"]
    cut = next(
        i
        for i, e in enumerate(entries)
        if e.kind == "ActStarted" and e.step == "s/n/m2"
    )
    record = journal.records["r"]
    replay = Replay(
        record,
        scene,
        tuple(entries[: cut + 1]),
        decode=journal.codec.decode,
        deps=None,
        retry_failed=False,
    )
    done = list(replay.completed)  # the branches in whichever order they ended
    assert (done[0], set(done[1:3]), done[3]) == ("s/a", {"s/c/x", "s/c/y"}, "s/n/m1")
    assert replay.completed["s/c/x"] == "x-receipt"
    assert replay.uncertain() == ("s/n/m2",)
    assert replay.position("s") == ("a", "c")
    assert set(replay.position("s/c")) == {"x", "y"}
    assert replay.position("s/n") == ("m1",)
    assert replay.open_groups == {"s", "s/n"}
