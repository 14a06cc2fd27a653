"""The lease and fencing journal contract, run against a real backend.

Written against the ``journal_factory`` fixture so that the same tests can run
over every backend (memory, SQLite, PostgreSQL): ``journal_factory(**kw)``
returns a new, not yet entered journal on the test's own store; two journals
from one factory are two workers sharing it. Leases are made to lapse with
``expire_worker`` (the operator's "that worker is dead"), so no test waits
for a clock, real or virtual.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_sagas
from trio_sagas import (
    Fence,
    JournalEntry,
    JournalError,
    LeaseLostError,
    RunClaimedError,
    RunIdInUseError,
    RunStatus,
)

from .pg_server import PgServer

Factory = Callable[..., Any]
GUARD = 30


BACKENDS = ["postgres", "sqlite", "memory"]


@pytest.fixture(params=BACKENDS)
def journal_factory(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Factory:
    """Makes journals (workers) sharing one fresh store per test."""
    if request.param == "sqlite":
        path = tmp_path / "journal.db"

        def make_sqlite(**kwargs: Any) -> trio_sagas.SQLiteJournal:
            kwargs.setdefault("lease", 5.0)
            return trio_sagas.SQLiteJournal(path, **kwargs)

        return make_sqlite
    if request.param == "memory":
        from .memory_journal import MemoryJournal, _Store

        store = _Store()

        def make_memory(**kwargs: Any) -> MemoryJournal:
            kwargs.setdefault("lease", 5.0)
            return MemoryJournal(store=store, **kwargs)

        return make_memory
    server: PgServer = request.getfixturevalue("pg_server")
    schema = server.new_schema()

    def make(**kwargs: Any) -> trio_sagas.PostgresJournal:
        kwargs.setdefault("lease", 5.0)
        return trio_sagas.PostgresJournal(server.dsn, schema=schema, **kwargs)

    return make


def postgres_only(factory: Factory) -> None:
    """Skip a test of PostgresJournal's own batching machinery elsewhere."""
    if factory.__name__ != "make":
        pytest.skip("tests PostgresJournal's batch writer")


def entries(run_id: str, first: int, count: int = 1) -> list[JournalEntry]:
    return [
        JournalEntry(run_id, seq, "ActStarted", f"s/a{seq}", float(seq), {"n": seq})
        for seq in range(first, first + count)
    ]


async def test_create_run_holds_it_at_epoch_one(journal_factory: Factory) -> None:
    """create_run returns a fence of this worker at epoch 1; the id is unique."""
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            fence = await journal.create_run("r", scene="s", state=b"{}")
            assert fence == Fence(run_id="r", worker=journal.worker_id, epoch=1)
            record = await journal.get_run("r")
            assert (record.run_id, record.scene, record.status) == (
                "r",
                "s",
                RunStatus.RUNNING,
            )
            assert (record.state, record.last_seq) == (b"{}", -1)
            with pytest.raises(RunIdInUseError, match="'r'"):
                await journal.create_run("r", scene="s", state=b"{}")


async def test_append_writes_entries_state_and_status(journal_factory: Factory) -> None:
    """One append adds its entries, replaces the state and sets the status."""
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            fence = await journal.create_run("r", scene="s", state=b"0")
            await journal.append(fence, entries("r", 0, 2), state=b"1")
            await journal.append(
                fence, entries("r", 2), state=b"2", status=RunStatus.SUCCEEDED
            )
            record = await journal.get_run("r")
            assert (record.status, record.state, record.last_seq) == (
                RunStatus.SUCCEEDED,
                b"2",
                2,
            )
            events = await journal.events("r")
            assert [(e.seq, e.step, e.data) for e in events] == [
                (0, "s/a0", {"n": 0}), (1, "s/a1", {"n": 1}), (2, "s/a2", {"n": 2})
            ]  # fmt: skip
            # A finished run takes no more writes.
            with pytest.raises(RunClaimedError):
                await journal.append(fence, entries("r", 3))


async def test_append_refuses_a_gap_and_writes_nothing(
    journal_factory: Factory,
) -> None:
    """Entries must continue last_seq without a gap or overlap."""
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            fence = await journal.create_run("r", scene="s", state=b"0")
            await journal.append(fence, entries("r", 0))
            for first in (0, 2):
                with pytest.raises(JournalError):
                    await journal.append(fence, entries("r", first), state=b"x")
            assert [e.seq for e in await journal.events("r")] == [0]
            assert (await journal.get_run("r")).state == b"0"


async def test_claim_only_after_the_lease_lapsed(journal_factory: Factory) -> None:
    """A run under a live lease is not claimable; once it lapsed it is, epoch + 1."""
    with trio.fail_after(GUARD):
        async with journal_factory() as a, journal_factory() as b:
            fence = await a.create_run("r", scene="s", state=b"{}")
            assert await b.claim("r") is None
            assert await b.claim_batch(limit=10) == ()
            assert await b.expire_worker(a.worker_id) is True
            taken = await b.claim("r")
            assert taken == Fence(run_id="r", worker=b.worker_id, epoch=2)
            assert await a.claim("r") is None  # b's lease is live
            record = await b.get_run("r")
            assert record.status is RunStatus.RUNNING
            assert (getattr(record, "epoch", 2), getattr(record, "claims", 1)) == (2, 1)
            del fence


async def test_stale_epoch_is_refused(journal_factory: Factory) -> None:
    """After a takeover the old holder's append is refused and writes nothing."""
    with trio.fail_after(GUARD):
        async with journal_factory() as a, journal_factory() as b:
            old = await a.create_run("r", scene="s", state=b"a")
            await a.append(old, entries("r", 0))
            await b.expire_worker(a.worker_id)
            new = await b.claim("r")
            assert new is not None
            # a registered again (its lease lapsed), but the fence is stale.
            stale = Fence(run_id="r", worker=old.worker, epoch=old.epoch)
            with pytest.raises(RunClaimedError):
                await a.append(stale, entries("r", 1), state=b"zombie")
            await b.append(new, entries("r", 1), state=b"b")
            assert [e.seq for e in await b.events("r")] == [0, 1]
            assert (await b.get_run("r")).state == b"b"


async def test_zombie_after_its_lease_lapsed_is_refused(
    journal_factory: Factory,
) -> None:
    """A writer whose lease lapsed cannot write, even before anyone claimed."""
    with trio.fail_after(GUARD):
        async with journal_factory() as a, journal_factory() as b:
            fence = await a.create_run("r", scene="s", state=b"a")
            await b.expire_worker(fence.worker)
            with pytest.raises(LeaseLostError, match="lapsed"):
                await a.append(fence, entries("r", 0), state=b"zombie")
            assert await a.events("r") == ()
            assert (await a.get_run("r")).state == b"a"


async def test_expire_worker_reports_unknown_workers(journal_factory: Factory) -> None:
    """expire_worker says whether such a worker was registered."""
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            assert await journal.expire_worker("no-such-worker") is False
            (worker,) = await journal.workers()
            assert worker.worker_id == journal.worker_id
            assert worker.started_at <= worker.renewed_at < worker.expires_at


async def test_two_claimers_split_a_batch(journal_factory: Factory) -> None:
    """Concurrent claim_batch calls split the lapsed runs: each run claimed once."""
    with trio.fail_after(GUARD):
        async with (
            journal_factory() as dead,
            journal_factory() as a,
            journal_factory() as b,
        ):
            for i in range(30):
                await dead.create_run(f"r{i}", scene="s", state=b"{}")
            await a.expire_worker(dead.worker_id)
            got: dict[str, list[str]] = {}

            async def claimer(journal: Any) -> None:
                while batch := await journal.claim_batch(limit=4):
                    for record, fence in batch:
                        assert fence.epoch == 2
                        assert fence.worker == journal.worker_id
                        got.setdefault(record.run_id, []).append(journal.worker_id)
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claimer, a)
                nursery.start_soon(claimer, b)
            assert sorted(got) == sorted(f"r{i}" for i in range(30))
            assert all(len(v) == 1 for v in got.values())


async def test_claim_batch_takes_the_oldest_first(journal_factory: Factory) -> None:
    """claim_batch takes lapsed runs by their last write, oldest first, up to limit."""
    with trio.fail_after(GUARD):
        async with journal_factory() as dead, journal_factory() as alive:
            for i in range(3):
                await dead.create_run(f"r{i}", scene="s", state=b"{}")
            mine = await alive.create_run("mine", scene="s", state=b"{}")
            await alive.expire_worker(dead.worker_id)
            batch = await alive.claim_batch(limit=2)
            assert [r.run_id for r, _ in batch] == ["r0", "r1"]
            assert [r.run_id for r, _ in await alive.claim_batch(limit=5)] == ["r2"]
            assert mine.epoch == 1


async def test_run_claimed_too_often_needs_intervention(
    journal_factory: Factory,
) -> None:
    """A RUNNING run claimed max_claims times goes to NEEDS_INTERVENTION, not claimed."""
    with trio.fail_after(GUARD):
        async with journal_factory(max_claims=2) as first:
            await first.create_run("r", scene="s", state=b"{}")
            holder = first
            for _ in range(2):
                async with journal_factory(max_claims=2) as nxt:
                    await nxt.expire_worker(holder.worker_id)
                    assert await nxt.claim("r") is not None
                    await nxt.expire_worker(nxt.worker_id)
            async with journal_factory(max_claims=2) as last:
                assert await last.claim("r") is None
                record = await last.get_run("r")
                assert record.status is RunStatus.NEEDS_INTERVENTION
                # An operator's compensate_run may still claim it.
                fence = await last.claim("r", statuses=[RunStatus.NEEDS_INTERVENTION])
                assert fence is not None
                assert fence.epoch >= 4


async def test_claim_a_finished_run_by_status(journal_factory: Factory) -> None:
    """A FAILED run is claimable with statuses=(FAILED,), a live RUNNING one is not."""
    with trio.fail_after(GUARD):
        async with journal_factory() as a, journal_factory() as b:
            failed = await a.create_run("failed", scene="s", state=b"{}")
            await a.append(failed, entries("failed", 0), status=RunStatus.FAILED)
            await a.create_run("live", scene="s", state=b"{}")
            anything = (RunStatus.FAILED, RunStatus.RUNNING)
            assert await b.claim("live", statuses=anything) is None
            assert await b.claim("failed") is None  # default: RUNNING only
            fence = await b.claim("failed", statuses=anything)
            assert fence == Fence(run_id="failed", worker=b.worker_id, epoch=2)
            assert (await b.get_run("failed")).status is RunStatus.RUNNING
            await b.append(fence, entries("failed", 1), status=RunStatus.COMPENSATED)


async def test_prune_never_touches_running_or_needs_intervention(
    journal_factory: Factory,
) -> None:
    """prune deletes old finished runs with their entries, and nothing else."""
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            for name, status in [
                ("done", RunStatus.SUCCEEDED), ("undone", RunStatus.COMPENSATED),
                ("stuck", RunStatus.NEEDS_INTERVENTION), ("running", None),
            ]:  # fmt: skip
                fence = await journal.create_run(name, scene="s", state=b"{}")
                await journal.append(fence, entries(name, 0), status=status)
            for bad in ([RunStatus.RUNNING], [RunStatus.NEEDS_INTERVENTION]):
                with pytest.raises(ValueError, match="never pruned"):
                    await journal.prune(older_than=0, statuses=bad)
            assert await journal.prune(older_than=3600) == 0
            await trio.sleep(0.01)
            assert await journal.prune(older_than=0) == 2
            left = sorted(r.run_id for r in await journal.runs())
            assert left == ["running", "stuck"]
            assert await journal.events("done") == ()


async def test_leaving_the_journal_hands_its_runs_over(
    journal_factory: Factory,
) -> None:
    """A journal that exits deletes its worker row: its RUNNING runs are claimable."""
    with trio.fail_after(GUARD):
        async with journal_factory() as b:
            async with journal_factory() as a:
                await a.create_run("r", scene="s", state=b"{}")
                gone = a.worker_id
            assert gone not in {w.worker_id for w in await b.workers()}
            assert await b.claim("r") is not None


async def test_hold_keeps_the_lease_across_several_leases(
    journal_factory: Factory,
) -> None:
    """Inside hold() the lease is renewed: work longer than a lease is not cancelled."""
    with trio.fail_after(GUARD):
        journal = journal_factory(lease=0.6)
        async with journal.hold() as scope:
            fence = await journal.create_run("r", scene="s", state=b"{}")
            with scope:
                await trio.sleep(1.5)
                await journal.append(fence, entries("r", 0))
        assert not scope.cancelled_caught
        if hasattr(journal, "aclose"):
            await journal.aclose()
        elif hasattr(journal, "close"):
            journal.close()


async def test_a_blocked_worker_cancels_its_own_runs(journal_factory: Factory) -> None:
    """An event loop blocked past the lease: the held scope is cancelled, the run
    is claimable by another worker, and the blocked worker's write is refused."""
    import time

    with trio.fail_after(GUARD):
        async with journal_factory(lease=0.6) as a, journal_factory() as b:
            went_on = False
            async with a.hold() as scope:
                fence = await a.create_run("r", scene="s", state=b"{}")
                with scope:
                    time.sleep(1.5)  # noqa: ASYNC251 -- the event loop is blocked
                    await trio.lowlevel.checkpoint()
                    went_on = True
            assert scope.cancelled_caught
            assert not went_on
            with pytest.raises(RunClaimedError):
                await a.append(fence, entries("r", 0))
            assert await b.claim("r") is not None
            # Never revived: the next renewal registers a new worker id.
            with trio.fail_after(10 * 0.6):
                while a.worker_id == fence.worker:  # noqa: ASYNC110
                    await trio.sleep(0.05)


async def test_concurrent_appends_share_statements(journal_factory: Factory) -> None:
    """Appends of concurrent runs are group-committed; a stale fence fails alone."""
    postgres_only(journal_factory)
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            fences = [
                await journal.create_run(f"r{i}", scene="s", state=b"{}")
                for i in range(20)
            ]
            stale = Fence(run_id="r0", worker=fences[0].worker, epoch=7)
            errors: list[BaseException] = []
            before = journal._batcher.batches

            async def run(fence: Fence) -> None:
                for seq in range(5):
                    await journal.append(fence, entries(fence.run_id, seq))

            async def bad() -> None:
                try:
                    await journal.append(stale, entries("r0", 0))
                except RunClaimedError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(bad)
                for fence in fences:
                    nursery.start_soon(run, fence)
            assert len(errors) == 1
            assert journal._batcher.batches - before < 100
            for fence in fences:
                assert [e.seq for e in await journal.events(fence.run_id)] == list(
                    range(5)
                )


async def test_cancelled_while_queued_writes_nothing(journal_factory: Factory) -> None:
    """An append cancelled before its batch was taken never happens; one taken
    reports its verdict (committed) although its caller was cancelled."""
    postgres_only(journal_factory)
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            f1 = await journal.create_run("a", scene="s", state=b"{}")
            f2 = await journal.create_run("b", scene="s", state=b"{}")
            f3 = await journal.create_run("c", scene="s", state=b"{}")
            done: list[str] = []

            async def write(fence: Fence, scope_out: list[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    scope_out.append(scope)
                    await journal.append(fence, entries(fence.run_id, 0))
                    done.append(fence.run_id)

            scopes: list[trio.CancelScope] = []
            # Hold the write connection so the first batch waits for it.
            await journal._writes.limiter.acquire()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write, f1, scopes)  # leads: its batch is taken
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(write, f2, scopes)  # queued behind it
                await trio.testing.wait_all_tasks_blocked()
                for scope in scopes:
                    scope.cancel()
                journal._writes.limiter.release()
            assert done == ["a"]
            assert [e.seq for e in await journal.events("a")] == [0]
            assert await journal.events("b") == ()
            await journal.append(f2, entries("b", 0))
            await journal.append(f3, entries("c", 0))
