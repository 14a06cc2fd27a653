"""How the SQLite writer runs a batch: without a savepoint per write while no
write needs one, a group of appends in a few statements, and every fallback
(a write that refused after changing rows, a failing multi-row INSERT, an
older SQLite) giving each caller the verdict it would get alone."""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import tempfile
import threading
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sagas import (
    Fence,
    JournalEntry,
    JournalError,
    RunClaimedError,
    SQLiteJournal,
)
from trio_sagas._journal import _store

from .test_group_commit import Gate, committed, entry, opened_at_exit, setup_runs


class Refused(Exception):
    """A write job that refused."""


@contextlib.contextmanager
def traced(journal: SQLiteJournal) -> Iterator[list[str]]:
    """The statements the writer thread runs meanwhile (the connection is open)."""
    statements: list[str] = []
    conn = journal._store._wconn
    assert conn is not None
    conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        conn.set_trace_callback(None)


async def run_batch(journal: SQLiteJournal, *writes: object) -> list[object]:
    """Queue every write behind a gate, then let them run as one batch.

    Each write is a job (a function of the connection) or ``(fence,
    entries)`` for an append; returns each one's result or exception.
    """
    results: list[object] = [None] * len(writes)

    async def write(index: int, what: object) -> None:
        try:
            if isinstance(what, tuple):
                fence, entries = what
                await journal.append(fence, entries, state=b"[1]")
            else:
                results[index] = await journal._write(what)  # type: ignore[arg-type]
        except (JournalError, Refused) as exc:
            results[index] = exc

    before = journal.statistics().batches
    with opened_at_exit(Gate()) as gate:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal._write, gate)
            await gate.wait_entered()
            for index, what in enumerate(writes):
                nursery.start_soon(write, index, what)
                await trio.testing.wait_all_tasks_blocked()  # queued in this order
            assert journal.statistics().queued == len(writes)
            gate.opened.set()
    assert journal.statistics().batches == before + 2  # the gate's, then theirs
    return results


def states(db: pathlib.Path) -> dict[str, bytes]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT run_id, state FROM runs").fetchall())


async def test_appends_of_many_runs_take_a_few_statements(
    tmp_path: pathlib.Path,
) -> None:
    """70 appends in one batch: three fenced UPDATEs, three INSERTs, no savepoint per write."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 70)
        with traced(journal) as statements:
            results = await run_batch(
                journal, *((f, [entry(r, 0), entry(r, 1)]) for r, f in fences.items())
            )
        assert results == [None] * 70
        assert committed(tmp_path / "j.db") == dict.fromkeys(fences, 2)
        updates = [s for s in statements if s.startswith("WITH v")]
        inserts = [s for s in statements if s.startswith("INSERT INTO events")]
        assert len(updates) == 3  # 64 + 4 + 2 runs
        assert len(inserts) == 4  # 140 rows: 64 + 64 + 8 + 4
        assert not [s for s in statements if s == "SAVEPOINT job"]


async def test_refusals_without_changes_need_no_savepoint(
    tmp_path: pathlib.Path,
) -> None:
    """A stale fence, a gap, a taken run id and a quiet refusal: each fails alone, no savepoint."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 4)
        stale = Fence("r1", fences["r1"].worker, 2)

        def refuse(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1").fetchall()
            raise Refused("no")

        with traced(journal) as statements:
            results = await run_batch(
                journal,
                (fences["r0"], [entry("r0", 0)]),
                (stale, [entry("r1", 0)]),
                (fences["r2"], [entry("r2", 5)]),  # a gap in seq
                refuse,
                (fences["r3"], [entry("r3", 0)]),
            )
        assert results[0] is None
        assert isinstance(results[1], RunClaimedError)
        assert isinstance(results[2], JournalError)
        assert "its last seq is -1, the first new seq is 5" in str(results[2])
        assert isinstance(results[3], Refused)
        assert results[4] is None
        assert committed(tmp_path / "j.db") == {"r0": 1, "r3": 1}
        assert "SAVEPOINT job" not in statements


async def test_a_write_that_refused_after_changing_rows_rolls_back_alone(
    tmp_path: pathlib.Path,
) -> None:
    """Then the batch runs again, one savepoint per write: the others still commit."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 3)

        def change_then_refuse(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE runs SET state = x'00' WHERE run_id = 'r1'")
            raise Refused("after a change")

        with traced(journal) as statements:
            results = await run_batch(
                journal,
                (fences["r0"], [entry("r0", 0)]),
                change_then_refuse,
                (fences["r2"], [entry("r2", 0)]),
            )
        assert results[0] is None
        assert isinstance(results[1], Refused)
        assert results[2] is None
        assert statements.count("SAVEPOINT job") == 3
        assert committed(tmp_path / "j.db") == {"r0": 1, "r2": 1}
        assert states(tmp_path / "j.db") == {"r0": b"[1]", "r1": b"{}", "r2": b"[1]"}


async def test_a_failing_insert_sends_the_group_back_one_by_one(
    tmp_path: pathlib.Path,
) -> None:
    """An append repeating a seq: the group's rows are taken back, and only it fails."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 3)
        results = await run_batch(
            journal,
            (fences["r0"], [entry("r0", 0)]),
            (fences["r1"], [entry("r1", 0), entry("r1", 0)]),
            (fences["r2"], [entry("r2", 0), entry("r2", 1)]),
        )
        assert results[0] is None
        assert isinstance(results[1], JournalError)
        assert "UNIQUE" in str(results[1])
        assert results[2] is None
        assert committed(tmp_path / "j.db") == {"r0": 1, "r2": 2}
        assert states(tmp_path / "j.db") == {"r0": b"[1]", "r1": b"{}", "r2": b"[1]"}
        record = await journal.get_run("r1")
        assert record is not None
        assert record.last_seq == -1


async def test_a_value_sqlite_cannot_bind_fails_only_its_append(
    tmp_path: pathlib.Path,
) -> None:
    """A value SQLite cannot bind: the group is taken back, only its append fails."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 3)
        bad = JournalEntry(run_id="r1", seq=0, kind="K", step="s", at=object())  # type: ignore[arg-type]
        results = await run_batch(
            journal,
            (fences["r0"], [entry("r0", 0)]),
            (fences["r1"], [bad]),
            (fences["r2"], [entry("r2", 0)]),
        )
        assert results[0] is None
        assert isinstance(results[1], JournalError)
        assert results[2] is None
        assert committed(tmp_path / "j.db") == {"r0": 1, "r2": 1}
        assert states(tmp_path / "j.db")["r1"] == b"{}"


async def test_two_appends_of_one_run_in_one_batch_go_in_order(
    tmp_path: pathlib.Path,
) -> None:
    """The second append of a run continues the first (a group holds each run once)."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 2)
        results = await run_batch(
            journal,
            (fences["r0"], [entry("r0", 0)]),
            (fences["r1"], [entry("r1", 0)]),
            (fences["r0"], [entry("r0", 1), entry("r0", 2)]),
            (fences["r1"], [entry("r1", 1)]),
        )
        assert results == [None] * 4
        assert committed(tmp_path / "j.db") == {"r0": 3, "r1": 2}
        assert [e.seq for e in await journal.events("r0")] == [0, 1, 2]


async def test_without_update_from_the_appends_run_one_by_one(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a SQLite older than 3.35 each append is its own fenced UPDATE: same verdicts."""
    monkeypatch.setattr(_store, "BATCHED", False)
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 3)
        stale = Fence("r1", fences["r1"].worker, 2)
        with traced(journal) as statements:
            results = await run_batch(
                journal,
                (fences["r0"], [entry("r0", 0)]),
                (stale, [entry("r1", 0)]),
                (fences["r2"], [entry("r2", 0)]),
            )
        assert results[0] is None
        assert isinstance(results[1], RunClaimedError)
        assert results[2] is None
        assert not [s for s in statements if s.startswith("WITH v")]
        assert committed(tmp_path / "j.db") == {"r0": 1, "r2": 1}


async def test_callers_from_two_trio_runs_in_one_batch(tmp_path: pathlib.Path) -> None:
    """One batch, callers in two threads' trio runs: each run's callers are woken."""
    with trio.fail_after(20), SQLiteJournal(tmp_path / "j.db") as journal:
        fences = await setup_runs(journal, 2)
        answered: list[str] = []

        def other_run(run_id: str) -> None:
            async def append() -> None:
                await journal.append(fences[run_id], [entry(run_id, 0)])

            trio.run(append)
            answered.append(run_id)

        with opened_at_exit(Gate()) as gate:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(journal._write, gate)
                await gate.wait_entered()
                threads = [
                    threading.Thread(target=other_run, args=(r,)) for r in fences
                ]
                for thread in threads:
                    thread.start()
                while journal.statistics().queued < 2:  # noqa: ASYNC110
                    await trio.sleep(0.001)
                gate.opened.set()
            for thread in threads:
                await trio.to_thread.run_sync(thread.join, 10)
        assert sorted(answered) == ["r0", "r1"]
        assert journal.statistics().largest_batch == 2
        assert committed(tmp_path / "j.db") == {"r0": 1, "r1": 1}


KINDS = ["ok", "stale", "gap", "dup", "twice", "refused", "changed"]


@settings(max_examples=20, deadline=None)
@given(plan=st.lists(st.sampled_from(KINDS), min_size=1, max_size=12))
async def test_property_a_batch_gives_each_write_its_own_verdict(
    plan: list[str],
) -> None:
    """Whatever the mix, exactly the accepted writes commit, each as it would alone."""
    with (
        tempfile.TemporaryDirectory() as folder,
        trio.fail_after(30),
        SQLiteJournal(pathlib.Path(folder) / "j.db", synchronous="NORMAL") as journal,
    ):
        fences = await setup_runs(journal, len(plan))
        writes: list[object] = []
        expected: dict[str, int] = {}  # committed events per run
        verdicts: list[type | None] = []
        for index, kind in enumerate(plan):
            run_id, fence = f"r{index}", fences[f"r{index}"]
            rows: list[JournalEntry]
            if kind == "refused" or kind == "changed":

                def job(
                    conn: sqlite3.Connection, r: str = run_id, k: str = kind
                ) -> None:
                    if k == "changed":
                        conn.execute(
                            "UPDATE runs SET state = x'00' WHERE run_id = ?", (r,)
                        )
                    raise Refused(r)

                writes.append(job)
                verdicts.append(Refused)
                continue
            if kind == "stale":
                fence = Fence(run_id, fence.worker, fence.epoch + 1)
            rows = {
                "ok": [entry(run_id, 0)],
                "stale": [entry(run_id, 0)],
                "gap": [entry(run_id, 3)],
                "dup": [entry(run_id, 0), entry(run_id, 0)],
                "twice": [entry(run_id, 0)],
            }[kind]
            writes.append((fence, rows))
            verdicts.append(
                {"ok": None, "twice": None, "stale": RunClaimedError}.get(
                    kind, JournalError
                )
            )
            if kind in ("ok", "twice"):
                expected[run_id] = 1
            if kind == "twice":
                writes.append((fence, [entry(run_id, 1)]))
                verdicts.append(None)
                expected[run_id] = 2
        results = await run_batch(journal, *writes)
        for result, verdict in zip(results, verdicts, strict=True):
            if verdict is None:
                assert result is None
            else:
                assert type(result) is verdict or isinstance(result, verdict)
        assert committed(pathlib.Path(folder) / "j.db") == expected
        for run_id, state in states(pathlib.Path(folder) / "j.db").items():
            assert state == (b"[1]" if run_id in expected else b"{}"), run_id
