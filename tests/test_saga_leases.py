"""Leases and fencing in the runner, on virtual time (the memory journal's
leases run on the trio clock); run_worker; interruptions during a rollback."""

from __future__ import annotations

import contextlib
import math
import pathlib
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    Act,
    JournalEntry,
    LeaseLostError,
    RunClaimedError,
    RunStatus,
    Scene,
    SQLiteJournal,
    StepContext,
)

from .memory_journal import MemoryJournal
from .test_saga_property import _Builder, _nodes


def status_of(journal: MemoryJournal) -> RunStatus:
    """Run "r"'s status (a call, so that mypy does not narrow it)."""
    return journal.records["r"].status


class Shop:
    """Acts that log their runs and undos."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def act(self, name: str, *, fail: bool = False, sleep: float = 0.0) -> Act:
        async def run(ctx: StepContext, state: dict[str, Any]) -> str:
            self.log.append(f"run {name}")
            if sleep:
                await trio.sleep(sleep)
            if fail:
                raise ValueError(f"{name} declined")
            return f"{name}-receipt"

        async def compensate(ctx: StepContext, state: dict[str, Any]) -> None:
            self.log.append(f"undo {name} result={ctx.result}")

        return Act(name, run, compensate=compensate)


async def test_lease_lapse_mid_step_stops_the_run_without_undo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Renewals hang (a partitioned worker) while a step runs: the run is
    cancelled at the local lease deadline (lease - lease/10 after the last
    renewal was sent), runs no undo, and run_scene raises LeaseLostError;
    another worker takes it over once the lease lapsed and rolls it back."""
    shop = Shop()
    scene = Scene("s", [shop.act("a"), shop.act("b", sleep=100)], saga=True)
    journal = MemoryJournal(lease=3.0)
    journal.stall_renewals = trio.Event()  # never set
    with trio.fail_after(60), pytest.raises(LeaseLostError, match="ran out"):
        await run_scene_at(scene, journal)
    assert trio.current_time() == 3.0 - 3.0 / 10  # the local lease deadline
    assert shop.log == ["run a", "run b"]  # no undo here
    assert status_of(journal) is RunStatus.RUNNING
    other = journal.worker()
    assert (await trio_sagas.recover(other, [scene])).results == ()  # lease live
    await trio.sleep_until(3.0)
    report = await trio_sagas.recover(other, [scene])
    assert [r.run_id for r in report] == ["r"]
    assert shop.log[2:] == ["undo b result=None", "undo a result=a-receipt"]
    assert status_of(journal) is RunStatus.COMPENSATED
    assert journal.records["r"].epoch == 2


async def run_scene_at(scene: Scene, journal: MemoryJournal) -> trio_sagas.SagaResult:
    return await trio_sagas.run_scene(scene, {}, journal=journal, run_id="r")


async def test_expired_worker_loses_its_run_to_a_recovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An operator expires a live worker and another worker recovers its run
    while a step runs: the old holder runs no further step and no undo; its
    run_scene raises RunClaimedError; every undo ran once, by the new holder."""
    shop = Shop()
    scene = Scene(
        "s", [shop.act("a"), shop.act("b", sleep=10), shop.act("c")], saga=True
    )
    journal = MemoryJournal()
    other = journal.worker()
    reports: list[trio_sagas.RecoveryReport] = []

    async def take_over() -> None:
        await trio.sleep(5)
        assert await other.expire_worker(journal.worker_id)
        reports.append(await trio_sagas.recover(other, [scene]))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(take_over)
            with pytest.raises(RunClaimedError):
                await run_scene_at(scene, journal)
    assert [r.run_id for r in reports[0]] == ["r"]
    assert shop.log == [
        "run a",
        "run b",
        "undo b result=None",
        "undo a result=a-receipt",
    ]
    assert status_of(journal) is RunStatus.COMPENSATED


async def test_append_checks_the_fence_directly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An append with a stale epoch, another worker's id, a seq gap or a lapsed
    lease writes nothing (the owner check, tested without the runner)."""
    journal = MemoryJournal(lease=3.0)
    fence = await journal.create_run("r", scene="s", state=b"{}")
    entry = JournalEntry("r", 0, "SceneStarted", "s", 0.0)
    stale = trio_sagas.Fence("r", fence.worker, fence.epoch + 1)
    with pytest.raises(RunClaimedError):
        await journal.append(stale, [entry])
    other = journal.worker()
    await other.create_run("q", scene="s", state=b"{}")
    with pytest.raises(RunClaimedError):
        await journal.append(trio_sagas.Fence("r", other.worker_id, 1), [entry])
    with pytest.raises(trio_sagas.JournalError, match="do not continue"):
        await journal.append(fence, [JournalEntry("r", 5, "ActStarted", "s/a", 0.0)])
    await trio.sleep(3)
    with pytest.raises(LeaseLostError):
        await journal.append(fence, [entry])
    assert journal.entries["r"] == []
    assert journal.records["r"].last_seq == -1


async def test_concurrent_recover_calls_report_one_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two recover() calls at once: one rolls the run back, the other reports it
    skipped under HELD_ELSEWHERE (the same reason as a run still running)."""
    shop = Shop()

    async def slow_undo(ctx: StepContext, state: object) -> None:
        await trio.sleep(1)
        shop.log.append("undo a")

    scene = Scene(
        "s",
        [Act("a", shop.act("a").run, compensate=slow_undo), shop.act("b")],
        saga=True,
    )
    journal = MemoryJournal()
    fence = await journal.create_run("r", scene="s", state=b"{}")
    await journal.append(
        fence,
        [
            JournalEntry("r", 0, "SceneStarted", "s", 0.0),
            JournalEntry("r", 1, "ActStarted", "s/a", 0.0),
            JournalEntry("r", 2, "ActCompleted", "s/a", 0.0, value=b'"x"'),
        ],
    )
    await journal.expire_worker(journal.worker_id)
    reports: list[trio_sagas.RecoveryReport] = []

    async def one(worker: MemoryJournal) -> None:
        reports.append(await trio_sagas.recover(worker, [scene]))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, journal.worker())
            nursery.start_soon(one, journal.worker())
    winner, loser = sorted(reports, key=len, reverse=True)
    assert [r.run_id for r in winner] == ["r"]
    assert [(s.run_id, s.reason) for s in loser.skipped] == [
        ("r", trio_sagas.HELD_ELSEWHERE)
    ]
    assert shop.log == ["undo a"]


async def test_keyboard_interrupt_in_a_durable_rollback_leaves_it_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A real KeyboardInterrupt inside an undo: the run stays RUNNING (never
    COMPENSATED), and a recovery finishes it, running the interrupted undo
    again and every earlier step's undo."""
    log: list[str] = []
    interrupt = [True]

    def act(name: str) -> Act:
        async def run(ctx: StepContext, state: object) -> str:
            if name == "c":
                raise ValueError("declined")
            return name

        async def undo(ctx: StepContext, state: object) -> None:
            log.append(f"undo {name}")
            if name == "b" and interrupt[0]:
                interrupt[0] = False
                raise KeyboardInterrupt

        return Act(name, run, compensate=undo)

    scene = Scene("s", [act("a"), act("b"), act("c")], saga=True)
    journal = MemoryJournal()
    with trio.fail_after(60), pytest.raises(KeyboardInterrupt):
        await run_scene_at(scene, journal)
    assert log == ["undo b"]
    assert status_of(journal) is RunStatus.RUNNING
    other = journal.worker()
    await other.expire_worker(journal.worker_id)  # the interrupted process is gone
    report = await trio_sagas.recover(other, [scene])
    assert [r.run_id for r in report] == ["r"]
    assert log == ["undo b", "undo b", "undo a"]
    assert status_of(journal) is RunStatus.COMPENSATED


async def test_outside_cancel_between_rollback_writes_does_not_stop_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled from outside in the middle of a durable rollback (with slow
    journal writes): the rollback is shielded between its writes too, every
    undo runs and is journaled, the run ends COMPENSATED, then Cancelled
    propagates."""
    log: list[str] = []
    journal = MemoryJournal()
    scope = trio.CancelScope()

    def act(name: str) -> Act:
        async def run(ctx: StepContext, state: object) -> str:
            if name == "c":
                journal.gate = trio.Event()  # a slow disk from now on
                gate = journal.gate

                async def open_gate() -> None:
                    await trio.sleep(1)
                    gate.set()

                nursery.start_soon(open_gate)
                raise ValueError("declined")
            return name

        async def undo(ctx: StepContext, state: object) -> None:
            log.append(f"undo {name}")
            if name == "b":
                scope.cancel(reason="test: shutting down")

        return Act(name, run, compensate=undo)

    scene = Scene("s", [act("a"), act("b"), act("c")], saga=True)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            with scope:
                result = await run_scene_at(scene, journal)
                await trio.lowlevel.checkpoint()  # the cancel, delivered now
    assert scope.cancelled_caught
    assert result.failed_step == "s/c"
    assert log == ["undo b", "undo a"]
    assert status_of(journal) is RunStatus.COMPENSATED
    kinds = [e.kind for e in journal.entries["r"]]
    assert kinds.count("CompensationStepCompleted") == 2
    assert kinds[-1] == "CompensationCompleted"


@pytest.mark.parametrize("durable", [False, True])
async def test_failed_act_runs_its_partial_undo_not_its_compensate(
    autojump_clock: trio.testing.MockClock, durable: bool
) -> None:
    """An act that registers a partial undo, then fails: the partial undo runs,
    its own compensate does not (in memory and with a journal)."""
    log: list[str] = []

    @trio_sagas.durable_undo("test-leases-void")  # journaled: found by name
    async def void(hold: str) -> None:
        log.append(f"void {hold}")

    async def charge(ctx: StepContext, state: object) -> None:
        ctx.register_compensation(void, "hold-1")
        raise ValueError("declined after the hold")

    async def refund(ctx: StepContext, state: object) -> None:
        log.append(f"refund {ctx.result}")

    scene = Scene("s", [Act("charge", charge, compensate=refund)], saga=True)
    journal = MemoryJournal() if durable else None
    result = await trio_sagas.run_scene(scene, {}, journal=journal)
    assert not result.ok
    assert log == ["void hold-1"]
    assert result.compensation is not None
    assert result.compensation.ok


async def test_run_worker_takes_over_dead_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """run_worker claims runs whose worker died and rolls them back as recover()
    does; a run claimed max_claims times goes to NEEDS_INTERVENTION."""
    shop = Shop()
    scene = Scene("s", [shop.act("a"), shop.act("b"), shop.act("c")], saga=True)
    source = MemoryJournal()
    await trio_sagas.run_scene(scene, {}, journal=source, run_id="r")
    crashed = source.as_after(3)  # create, a's intent, b's intent: b uncertain
    assert status_of(crashed) is RunStatus.RUNNING
    crashed.max_claims = 1
    shop.log.clear()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(trio_sagas.run_worker, crashed, [scene])
            while status_of(crashed) is RunStatus.RUNNING:  # noqa: ASYNC110
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert status_of(crashed) is RunStatus.COMPENSATED
    assert shop.log == ["undo b result=None", "undo a result=a-receipt"]
    # A run taken over once already (claims == max_claims) is not claimed again.
    again = source.as_after(3)
    again.max_claims = 1
    again.records["r"] = attrs.evolve(again.records["r"], claims=1)
    assert await again.claim_batch(limit=10) == ()
    assert status_of(again) is RunStatus.NEEDS_INTERVENTION


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch": 0}, ValueError, "batch"),
        ({"batch": "2"}, TypeError, "batch"),
        ({"poll": 0}, ValueError, "poll"),
        ({"poll": math.inf}, ValueError, "poll"),
        ({"observer": 3}, TypeError, "observer"),
    ],
)
async def test_run_worker_refuses_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad arguments fail before the worker starts."""
    with pytest.raises(error, match=match):
        await trio_sagas.run_worker(MemoryJournal(), [], **kwargs)
    with pytest.raises(TypeError, match="journal must implement"):
        await trio_sagas.run_worker("j.db", [])  # type: ignore[arg-type]


async def test_run_worker_on_sqlite(tmp_path: pathlib.Path) -> None:
    """run_worker on SQLite takes over a run whose worker was expired."""
    db = tmp_path / "j.db"
    undone: list[str] = []

    async def back(ctx: StepContext, state: object) -> None:
        undone.append(ctx.path)

    async def ok(ctx: StepContext, state: object) -> str:
        return "x"

    scene = Scene("s", [Act("a", ok, compensate=back)], saga=True)
    with SQLiteJournal(db) as dead:
        fence = await dead.create_run("r", scene="s", state=b"{}")
        await dead.append(
            fence,
            [
                JournalEntry("r", 0, "SceneStarted", "s", 0.0),
                JournalEntry("r", 1, "ActStarted", "s/a", 0.0),
            ],
        )
    async with SQLiteJournal(db, lease=1.0) as journal:
        await journal.expire_worker(dead.worker_id)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(trio_sagas.run_worker, journal, {"s": scene})
                while (await journal.get_run("r")).status is RunStatus.RUNNING:  # type: ignore[union-attr]  # noqa: ASYNC110
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        run = await journal.get_run("r")
    assert run is not None
    assert (run.status, run.claims, run.epoch) == (RunStatus.COMPENSATED, 1, 2)
    assert undone == ["s/a"]


async def test_lease_is_renewed_through_a_long_rollback_after_an_outside_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled from outside, a durable run rolls back for longer than its
    lease: the heartbeat is shielded too, so the lease stays live, the undo is
    journaled and the run ends COMPENSATED."""
    log: list[str] = []

    async def hold_it(ctx: StepContext, state: object) -> str:
        return "held"

    async def slow_release(ctx: StepContext, state: object) -> None:
        await trio.sleep(10)
        log.append(f"released at {trio.current_time()}")

    async def wait(ctx: StepContext, state: object) -> None:
        await trio.sleep_forever()

    scene = Scene(
        "s",
        [Act("a", hold_it, compensate=slow_release), Act("b", wait)],
        saga=True,
    )
    journal = MemoryJournal(lease=3.0)
    with trio.fail_after(60):
        with trio.move_on_after(1):
            await run_scene_at(scene, journal)
    assert log == ["released at 11.0"]
    assert status_of(journal) is RunStatus.COMPENSATED


async def test_recover_refuses_bad_arguments_up_front() -> None:
    """Two definitions with one name, or a negative stale_after, are refused
    before anything is read, even with no RUNNING run in the journal."""
    scene = Scene("s")
    with pytest.raises(ValueError, match="scenes has the name 's' twice"):
        await trio_sagas.recover(MemoryJournal(), [scene, scene])
    with pytest.raises(ValueError, match="stale_after must be >= 0 seconds, got -1"):
        await trio_sagas.recover(MemoryJournal(), [scene], stale_after=-1)
    with pytest.raises(TypeError, match="stale_after"):
        await trio_sagas.recover(MemoryJournal(), [scene], stale_after="1")  # type: ignore[arg-type]


@given(
    children=st.lists(_nodes(2), min_size=1, max_size=4),
    cut=st.floats(0, 1),
    workers=st.integers(2, 4),
)
@settings(max_examples=60, deadline=None)
def test_concurrent_recoveries_property(
    children: list[tuple[Any, ...]], cut: float, workers: int
) -> None:
    """Cut the journal of a random saga after any write, then let 2-4 workers
    recover it at once: one of them rolls it back, the others report it
    HELD_ELSEWHERE (or find it finished), and no undo runs twice."""
    first, second = _Builder(), _Builder()
    top = Scene("top", [first.build(c) for c in children], saga=True)
    again = Scene("top", [second.build(c) for c in children], saga=True)
    reports: list[trio_sagas.RecoveryReport] = []
    box: dict[str, Any] = {}

    async def main() -> None:
        journal = MemoryJournal()
        await trio_sagas.run_scene(top, None, journal=journal, run_id="r")
        writes = len(journal.writes)
        cut_at = round(cut * (writes - 1)) + 1
        crashed = journal.as_after(cut_at)
        box["final"] = cut_at == writes

        async def one(worker: MemoryJournal) -> None:
            reports.append(await trio_sagas.recover(worker, [again]))

        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(one, crashed.worker())
        box["status"] = status_of(crashed)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    undone = second.undone
    assert len(undone) == len(set(undone)), "an undo ran twice"
    results = [r for report in reports for r in report.results]
    if box["final"]:
        assert results == []
        return
    assert len(results) == 1
    for report in reports:
        assert {s.reason for s in report.skipped} <= {trio_sagas.HELD_ELSEWHERE}
    assert box["status"] in (RunStatus.COMPENSATED, RunStatus.NEEDS_INTERVENTION)


@pytest.mark.parametrize(("runs", "rounds"), [(20, 1), (100, 2)])
async def test_recover_rolls_runs_back_concurrently(
    autojump_clock: trio.testing.MockClock, runs: int, rounds: int
) -> None:
    """Dead runs whose undo takes 0.2 s are recovered RECOVERY_CONCURRENCY (64)
    at a time: 20 in 0.2 s, 100 in 0.4 s; reported in the journal's order."""
    from trio_sagas._saga._recovery import RECOVERY_CONCURRENCY

    async def charge(ctx: StepContext, state: object) -> str:
        return "ch"

    async def refund(ctx: StepContext, state: object) -> None:
        await trio.sleep(0.2)

    scene = Scene("s", [Act("charge", charge, compensate=refund)], saga=True)
    journal = MemoryJournal()
    ids = [f"r{i:03}" for i in range(runs)]
    for run_id in ids:
        fence = await journal.create_run(run_id, scene="s", state=b"{}")
        await journal.append(
            fence,
            [
                JournalEntry(run_id, 0, "SceneStarted", "s", 0.0),
                JournalEntry(run_id, 1, "ActStarted", "s/charge", 0.0),
                JournalEntry(run_id, 2, "ActCompleted", "s/charge", 0.0, value=b'"ch"'),
            ],
        )
    await journal.expire_worker(journal.worker_id)
    start = trio.current_time()
    with trio.fail_after(60):
        report = await trio_sagas.recover(journal.worker(), [scene])
    assert RECOVERY_CONCURRENCY == 64
    assert trio.current_time() == start + 0.2 * rounds
    assert [r.run_id for r in report] == ids
    assert {r.status for r in journal.records.values()} == {RunStatus.COMPENSATED}


def capture_holds(journal: MemoryJournal) -> list[trio.CancelScope]:
    """Make *journal*'s ``hold()`` note each lease scope it yields (a test
    cancels one to stand for the lease running out); returns the list."""
    scopes: list[trio.CancelScope] = []
    real_hold = journal.hold

    @contextlib.asynccontextmanager
    async def hold() -> Any:
        async with real_hold() as scope:
            scopes.append(scope)
            yield scope

    journal.hold = hold  # type: ignore[method-assign]
    return scopes


@pytest.mark.parametrize(
    ("on_crash", "after_recovery"),
    [
        (trio_sagas.OnCrash.RESUME, RunStatus.SUCCEEDED),
        (trio_sagas.OnCrash.ROLL_BACK, RunStatus.COMPENSATED),
    ],
)
async def test_a_lease_stop_in_the_first_act_journals_no_failure(
    autojump_clock: trio.testing.MockClock,
    on_crash: trio_sagas.OnCrash,
    after_recovery: RunStatus,
) -> None:
    """The lease scope cancelled while the first act runs (a keeper that could
    not renew, the database still taking writes): nothing more is journaled --
    no ActCancelled, SceneFailed or rollback that would make a RESUME run look
    failed -- and the worker that claims it resumes it (or rolls it back)."""
    ran: list[str] = []

    async def do(ctx: trio_sagas.StepContext, state: Any) -> None:
        ran.append(ctx.name)
        await trio.sleep(1)

    async def undo(ctx: trio_sagas.StepContext, state: Any) -> None:
        ran.append(f"undo {ctx.name}")

    scene = trio_sagas.Scene(
        "s",
        saga=True,
        on_crash=on_crash,
        steps=[trio_sagas.Act(n, do, compensate=undo) for n in ("a", "b")],
    )
    journal = MemoryJournal()
    scopes = capture_holds(journal)
    async with journal:
        async with trio.open_nursery() as nursery:

            async def stop_the_lease() -> None:
                await trio.sleep(0.5)
                scopes[0].cancel()

            nursery.start_soon(stop_the_lease)
            with pytest.raises(trio_sagas.LeaseLostError):
                await trio_sagas.run_scene(scene, {}, journal=journal, run_id="r1")
        assert [e.kind for e in await journal.events("r1")] == [
            "SceneStarted",
            "ActStarted",
        ]
        record = await journal.get_run("r1")
        assert record is not None
        assert record.status is RunStatus.RUNNING
        assert ran == ["a"]
        assert record.worker is not None
        await journal.expire_worker(record.worker)
    async with MemoryJournal(store=journal.store) as other:
        report = await trio_sagas.recover(other, [scene])
        record = await other.get_run("r1")
    assert record is not None
    assert record.status is after_recovery
    assert [r.run_id for r in report.results] == ["r1"]


@pytest.mark.parametrize(
    "on_crash", [trio_sagas.OnCrash.RESUME, trio_sagas.OnCrash.ROLL_BACK]
)
async def test_a_lease_lost_in_a_chorus_is_raised_once_and_bare(
    autojump_clock: trio.testing.MockClock, on_crash: trio_sagas.OnCrash
) -> None:
    """Both branches of a Chorus meet the lost lease: run_scene raises the one
    LeaseLostError bare (an ``except JournalError`` around it catches it), not
    a group of two, and the run stays RUNNING for the worker that claims it."""

    async def do(ctx: trio_sagas.StepContext, state: Any) -> None:
        await trio.sleep(1)

    async def undo(ctx: trio_sagas.StepContext, state: Any) -> None:
        pass

    def act(name: str) -> trio_sagas.Act:
        return trio_sagas.Act(name, do, compensate=undo)

    scene = trio_sagas.Scene(
        "s",
        saga=True,
        on_crash=on_crash,
        steps=[act("a"), trio_sagas.Chorus("c", [act("x"), act("y")]), act("b")],
    )
    journal = MemoryJournal()
    scopes = capture_holds(journal)
    async with journal, trio.open_nursery() as nursery:

        async def stop_the_lease() -> None:
            await trio.sleep(1.5)  # x and y are both running
            scopes[0].cancel()

        nursery.start_soon(stop_the_lease)
        with pytest.raises(trio_sagas.LeaseLostError):
            await trio_sagas.run_scene(scene, {}, journal=journal, run_id="r1")
        record = await journal.get_run("r1")
    assert record is not None
    assert record.status is RunStatus.RUNNING
