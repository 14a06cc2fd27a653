"""Durable undos registered inside a step, acts whose effect may have happened
though they failed, and the journal's share of a step's time."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    Act,
    ActCompleted,
    Fence,
    JournalEntry,
    JournalWritten,
    RetryPolicy,
    RunStatus,
    Scene,
    StepContext,
    compensate_run,
    recover,
    run_scene,
)
from trio_sagas._saga import _durable

from .memory_journal import MemoryJournal

ONCE = RetryPolicy(max_attempts=1)
LOG: list[str] = []
FAILING: set[str] = set()


@trio_sagas.durable_undo("test-void-charge")
async def void_charge(charge_id: str, amount: dict[str, Any]) -> None:
    LOG.append(f"void {charge_id} {amount['cents']}")
    if charge_id in FAILING:
        raise RuntimeError(f"cannot void {charge_id}")


@pytest.fixture(autouse=True)
def _fresh() -> None:
    LOG.clear()
    FAILING.clear()


async def _reserve(ctx: StepContext, state: dict[str, Any]) -> str:
    return "hold"


async def _release(ctx: StepContext, state: dict[str, Any]) -> None:
    LOG.append("release")


async def _charge(ctx: StepContext, state: dict[str, Any]) -> None:
    ctx.register_compensation(void_charge, "c-1", {"cents": 500}, name="void c-1")
    raise TimeoutError("gateway timed out after charging")


async def _refund(ctx: StepContext, state: dict[str, Any]) -> None:
    LOG.append(f"refund result={ctx.result}")


def _scene(*, on_failure: bool = False) -> Scene:
    return Scene(
        "order",
        [
            Act("reserve", _reserve, compensate=_release),
            Act(
                "charge",
                _charge,
                compensate=_refund,
                compensate_on_failure=on_failure,
                compensation_retry=ONCE,
            ),
        ],
        saga=True,
    )


# -- registration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "args", "message"),
    [
        ("plain", ("c-1",), "@trio_sagas.durable_undo"),
        ("durable", ({1, 2}, {}), "must be JSON"),
        ("durable", (("c", 1), {}), "survive JSON"),
        ("durable", ("c-1", {1: 2}), "survive JSON"),
    ],
)
async def test_journaled_registration_refuses_what_cannot_run_again(
    autojump_clock: trio.testing.MockClock, fn: str, args: tuple[Any, ...], message: str
) -> None:
    """Under a journal, an undo that is not a durable_undo or has non-JSON
    arguments is refused at registration, saying what to do instead."""
    errors: list[Exception] = []

    async def plain(*args: object) -> None:
        pass

    async def step(ctx: StepContext, state: object) -> None:
        try:
            ctx.register_compensation(plain if fn == "plain" else void_charge, *args)
        except TypeError as exc:
            errors.append(exc)
            raise

    scene = Scene("s", [Act("a", step)], saga=True)
    result = await run_scene(scene, {}, journal=MemoryJournal(), run_id="r")
    assert not result.ok
    assert len(errors) == 1
    assert message in str(errors[0])
    assert result.error is errors[0]


async def test_memory_runs_accept_any_undo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without a journal, register_compensation takes any async function."""
    seen: list[object] = []

    async def undo(value: object) -> None:
        seen.append(value)

    async def step(ctx: StepContext, state: object) -> None:
        ctx.register_compensation(undo, object)
        raise ValueError("x")

    await run_scene(Scene("s", [Act("a", step)], saga=True), {})
    assert seen == [object]


def test_durable_undo_names_one_function() -> None:
    """A name already taken by another function is refused."""

    async def other() -> None:
        pass

    with pytest.raises(ValueError, match="test-void-charge"):
        trio_sagas.durable_undo("test-void-charge")(other)
    assert trio_sagas.durable_undo("test-void-charge")(void_charge) is void_charge


# -- the act whose effect may have happened ---------------------------------------


@pytest.mark.parametrize("on_failure", [False, True])
async def test_failed_act_compensated_only_when_its_effect_may_exist(
    autojump_clock: trio.testing.MockClock, on_failure: bool
) -> None:
    """A failed act's own compensate runs only with compensate_on_failure=True
    (ctx.result None), after its registered undos; the earlier steps are undone too."""
    result = await run_scene(_scene(on_failure=on_failure), {}, journal=MemoryJournal())
    assert isinstance(result.error, TimeoutError)
    refund = ["refund result=None"] if on_failure else []
    assert ["void c-1 500", *refund, "release"] == LOG
    assert result.compensation is not None
    assert result.compensation.ok


@pytest.mark.parametrize("durable", [False, True])
async def test_cancelled_act_with_effect_is_compensated(
    autojump_clock: trio.testing.MockClock, durable: bool
) -> None:
    """Cancelled from outside while run runs: with compensate_on_failure the
    act's compensate runs in the rollback after the undo it registered (in
    memory and journaled), and the caller sees trio.Cancelled."""

    async def slow(ctx: StepContext, state: object) -> None:
        ctx.register_compensation(void_charge, "c-2", {"cents": 1})
        await trio.sleep(10)

    scene = Scene(
        "s",
        [
            Act("reserve", _reserve, compensate=_release),
            Act("pay", slow, compensate=_refund, compensate_on_failure=True),
        ],
        saga=True,
    )
    journal = MemoryJournal() if durable else None
    with trio.fail_after(60):
        with trio.move_on_after(1) as scope:
            await run_scene(scene, {}, journal=journal, run_id="r")
    assert scope.cancelled_caught
    assert LOG == ["void c-2 1", "refund result=None", "release"]
    if journal is not None:
        kinds = _kinds(journal)
        assert kinds.count("CompensationActionCompleted") == 1
        assert "ActCancelled" in kinds


# -- recovery ---------------------------------------------------------------------


def _status(journal: MemoryJournal) -> RunStatus:
    """Run "r"'s status (a call, so that mypy does not narrow it)."""
    return journal.records["r"].status


def _kinds(journal: MemoryJournal, run_id: str = "r") -> list[str]:
    return [e.kind for e in journal.entries[run_id]]


@pytest.mark.parametrize("on_failure", [False, True])
async def test_recovery_after_a_crash_at_every_write(
    autojump_clock: trio.testing.MockClock, on_failure: bool
) -> None:
    """Cut the journal after each write: recovery runs a registered undo iff its
    registration is durable and its completion is not; the failed act's own
    compensate iff compensate_on_failure and its undo did not complete."""
    source = MemoryJournal()
    await run_scene(_scene(on_failure=on_failure), {}, journal=source, run_id="r")
    for cut in range(1, len(source.writes)):
        crashed = source.as_after(cut)
        kinds = _kinds(crashed)
        LOG.clear()
        with trio.fail_after(60):
            await recover(crashed, [_scene(on_failure=on_failure)])
        registered = "CompensationRegistered" in kinds
        voided = "CompensationActionCompleted" in kinds
        failed = "ActFailed" in kinds
        uncertain = kinds.count("ActStarted") == 2 and not failed
        charge_done = kinds.count("CompensationStepCompleted") >= 1
        assert LOG.count("void c-1 500") == int(registered and not voided), cut
        # An uncertain act (started, never ended) is compensated anyway.
        refunds = int((uncertain or (on_failure and failed)) and not charge_done)
        assert LOG.count("refund result=None") == refunds, (cut, kinds)
        status = crashed.records["r"].status
        assert status in (RunStatus.COMPENSATED, RunStatus.FAILED), cut
        LOG.clear()
        await recover(crashed, [_scene(on_failure=on_failure)])
        assert LOG == []  # a second recovery finds nothing to do


@trio_sagas.durable_undo("test-numbered-undo")
async def numbered_undo(index: int) -> None:
    LOG.append(f"undo {index}")


@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 4), cut=st.floats(0, 1), fails=st.booleans())
def test_each_registered_undo_runs_until_journaled_done(
    count: int, cut: float, fails: bool
) -> None:
    """Property: cut the journal after any write of a run whose act registered
    *count* undos; recovery runs exactly those not journaled as completed, last
    registered first, and a second recovery runs none."""

    async def step(ctx: StepContext, state: object) -> str:
        for index in range(count):
            ctx.register_compensation(numbered_undo, index)
        if fails:
            raise ValueError("declined")
        return "ok"

    async def boom(ctx: StepContext, state: object) -> None:
        raise ValueError("later step failed")

    scene = Scene("s", [Act("a", step), Act("b", boom)], saga=True)

    async def main() -> None:
        source = MemoryJournal()
        await run_scene(scene, {}, journal=source, run_id="r")
        crashed = source.as_after(max(1, int(cut * len(source.writes))))
        entries = crashed.entries["r"]
        registered = [
            int(e.data["index"]) for e in entries if e.kind == "CompensationRegistered"
        ]
        done = {
            int(e.data["index"])
            for e in entries
            if e.kind == "CompensationActionCompleted"
        }
        LOG.clear()
        await recover(crashed, [scene])
        expected = [f"undo {i}" for i in reversed(registered) if i not in done]
        assert expected == LOG
        LOG.clear()
        await recover(crashed, [scene])
        assert LOG == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_recovery_journals_each_registered_undo_it_ran(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The process died once its act's three undos were registered: the
    recovery runs them, last first, and journals each completion, so a
    recovery dying later would not run them again."""

    async def step(ctx: StepContext, state: object) -> str:
        for index in range(3):
            ctx.register_compensation(numbered_undo, index)
        return "ok"

    async def boom(ctx: StepContext, state: object) -> None:
        raise ValueError("later step failed")

    scene = Scene("s", [Act("a", step), Act("b", boom)], saga=True)
    source = MemoryJournal()
    await run_scene(scene, {}, journal=source, run_id="r")
    cut = next(
        i
        for i in range(1, len(source.writes) + 1)
        if [e.kind for e in source.as_after(i).entries["r"]].count(
            "CompensationRegistered"
        )
        == 3
    )
    crashed = source.as_after(cut)
    assert "CompensationActionCompleted" not in _kinds(crashed)
    LOG.clear()
    await recover(crashed, [scene])
    assert LOG == ["undo 2", "undo 1", "undo 0"]
    done = [
        int(e.data["index"])
        for e in crashed.entries["r"]
        if e.kind == "CompensationActionCompleted"
    ]
    assert done == [2, 1, 0]


async def test_failed_registered_undo_needs_intervention_then_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A registered undo that fails for good leaves the run NEEDS_INTERVENTION;
    compensate_run runs it again (only it), and a third call runs nothing."""
    FAILING.add("c-1")
    journal = MemoryJournal()
    result = await run_scene(_scene(on_failure=True), {}, journal=journal, run_id="r")
    assert result.compensation is not None
    assert not result.compensation.ok
    assert _status(journal) is RunStatus.NEEDS_INTERVENTION
    assert LOG == ["void c-1 500", "refund result=None", "release"]
    LOG.clear()
    FAILING.clear()
    again = await compensate_run(journal, "r", [_scene(on_failure=True)])
    assert again.compensation is not None
    assert again.compensation.ok
    assert LOG == ["void c-1 500", "refund result=None"]
    assert _status(journal) is RunStatus.COMPENSATED
    LOG.clear()
    await compensate_run(journal, "r", [_scene(on_failure=True)])
    assert LOG == []


async def test_unknown_undo_name_is_reported_not_run(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recovery in a process that does not know a journaled undo's name skips
    the run, naming the undo and what to import."""
    source = MemoryJournal()
    await run_scene(_scene(), {}, journal=source, run_id="r")
    cut = next(
        n
        for n in range(1, len(source.writes))
        if "CompensationStepStarted" in _kinds(source.as_after(n))
    )
    crashed = source.as_after(cut)  # the rollback began; the registration is durable
    monkeypatch.delitem(_durable._REGISTRY, "test-void-charge")
    report = await recover(crashed, [_scene()])
    assert not report.results
    (skipped,) = report.skipped
    assert "'test-void-charge'" in skipped.reason
    assert "durable_undo" in skipped.reason
    assert crashed.records["r"].status is RunStatus.RUNNING


# -- journal timings --------------------------------------------------------------


class SlowJournal(MemoryJournal):
    """A memory journal whose every append takes 0.5 s (virtual)."""

    async def append(
        self,
        fence: Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        await trio.sleep(0.5)
        await super().append(fence, entries, state=state, status=status)


async def test_step_time_and_journal_time_are_reported_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ActCompleted.duration is the act's own time, journal_wait its intent's
    write; the result sums the waits; one JournalWritten per write."""

    async def work(ctx: StepContext, state: object) -> None:
        await trio.sleep(1)

    events: list[trio_sagas.Event] = []
    scene = Scene("s", [Act("a", work), Act("b", work)])
    journal: Any = SlowJournal()
    result = await run_scene(
        scene, {}, journal=journal, run_id="r", observer=events.append
    )
    done = [e for e in events if isinstance(e, ActCompleted)]
    assert [(e.duration, e.journal_wait) for e in done] == [(1.0, 0.5), (1.0, 0.5)]
    assert result.journal_wait == 1.0
    writes = [e for e in events if isinstance(e, JournalWritten)]
    assert [(w.entries, w.wait, w.commit) for w in writes] == [
        (2, 0.0, 0.5),  # SceneStarted, a's intent
        (2, 0.0, 0.5),  # a's completion, b's intent
        (2, 0.0, 0.5),  # b's completion, SceneCompleted (the final write)
    ]
    assert writes[-1].seq == len(result.events) - 1
    assert result.events == tuple(
        e for e in events if not isinstance(e, JournalWritten)
    )


async def test_memory_runs_have_no_journal_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without a journal, journal_wait is 0 everywhere."""

    async def work(ctx: StepContext, state: object) -> None:
        await trio.sleep(1)

    result = await run_scene(Scene("s", [Act("a", work)]), {})
    (done,) = [e for e in result.events if isinstance(e, ActCompleted)]
    assert (done.duration, done.journal_wait, result.journal_wait) == (1.0, 0.0, 0.0)


# -- real processes, SIGKILLed during the rollback -------------------------------

CHILD = pathlib.Path(__file__).with_name("durable_undo_child.py")
ROOT = CHILD.parent.parent


def _has_line(log: pathlib.Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


async def _wait_for(log: pathlib.Path, text: str) -> None:
    """Poll the other process's log (no trio.Event reaches across processes)."""
    with trio.fail_after(20):
        while not _has_line(log, text):  # noqa: ASYNC110
            await trio.sleep(0.02)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("hang", ["void", "refund"])
async def test_sigkill_during_the_rollback_of_a_registered_undo(
    tmp_path: pathlib.Path, hang: str
) -> None:
    """A child process is SIGKILLed inside an undo of the failed charge; a
    recovery in another process runs what was not journaled as done: every
    undo ends done exactly once, a completed durable undo never runs again."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    args = [sys.executable, str(CHILD), str(db), str(log)]
    proc = await trio.lowlevel.open_process(
        [*args, f"hang-{hang}"], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    try:
        await _wait_for(log, f"{hang} start")
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    async with trio_sagas.SQLiteJournal(db) as operator:
        for worker in await operator.workers():
            if worker.pid != os.getpid():
                await operator.expire_worker(worker.worker_id)
    with trio.fail_after(60):
        done = await trio.run_process(
            [*args, "recover"], cwd=ROOT, capture_stdout=True, capture_stderr=True
        )
    out = json.loads(done.stdout)
    assert out["results"] == ["order-1"]
    assert out["statuses"] == {"order-1": "COMPENSATED"}
    lines = log.read_text().splitlines()
    ends = [line.split()[0] for line in lines if " done " in line]
    assert sorted(ends) == ["refund", "release", "void"]  # each once
    starts = [line.split()[0] for line in lines if " start " in line]
    # The void completed before the kill never started again.
    assert starts.count("void") == (2 if hang == "void" else 1)
    assert starts.count("refund") == (2 if hang == "refund" else 1)
