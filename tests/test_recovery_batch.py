"""recover() and run_worker in batches: few journal calls, the same guarantees.

On virtual time with the journal in memory, which counts its calls: a batch
of runs costs one ``read_events`` and one ``claim_and_load``, never a read
per run; a journal without the batched methods gets the same results
through the fallback; a run written to between the read and the claim is
replayed from the claim; a journal failure or an outside cancel between
batches loses nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    Act,
    JournalEntry,
    JournalError,
    RunStatus,
    Scene,
    StepContext,
)
from trio_sagas._saga._recovery import RECOVERY_CONCURRENCY

from .memory_journal import MemoryJournal

GUARD = 600


class Ledger:
    """A two-act saga whose undos log (and may take time)."""

    def __init__(self, undo_time: float = 0.0) -> None:
        self.undone: list[str] = []
        self.undo_time = undo_time

    def scene(self) -> Scene:
        async def run(ctx: StepContext, state: object) -> str:
            return "done"

        async def undo(ctx: StepContext, state: object) -> None:
            await trio.sleep(self.undo_time)
            self.undone.append(ctx.idempotency_key)

        return Scene(
            "s",
            [Act("a", run, compensate=undo), Act("b", run, compensate=undo)],
            saga=True,
        )


async def dead_runs(
    journal: MemoryJournal, count: int, *, prefix: str = "r"
) -> list[str]:
    """*count* runs as a killed process leaves them: a completed, b uncertain."""
    ids = [f"{prefix}{i:03}" for i in range(count)]
    for run_id in ids:
        fence = await journal.create_run(run_id, scene="s", state=b"{}")
        await journal.append(
            fence,
            [
                JournalEntry(run_id, 0, "SceneStarted", "s", 0.0),
                JournalEntry(run_id, 1, "ActStarted", "s/a", 0.0),
                JournalEntry(run_id, 2, "ActCompleted", "s/a", 0.0, value=b'"x"'),
                JournalEntry(run_id, 3, "ActStarted", "s/b", 0.0),
            ],
        )
    return ids


def undos_of(ids: list[str]) -> list[str]:
    return sorted(f"{r}/s/{step}#compensate" for r in ids for step in "ab")


class PlainJournal(MemoryJournal):
    """A journal with only the required protocol: no batched calls."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("claim_and_load", "read_events"):
            raise AttributeError(name)
        return super().__getattribute__(name)

    def worker(self) -> PlainJournal:
        return PlainJournal(
            self.codec, lease=self.lease, max_claims=self.max_claims, store=self.store
        )


async def test_recover_reads_and_claims_per_batch_not_per_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """150 dead runs: three batches, each one read_events and one
    claim_and_load; no per-run claim, get_run or events call."""
    ledger = Ledger()
    dead = MemoryJournal()
    ids = await dead_runs(dead, 150)
    await dead.expire_worker(dead.worker_id)
    journal = dead.worker()
    with trio.fail_after(GUARD):
        report = await trio_sagas.recover(journal, [ledger.scene()])
    assert [r.run_id for r in report] == ids
    batches = -(-150 // RECOVERY_CONCURRENCY)
    assert dict(journal.calls) == {"read_events": batches, "claim_and_load": batches}
    assert sorted(ledger.undone) == undos_of(ids)
    assert {r.status for r in journal.records.values()} == {RunStatus.COMPENSATED}


async def test_run_worker_claims_and_loads_in_one_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """run_worker: one claim_and_load per poll, no per-run read."""
    ledger = Ledger()
    dead = MemoryJournal()
    ids = await dead_runs(dead, 12)
    await dead.expire_worker(dead.worker_id)
    journal = dead.worker()
    with trio.fail_after(GUARD):
        async with journal, trio.open_nursery() as nursery:
            await nursery.start(trio_sagas.run_worker, journal, [ledger.scene()])
            while any(  # noqa: ASYNC110
                r.status is RunStatus.RUNNING for r in journal.records.values()
            ):
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert sorted(ledger.undone) == undos_of(ids)
    assert journal.calls["claim_and_load"] >= 2  # batches of 10
    assert journal.calls["get_run"] == journal.calls["events"] == 0


@pytest.mark.parametrize("count", [0, 1, 70])
async def test_a_journal_without_batched_calls_gets_the_same_report(
    autojump_clock: trio.testing.MockClock, count: int
) -> None:
    """The fallback (claim, get_run, events per run) recovers the same runs,
    in the same order, with the same undos, as the batched calls."""
    reports = []
    for kind in (MemoryJournal, PlainJournal):
        ledger = Ledger()
        dead = kind()
        ids = await dead_runs(dead, count)
        await dead.expire_worker(dead.worker_id)
        journal = dead.worker()
        with trio.fail_after(GUARD):
            report = await trio_sagas.recover(journal, [ledger.scene()])
        assert sorted(ledger.undone) == undos_of(ids)
        reports.append(([r.run_id for r in report], report.skipped))
        if kind is PlainJournal:
            assert "claim_and_load" not in journal.calls
            assert journal.calls["claim"] == count
    assert reports[0] == reports[1]


async def test_a_run_written_after_the_read_is_replayed_from_the_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Entries read before the claim are stale if the run was written to since
    (its worker wrote, then died): the claim's entries decide what is undone."""
    ledger = Ledger()
    dead = MemoryJournal()
    (run_id,) = await dead_runs(dead, 1)
    await dead.expire_worker(dead.worker_id)
    journal = dead.worker()
    real = journal.read_events

    async def stale(run_ids: Any) -> Any:
        got = await real(run_ids)
        return tuple(entries[:3] for entries in got)  # before b's intent

    journal.read_events = stale  # type: ignore[method-assign]
    with trio.fail_after(GUARD):
        (result,) = await trio_sagas.recover(journal, [ledger.scene()])
    assert result.run_id == run_id
    assert ledger.undone == [f"{run_id}/s/b#compensate", f"{run_id}/s/a#compensate"]


async def test_a_failed_claim_finishes_the_claimed_runs_then_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The journal fails at the second batch's claim: the first batch is
    rolled back to the end, recover() raises, nothing else was claimed, and
    the next recover() takes the rest."""
    ledger = Ledger(undo_time=1.0)
    dead = MemoryJournal()
    ids = await dead_runs(dead, RECOVERY_CONCURRENCY + 6)
    await dead.expire_worker(dead.worker_id)
    journal = dead.worker()
    real = journal.claim_and_load

    async def second_fails(*args: Any, **kwargs: Any) -> Any:
        if journal.calls["claim_and_load"] == 1:
            raise JournalError("disk full (test)")
        return await real(*args, **kwargs)

    journal.claim_and_load = second_fails  # type: ignore[method-assign]
    with trio.fail_after(GUARD), pytest.raises(JournalError, match="disk full"):
        await trio_sagas.recover(journal, [ledger.scene()])
    first = ids[:RECOVERY_CONCURRENCY]
    assert sorted(ledger.undone) == undos_of(first)
    statuses = {r.run_id: r.status for r in journal.records.values()}
    assert {statuses[r] for r in first} == {RunStatus.COMPENSATED}
    rest = ids[RECOVERY_CONCURRENCY:]
    assert {journal.records[r].epoch for r in rest} == {1}  # never claimed
    journal.claim_and_load = real  # type: ignore[method-assign]
    with trio.fail_after(GUARD):
        report = await trio_sagas.recover(journal, [ledger.scene()])
    assert [r.run_id for r in report] == rest
    assert sorted(ledger.undone) == undos_of(ids)


async def test_outside_cancel_mid_recovery_loses_no_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled from outside while a batch runs and the next waits claimed:
    a bare trio.Cancelled; the runs begun finish their rollback (shielded),
    the waiting ones stay RUNNING, and once this worker is gone a later
    recover() undoes exactly what is left, each undo once."""
    ledger = Ledger(undo_time=1.0)
    dead = MemoryJournal()
    ids = await dead_runs(dead, RECOVERY_CONCURRENCY * 2 + 10)
    await dead.expire_worker(dead.worker_id)
    journal = dead.worker()
    caught: list[str] = []

    async def victim() -> None:
        try:
            await trio_sagas.recover(journal, [ledger.scene()])
        except trio.Cancelled:  # bare: a group would pass this by
            caught.append("cancelled")
            raise

    with trio.fail_after(GUARD):
        with trio.move_on_after(0.5):
            await victim()
        assert caught == ["cancelled"]
        assert trio.current_time() == 2.0  # the begun rollbacks finished, shielded
        first = ids[:RECOVERY_CONCURRENCY]
        assert sorted(ledger.undone) == undos_of(first)
        waiting = ids[RECOVERY_CONCURRENCY:]
        assert {journal.records[r].status for r in waiting} == {RunStatus.RUNNING}
        await journal.expire_worker(journal.worker_id)  # this process "exits"
        later = journal.worker()
        await trio_sagas.recover(later, [ledger.scene()])
    assert sorted(ledger.undone) == undos_of(ids)
    assert {r.status for r in journal.records.values()} == {RunStatus.COMPENSATED}


@given(
    count=st.integers(0, 2 * RECOVERY_CONCURRENCY + 3),
    workers=st.integers(1, 3),
    live=st.sets(st.integers(0, 2 * RECOVERY_CONCURRENCY + 3), max_size=5),
    undo_time=st.sampled_from([0.0, 0.2]),
)
@settings(max_examples=25, deadline=None)
def test_concurrent_batched_recoveries_property(
    count: int, workers: int, live: set[int], undo_time: float
) -> None:
    """1-3 recover() calls at once over dead runs and a few live ones: every
    dead run is rolled back by exactly one of them (each undo once), live runs
    are left RUNNING and reported HELD_ELSEWHERE, and each report lists its
    runs in the journal's order."""
    ledger = Ledger(undo_time=undo_time)
    reports: list[trio_sagas.RecoveryReport] = []
    box: dict[str, Any] = {}

    async def main() -> None:
        dead = MemoryJournal()
        ids = await dead_runs(dead, count)
        await dead.expire_worker(dead.worker_id)
        owner = dead.worker()  # a live process still running some runs
        alive = [await dead_runs(owner, 1, prefix=f"live{n}-") for n in sorted(live)]
        box["ids"], box["live"] = ids, [r for (r,) in alive]

        async def one(worker: MemoryJournal) -> None:
            reports.append(await trio_sagas.recover(worker, [ledger.scene()]))

        with trio.fail_after(GUARD):
            async with owner, trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(one, dead.worker())
        box["records"] = dict(dead.records)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    ids, live_ids, records = box["ids"], box["live"], box["records"]
    assert sorted(ledger.undone) == undos_of(ids)
    done = [r.run_id for report in reports for r in report]
    assert sorted(done) == ids
    for report in reports:
        order = [r.run_id for r in report]
        assert order == sorted(order)
        held = {s.run_id for s in report.skipped}
        assert {s.reason for s in report.skipped} <= {trio_sagas.HELD_ELSEWHERE}
        assert set(live_ids) <= held
    for run_id in live_ids:
        assert records[run_id].status is RunStatus.RUNNING
    assert {records[r].status for r in ids} <= {RunStatus.COMPENSATED}


async def test_a_slow_run_does_not_hold_up_the_next_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Slots free run by run: one run whose undo takes 20 s keeps one
    slot; the next batch starts in the other 63 as soon as they free (each
    group together), so the fast runs are all done long before it."""
    finished: dict[str, float] = {}

    async def run(ctx: StepContext, state: object) -> str:
        return "done"

    async def undo(ctx: StepContext, state: object) -> None:
        await trio.sleep(20 if ctx.idempotency_key.startswith("r000/") else 1)
        finished[ctx.idempotency_key] = trio.current_time()

    scene = Scene(
        "s", [Act("a", run, compensate=undo), Act("b", run, compensate=undo)], saga=True
    )
    dead = MemoryJournal()
    ids = await dead_runs(dead, 2 * RECOVERY_CONCURRENCY)
    await dead.expire_worker(dead.worker_id)
    journal = dead.worker()
    with trio.fail_after(GUARD):
        report = await trio_sagas.recover(journal, [scene])
    assert [r.run_id for r in report] == ids
    fast = [t for key, t in finished.items() if not key.startswith("r000/")]
    assert len(fast) == 2 * (len(ids) - 1)
    # Two undos of 1 s per run: the first batch ends at 2 s, the next batch's
    # first 63 runs at 4 s, its last (which waited for a slot) at 6 s.
    assert max(fast) == 6.0
    assert finished["r000/s/a#compensate"] == 40.0
