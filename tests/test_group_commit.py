"""SQLiteJournal's group commit: one writer thread, one transaction per batch,
one savepoint per write; verdicts, cancellation, reads beside a full queue,
and a SIGKILL inside a batch that holds several runs' writes."""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    Fence,
    JournalEntry,
    JournalError,
    RunClaimedError,
    RunStatus,
    SQLiteJournal,
)

HERE = pathlib.Path(__file__).parent


def entry(run_id: str, seq: int) -> JournalEntry:
    return JournalEntry(run_id=run_id, seq=seq, kind="ActStarted", step="s/a", at=0.0)


def committed(db: pathlib.Path) -> dict[str, int]:
    """Events per run as another connection (another process) sees them."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT run_id, count(*) FROM events GROUP BY run_id")
        return dict(rows.fetchall())


class Gate:
    """A write job that holds the writer thread until opened (from any thread)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, conn: sqlite3.Connection) -> str:
        self.entered.set()
        assert self.opened.wait(10), "gate never opened"
        return "gate"

    async def wait_entered(self) -> None:
        await trio.to_thread.run_sync(self.entered.wait, 10)


@contextlib.contextmanager
def opened_at_exit(gate: Gate) -> Iterator[Gate]:
    try:
        yield gate
    finally:
        gate.opened.set()  # never leave the writer thread stuck


async def setup_runs(journal: SQLiteJournal, count: int) -> dict[str, Fence]:
    """Runs r0, r1, ... and their fences."""
    fences = {}
    for index in range(count):
        run_id = f"r{index}"
        fences[run_id] = await journal.create_run(run_id, scene="s", state=b"{}")
    return fences


async def test_concurrent_appends_share_one_commit(tmp_path: pathlib.Path) -> None:
    """Appends queued while a batch commits go together into the next transaction."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 50)
        before = journal.statistics()
        with opened_at_exit(Gate()) as gate:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(journal._write, gate)
                await gate.wait_entered()
                for run_id, fence in fences.items():
                    nursery.start_soon(journal.append, fence, [entry(run_id, 0)])
                await trio.testing.wait_all_tasks_blocked()
                assert journal.statistics().queued == 50
                gate.opened.set()
        after = journal.statistics()
        assert after.batches - before.batches == 2  # the gate's, then all 50
        assert after.largest_batch == 50
        assert committed(tmp_path / "j.db") == dict.fromkeys(fences, 1)


async def test_one_failing_write_fails_only_its_own_run(
    tmp_path: pathlib.Path,
) -> None:
    """In one batch, a refused append (stale owner, duplicate seq) rolls back alone."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 4)
        await journal.append(fences["r3"], [entry("r3", 0)])
        outcomes: dict[str, BaseException | None] = {}

        async def append(run_id: str, epoch: int, seq: int) -> None:
            fence = Fence(run_id, fences[run_id].worker, epoch)
            try:
                await journal.append(fence, [entry(run_id, seq)], state=b"[1]")
            except JournalError as exc:
                outcomes[run_id] = exc
            else:
                outcomes[run_id] = None

        with opened_at_exit(Gate()) as gate:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(journal._write, gate)
                await gate.wait_entered()
                nursery.start_soon(append, "r0", 1, 0)
                nursery.start_soon(append, "r1", 2, 0)  # a stale fence
                nursery.start_soon(append, "r2", 1, 0)
                nursery.start_soon(append, "r3", 1, 0)  # seq 0 again
                await trio.testing.wait_all_tasks_blocked()
                gate.opened.set()
        assert journal.statistics().largest_batch == 4
        assert outcomes["r0"] is None
        assert outcomes["r2"] is None
        assert isinstance(outcomes["r1"], RunClaimedError)
        assert isinstance(outcomes["r3"], JournalError)
        assert "its last seq is 0, the first new seq is 0" in str(outcomes["r3"])
        assert committed(tmp_path / "j.db") == {"r0": 1, "r2": 1, "r3": 1}
        states = {r.run_id: r.state for r in await journal.runs()}
        assert states == {"r0": b"[1]", "r1": b"{}", "r2": b"[1]", "r3": b"{}"}
        assert list(fences) == sorted(states)


class Refused(Exception):
    """A write job that changed a row, then refused."""


@settings(max_examples=15, deadline=None)
@given(
    plan=st.lists(
        st.sampled_from(["ok", "stale", "gap", "refused"]), min_size=1, max_size=10
    )
)
async def test_property_every_write_in_a_batch_commits_alone_or_not_at_all(
    plan: list[str],
) -> None:
    """In one batch, exactly the accepted writes commit, whatever fails around them."""
    with (
        tempfile.TemporaryDirectory() as folder,
        trio.fail_after(30),
        SQLiteJournal(pathlib.Path(folder) / "j.db", synchronous="NORMAL") as journal,
    ):
        fences = await setup_runs(journal, len(plan))
        verdicts: dict[str, str] = {}

        async def write(run_id: str, kind: str) -> None:
            fence = fences[run_id]
            try:
                if kind == "refused":

                    def job(conn: sqlite3.Connection) -> None:
                        conn.execute(
                            "UPDATE runs SET state = x'00' WHERE run_id = ?", (run_id,)
                        )
                        raise Refused(run_id)

                    await journal._write(job)
                else:
                    if kind == "stale":
                        fence = Fence(run_id, fence.worker, fence.epoch + 1)
                    seq = 3 if kind == "gap" else 0
                    await journal.append(fence, [entry(run_id, seq)], state=b"[1]")
            except (JournalError, Refused) as exc:
                verdicts[run_id] = type(exc).__name__
            else:
                verdicts[run_id] = "committed"

        with opened_at_exit(Gate()) as gate:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(journal._write, gate)
                await gate.wait_entered()
                for index, kind in enumerate(plan):
                    nursery.start_soon(write, f"r{index}", kind)
                await trio.testing.wait_all_tasks_blocked()
                gate.opened.set()
        expected = {
            "ok": "committed",
            "stale": "RunClaimedError",
            "gap": "JournalError",
            "refused": "Refused",
        }
        assert verdicts == {f"r{i}": expected[k] for i, k in enumerate(plan)}
        states = {r.run_id: r.state for r in await journal.runs()}
        for index, kind in enumerate(plan):
            assert states[f"r{index}"] == (b"[1]" if kind == "ok" else b"{}")
        events = {f"r{i}": len(await journal.events(f"r{i}")) for i in range(len(plan))}
        assert events == {f"r{i}": int(k == "ok") for i, k in enumerate(plan)}


async def test_cancelled_while_queued_withdraws_the_write(
    tmp_path: pathlib.Path,
) -> None:
    """A write cancelled before the writer took it is not written; Cancelled is raised."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 1)
        with opened_at_exit(Gate()) as gate:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(journal._write, gate)
                await gate.wait_entered()
                with trio.CancelScope() as scope:

                    async def cancel_when_queued() -> None:
                        await trio.testing.wait_all_tasks_blocked()
                        assert journal.statistics().queued == 1
                        scope.cancel(reason="test")

                    nursery.start_soon(cancel_when_queued)
                    await journal.append(fences["r0"], [entry("r0", 0)])
                assert scope.cancelled_caught
                gate.opened.set()
        await journal.append(fences["r0"], [entry("r0", 0)])  # seq 0 is free
        assert committed(tmp_path / "j.db") == {"r0": 1}
        assert journal.statistics().queued == 0


async def test_cancelled_while_committing_waits_for_the_verdict(
    tmp_path: pathlib.Path,
) -> None:
    """Once its batch began, a cancelled write still completes; then Cancelled arrives."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        await setup_runs(journal, 1)
        gate = Gate()
        returned: list[str] = []

        def slow_append(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO events (run_id, seq, kind, step, at, written_at, data) "
                "VALUES ('r0', 0, 'ActStarted', 's/a', 0, 0, '{}')"
            )
            return gate(conn)

        scope = trio.CancelScope()

        async def cancel_when_taken() -> None:
            await gate.wait_entered()
            scope.cancel(reason="test")
            await trio.sleep(0.05)  # the caller stays blocked: a shielded wait
            assert not returned
            gate.opened.set()

        with opened_at_exit(gate):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_taken)
                with scope:
                    returned.append(await journal._write(slow_append))
                    await trio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert returned == ["gate"]  # the caller learned the verdict first
        assert committed(tmp_path / "j.db") == {"r0": 1}


async def test_reads_do_not_wait_behind_the_write_queue(
    tmp_path: pathlib.Path,
) -> None:
    """runs()/get_run()/events() answer while the writer is busy with a batch."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 3)
        with opened_at_exit(Gate()) as gate:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(journal._write, gate)
                await gate.wait_entered()
                for run_id, fence in fences.items():
                    nursery.start_soon(journal.append, fence, [entry(run_id, 0)])
                await trio.testing.wait_all_tasks_blocked()
                assert [r.run_id for r in await journal.runs()] == ["r0", "r1", "r2"]
                record = await journal.get_run("r1")
                assert record is not None
                assert record.last_seq == -1
                assert await journal.events("r1") == ()
                assert journal.statistics().queued == 3
                gate.opened.set()
        assert len(await journal.events("r1")) == 1  # then the writes land


async def test_close_finishes_the_queued_writes(tmp_path: pathlib.Path) -> None:
    """close() commits what was queued before it; later calls are refused."""
    with trio.fail_after(20):
        journal = SQLiteJournal(tmp_path / "j.db")
        fences = await setup_runs(journal, 5)
        gate = Gate()
        results: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal._write, gate)
            await gate.wait_entered()
            for index in range(5):
                run_id = f"r{index}"

                async def append(r: str = run_id) -> None:
                    await journal.append(fences[r], [entry(r, 0)])
                    results.append(r)

                nursery.start_soon(append)
            await trio.testing.wait_all_tasks_blocked()
            threading.Timer(0.05, gate.opened.set).start()
            journal.close()  # blocks until the queue is drained
        assert len(results) == 5
        assert committed(tmp_path / "j.db") == {f"r{i}": 1 for i in range(5)}
        with pytest.raises(JournalError, match="is closed"):
            await journal.append(fences["r0"], [entry("r0", 1)])
        with pytest.raises(JournalError, match="is closed"):
            await journal.runs()


def test_one_journal_across_trio_runs(tmp_path: pathlib.Path) -> None:
    """The writer thread answers each caller in its own trio.run."""

    async def write(index: int) -> None:
        await journal.create_run(f"r{index}", scene="s", state=b"{}")

    with SQLiteJournal(tmp_path / "j.db") as journal:
        for index in range(3):
            trio.run(write, index)
        assert [r.run_id for r in trio.run(journal.runs)] == ["r0", "r1", "r2"]


async def test_many_concurrent_sagas_all_durable(tmp_path: pathlib.Path) -> None:
    """200 concurrent journaled sagas: every event of every run is committed, in batches."""

    async def step(ctx: trio_sagas.StepContext, state: dict[str, Any]) -> int:
        await trio.lowlevel.checkpoint()
        return 1

    scene = trio_sagas.Scene(
        "s", [trio_sagas.Act(f"a{i}", step) for i in range(3)], saga=True
    )
    with trio.fail_after(60), SQLiteJournal(tmp_path / "j.db") as journal:
        async with trio.open_nursery() as nursery:
            for index in range(200):
                nursery.start_soon(
                    lambda i: trio_sagas.run_scene(
                        scene, {}, journal=journal, run_id=f"r{i}"
                    ),
                    index,
                )
        stats = journal.statistics()
        # Each run: create, three intents, the final record (+ worker writes).
        assert stats.jobs >= 200 * 5
        assert stats.batches < stats.jobs / 4
        runs = await journal.runs(status=RunStatus.SUCCEEDED)
        assert len(runs) == 200
        events = await journal.events("r7")
        assert [e.kind for e in events][-1] == "SceneCompleted"


# -- a SIGKILL inside a batch holding several runs' writes --------------------

CHILD = HERE / "group_commit_child.py"


def run_child(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("seed", range(4))
async def test_kill_inside_a_multi_run_batch(tmp_path: pathlib.Path, seed: int) -> None:
    """Killed mid-batch: no intent whose code ran is lost; every run recovers."""
    from .crash_child import build_scene

    db, log = tmp_path / "j.db", tmp_path / "log.txt"
    child = await trio.to_thread.run_sync(run_child, str(db), str(log), str(seed))
    assert child.returncode == -9, child.stderr
    batch = int(child.stdout.split()[-1])
    assert batch >= 2, (
        f"the kill did not land in a batch of several runs: {child.stdout!r}"
    )
    lines = [line.split()[:2] for line in log.read_text().splitlines()]
    intent = {"run": "ActStarted", "undo": "CompensationStepStarted"}
    async with SQLiteJournal(db, create=False) as journal:
        for worker in await journal.workers():  # the killed child's lease
            if worker.pid != os.getpid():
                await journal.expire_worker(worker.worker_id)
        runs = await journal.runs()
        assert len(runs) == 8
        for what, key in lines:  # its intent was committed before its code ran
            run_id, _, path = key.removesuffix("#compensate").partition("/")
            started = [
                e.step for e in await journal.events(run_id) if e.kind == intent[what]
            ]
            assert path in started, (what, key, started)
        report = await trio_sagas.recover(journal, {"order": build_scene(str(log))})
        assert not report.skipped
        assert not await journal.runs(status=RunStatus.RUNNING)
        assert len(report.results) == sum(r.status is RunStatus.RUNNING for r in runs)
