"""Fault injection for SQLiteJournal, for real: files deleted, replaced, emptied
or truncated under a live process and between processes; the WAL lost after
a crash; bytes flipped in index and table pages (seeded trials); damaged
rows; a codec that returns text; arguments sqlite3 mishandles."""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import shutil
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
import trio

import trio_sagas
from trio_sagas import (
    Act,
    Fence,
    JournalEntry,
    JournalError,
    JournalSchemaError,
    RunStatus,
    Scene,
    SQLiteJournal,
    StepContext,
    recover,
    run_scene,
)


def entry(run_id: str, seq: int, **data: Any) -> JournalEntry:
    return JournalEntry(
        run_id=run_id, seq=seq, kind="ActStarted", step="s/a", at=0.0, data=data
    )


def side(db: pathlib.Path) -> contextlib.closing[sqlite3.Connection]:
    """Another connection to the file (what a tool or another process does)."""
    return contextlib.closing(sqlite3.connect(db, isolation_level=None))


FENCES: dict[str, Fence] = {}
"""The fences of the runs journal_with_runs() created last (by run id)."""


async def journal_with_runs(db: pathlib.Path, count: int = 2) -> SQLiteJournal:
    journal = SQLiteJournal(db, synchronous="NORMAL")  # faster; same checks
    FENCES.clear()
    for index in range(count):
        run_id = f"r{index}"
        FENCES[run_id] = await journal.create_run(run_id, scene="s", state=b"{}")
    return journal


# -- the file changes under a live process -------------------------------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("delete", "was deleted"),
        ("replace", "was replaced by another file"),
        ("empty", "was emptied"),
        ("delete-wal", "lost its write-ahead log"),
        ("replace-wal", "had its write-ahead log"),
    ],
)
async def test_file_changed_under_a_live_journal(
    tmp_path: pathlib.Path, fault: str, message: str
) -> None:
    """The next write batch and read after the change are a clear JournalError."""
    db = tmp_path / "j.db"
    with await journal_with_runs(db) as journal:
        await journal.append(FENCES["r0"], [entry("r0", 0)])
        wal = db.with_name("j.db-wal")
        if fault == "delete":
            db.unlink()
        elif fault == "replace":
            shutil.copy(db, tmp_path / "copy.db")
            os.replace(tmp_path / "copy.db", db)
        elif fault == "empty":
            os.truncate(db, 0)
        elif fault == "delete-wal":
            wal.unlink()
        else:
            shutil.copy(wal, tmp_path / "copy-wal")
            os.replace(tmp_path / "copy-wal", wal)
        with pytest.raises(JournalError, match=message) as caught:
            await journal.append(FENCES["r0"], [entry("r0", 1)])
        assert str(db) in str(caught.value)
        with pytest.raises(JournalError, match=message):
            await journal.runs()
        with pytest.raises(JournalError, match=message):  # every later batch too
            await journal.create_run("r9", scene="s", state=b"{}")
        # The batched recovery calls too: a claim is a write, a read is a read.
        with pytest.raises(JournalError, match=message):
            await journal.claim_and_load(limit=10)
        with pytest.raises(JournalError, match=message):
            await journal.read_events(["r0", "r1"])


async def test_saga_under_a_deleted_journal_does_not_succeed(
    tmp_path: pathlib.Path,
) -> None:
    """A journal deleted mid-run stops the run with JournalError, never SUCCEEDED."""
    db = tmp_path / "j.db"

    async def delete_the_journal(ctx: StepContext, state: dict[str, Any]) -> None:
        db.unlink()

    async def fine(ctx: StepContext, state: dict[str, Any]) -> None:
        pass

    scene = Scene(
        "s", [Act("a", delete_the_journal), Act("b", fine), Act("c", fine)], saga=True
    )
    with (
        SQLiteJournal(db) as journal,
        trio.fail_after(10),
        pytest.raises(JournalError, match="was deleted"),
    ):
        await run_scene(scene, {}, journal=journal, run_id="r")


async def test_recovery_under_a_deleted_journal_stops_with_journal_error(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A recovery whose journal is deleted during an undo (after its batched
    claim) raises JournalError, bare: it reports no run as rolled back. The
    journal's exit then cannot give its worker row up: logged, not raised."""
    db = tmp_path / "j.db"
    undone: list[str] = []

    async def charge(ctx: StepContext, state: dict[str, Any]) -> str:
        return "ch-1"

    async def refund(ctx: StepContext, state: dict[str, Any]) -> None:
        undone.append(ctx.path)
        db.unlink()  # the file goes while the recovery undoes

    async def crash(ctx: StepContext, state: dict[str, Any]) -> None:
        raise trio_sagas.JournalError("simulated: the process dies here")

    def scene() -> Scene:
        return Scene(
            "s",
            [Act("charge", charge, compensate=refund), Act("ship", crash)],
            saga=True,
        )

    async with SQLiteJournal(db, lease=0.5) as dead:
        # Leave a RUNNING run: its intent for "ship" is journaled, then the
        # worker leaves without rolling back (as a killed process would).
        fence = await dead.create_run("r", scene="s", state=b"{}")
        await dead.append(
            fence,
            [
                JournalEntry(
                    run_id="r",
                    seq=0,
                    kind="SceneStarted",
                    step="s",
                    at=0.0,
                    data={"saga": True},
                ),
                JournalEntry(
                    run_id="r", seq=1, kind="ActStarted", step="s/charge", at=0.0
                ),
                JournalEntry(
                    run_id="r",
                    seq=2,
                    kind="ActCompleted",
                    step="s/charge",
                    at=0.0,
                    data={"duration": 0.0, "attempts": 1, "journal_wait": 0.0},
                    value=b'"ch-1"',
                ),
            ],
        )
    with trio.fail_after(30):
        async with SQLiteJournal(db) as journal:
            with pytest.raises(JournalError, match="was deleted"):
                await trio_sagas.recover(journal, [scene()])
    assert undone == ["s/charge"]
    assert any("giving up worker" in r.getMessage() for r in caplog.records)


# -- between processes ----------------------------------------------------------


async def test_missing_file_with_create_false(tmp_path: pathlib.Path) -> None:
    """A journal deleted while no process had it open is not silently re-created."""
    db = tmp_path / "j.db"
    (await journal_with_runs(db)).close()
    db.unlink()
    with pytest.raises(JournalError, match=r"does not exist \(create=False\)"):
        await SQLiteJournal(db, create=False).runs()
    assert not db.exists()


@pytest.mark.parametrize("create", [True, False])
async def test_zero_byte_file_is_refused(tmp_path: pathlib.Path, create: bool) -> None:
    """An empty file is refused even with create=True, and left as it is."""
    db = tmp_path / "j.db"
    db.write_bytes(b"")
    with pytest.raises(JournalError, match=r"is an empty \(0-byte\) file"):
        await SQLiteJournal(db, create=create).runs()
    assert db.read_bytes() == b""


async def test_emptied_between_processes(tmp_path: pathlib.Path) -> None:
    """A journal truncated to zero between runs is refused, not reset to empty."""
    db = tmp_path / "j.db"
    (await journal_with_runs(db)).close()
    os.truncate(db, 0)
    with pytest.raises(JournalError, match="empty"):
        await SQLiteJournal(db).create_run("x", scene="s", state=b"{}")
    assert db.stat().st_size == 0


async def test_truncated_file_is_refused(tmp_path: pathlib.Path) -> None:
    """A journal cut short between runs fails its open check, clearly."""
    db = tmp_path / "j.db"
    journal = await journal_with_runs(db, 300)
    for index in range(300):
        await journal.append(
            FENCES[f"r{index}"], [entry(f"r{index}", 0, pad="x" * 200)]
        )
    journal.close()
    os.truncate(db, db.stat().st_size // 2)
    with pytest.raises(JournalError, match="corrupt") as caught:
        await SQLiteJournal(db).runs()
    assert str(db) in str(caught.value)


async def test_foreign_files_are_refused(tmp_path: pathlib.Path) -> None:
    """Text, or another application's database, is refused even with create=True."""
    text = tmp_path / "notes.db"
    text.write_text("shopping list\n" * 100)
    with pytest.raises(JournalError, match="not a SQLite database"):
        await SQLiteJournal(text, create=True).runs()
    other = tmp_path / "other.db"
    with side(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(JournalSchemaError, match="another application"):
        await SQLiteJournal(other, create=True).runs()


async def test_new_journal_appears_fully_formed(tmp_path: pathlib.Path) -> None:
    """Creation leaves no temporary files and a file that is a journal from its first byte."""
    db = tmp_path / "j.db"
    journals = [SQLiteJournal(db) for _ in range(4)]
    async with trio.open_nursery() as nursery:  # racing creators agree on one file
        for journal in journals:
            nursery.start_soon(journal.runs)
    for journal in journals:
        journal.close()
    with side(db) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] != 0
    assert sorted(os.listdir(tmp_path)) == ["j.db"]


CRASHING_WRITER = """
import os, signal, sys, trio, trio_sagas
async def main():
    journal = trio_sagas.SQLiteJournal(sys.argv[1])
    for i in range(20):
        await journal.create_run(f"r{i}", scene="s", state=b"{}")
    os.kill(os.getpid(), signal.SIGKILL)
trio.run(main)
"""


def crash_after_writes(db: pathlib.Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(db)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -9, child.stderr


@pytest.mark.parametrize("fault", ["delete-wal", "truncate-wal"])
async def test_wal_lost_after_a_crash_is_detected(
    tmp_path: pathlib.Path, fault: str
) -> None:
    """Committed runs that lived only in the WAL: losing it is refused at open."""
    db = tmp_path / "j.db"
    await trio.to_thread.run_sync(crash_after_writes, db)
    wal = db.with_name("j.db-wal")
    assert wal.stat().st_size > 0
    if fault == "delete-wal":
        wal.unlink()
    else:
        os.truncate(wal, wal.stat().st_size // 2)
    with pytest.raises(JournalError, match=r"write-ahead log .* committed"):
        await SQLiteJournal(db).runs()


async def test_crash_with_wal_intact_loses_nothing(tmp_path: pathlib.Path) -> None:
    """The same crash with its files intact: all 20 committed runs are there."""
    db = tmp_path / "j.db"
    await trio.to_thread.run_sync(crash_after_writes, db)
    with SQLiteJournal(db, create=False) as journal:
        assert len(await journal.runs(status=RunStatus.RUNNING)) == 20


# -- damaged bytes -------------------------------------------------------------


def page_kinds(data: bytes, page_size: int) -> dict[str, list[int]]:
    """Page numbers (0-based) of b-tree pages by kind, from their header byte."""
    kinds: dict[str, list[int]] = {"index": [], "table": []}
    for number in range(len(data) // page_size):
        header = data[number * page_size + (100 if number == 0 else 0)]
        if header in (0x02, 0x0A):
            kinds["index"].append(number)
        elif header in (0x05, 0x0D):
            kinds["table"].append(number)
    return kinds


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """A closed journal of 40 runs (half RUNNING) with a few events each."""
    db = tmp_path_factory.mktemp("pristine") / "j.db"

    async def build() -> None:
        with SQLiteJournal(db, synchronous="NORMAL") as journal:
            for index in range(40):
                run_id = f"run-{index:02d}"
                fence = await journal.create_run(run_id, scene="s", state=b"{}")
                entries = [entry(run_id, seq, n=seq) for seq in range(4)]
                status = RunStatus.SUCCEEDED if index % 2 else None
                await journal.append(fence, entries, state=b'{"n":4}', status=status)

    trio.run(build)
    with side(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return db.read_bytes(), page_size


@pytest.mark.parametrize("kind", ["index", "table"])
async def test_flipped_bytes_never_lose_a_run_silently(
    tmp_path: pathlib.Path, pristine: tuple[bytes, int], kind: str
) -> None:
    """Seeded byte flips: a clear JournalError, or every run still accounted for."""
    data, page_size = pristine
    pages = page_kinds(data, page_size)[kind]
    assert pages
    outcomes = {"detected": 0, "readable": 0}
    for seed in range(25):
        rng = random.Random(seed)
        damaged = bytearray(data)
        page = rng.choice(pages)
        for _ in range(3):
            offset = page * page_size + rng.randrange(page_size)
            damaged[offset] ^= 1 << rng.randrange(8)
        db = tmp_path / f"{kind}-{seed}.db"
        db.write_bytes(bytes(damaged))
        with SQLiteJournal(db, create=False) as journal:
            error: JournalError | None = None
            try:
                records, broken = await journal.scan_runs()
                for record in records:
                    await journal.events(record.run_id)
            except JournalError as exc:
                error = exc
        if error is not None:  # clear: it names the file or the run
            assert str(db) in str(error) or "run " in str(error), error
            outcomes["detected"] += 1
            continue
        seen = {r.run_id for r in records} | {d.run_id for d in broken}
        assert len(seen) == 40, (seed, sorted(seen))
        outcomes["readable"] += 1
    assert outcomes["detected"] > 0


async def test_damaged_rows_are_journal_errors_naming_the_run(
    tmp_path: pathlib.Path,
) -> None:
    """Bad JSON and an unknown status: JournalError naming the run; scan_runs lists them apart."""
    db = tmp_path / "j.db"
    with await journal_with_runs(db, 4) as journal:
        for run_id in ("r0", "r1"):
            await journal.append(FENCES[run_id], [entry(run_id, 0)])
        with side(db) as conn:
            conn.execute("UPDATE events SET data = '{\"oops' WHERE run_id = 'r1'")
            conn.execute("UPDATE runs SET status = 'runnin?' WHERE run_id = 'r2'")
        with pytest.raises(JournalError, match=r"run 'r1' .* seq 0 cannot be read"):
            await journal.events("r1")
        assert len(await journal.events("r0")) == 1
        with pytest.raises(JournalError, match=r"run 'r2' .* damaged"):
            await journal.runs()
        with pytest.raises(JournalError, match=r"run 'r2' .* damaged"):
            await journal.get_run("r2")
        records, damaged = await journal.scan_runs(status=RunStatus.RUNNING)
        assert [r.run_id for r in records] == ["r0", "r1", "r3"]
        assert [(d.run_id, d.scene) for d in damaged] == [("r2", "s")]
        assert "'runnin?'" in damaged[0].reason
        records, damaged = await journal.scan_runs(status=RunStatus.SUCCEEDED)
        assert records == ()
        assert [d.run_id for d in damaged] == ["r2"]  # might be a RUNNING run


async def test_integrity_check_on_open(tmp_path: pathlib.Path) -> None:
    """An index that disagrees with its table is caught on open (unless disabled)."""
    db = tmp_path / "j.db"
    (await journal_with_runs(db, 3)).close()
    with side(db) as conn:  # a damaged index: the table says 'succeeded'
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'status, created_at', "
            "'created_at, status') WHERE name = 'runs_by_status'"
        )
    with pytest.raises(JournalError, match="integrity_check"):
        await SQLiteJournal(db).runs()
    with SQLiteJournal(db, check_on_open=False) as journal:
        record = await journal.get_run("r0")  # opened: the damage goes unseen
        assert record is not None


# -- codecs and arguments -------------------------------------------------------


class TextCodec:
    """A broken codec: encode returns str."""

    def encode(self, value: Any) -> Any:
        return repr(value)

    def decode(self, data: bytes) -> Any:
        return data


class TextResultCodec:
    """Encodes states to bytes but act results to str."""

    def encode(self, value: Any) -> Any:
        return b"{}" if isinstance(value, dict) else repr(value)

    def decode(self, data: bytes) -> Any:
        return {}


async def ok(ctx: StepContext, state: dict[str, Any]) -> str:
    return "receipt"


async def test_codec_returning_text_is_refused_before_any_write(
    tmp_path: pathlib.Path,
) -> None:
    """A codec returning str: TypeError naming it at the first encode, nothing written."""
    db = tmp_path / "j.db"
    scene = Scene("s", [Act("a", ok)], saga=True)
    with SQLiteJournal(db, codec=TextCodec()) as journal:
        with pytest.raises(TypeError, match=r"TextCodec .* returned str, not bytes"):
            await run_scene(scene, {}, journal=journal, run_id="r")
        assert await journal.runs() == ()


async def test_codec_returning_text_for_a_result_spares_other_runs(
    tmp_path: pathlib.Path,
) -> None:
    """A result encoded to str stops that run before its write; the journal stays readable."""
    db = tmp_path / "j.db"
    scene = Scene("s", [Act("a", ok), Act("b", ok)], saga=True)
    with SQLiteJournal(db, codec=TextResultCodec()) as journal:
        with pytest.raises(JournalError, match="returned str, not bytes"):
            await run_scene(scene, {}, journal=journal, run_id="r")
        (record,) = await journal.runs()
        assert record.run_id == "r"
        for item in await journal.events("r"):
            assert item.value is None or isinstance(item.value, bytes)


def test_busy_timeout_beyond_sqlite3s_limit() -> None:
    """busy_timeout that would overflow sqlite3's millisecond int is a ValueError."""
    with pytest.raises(
        ValueError, match="busy_timeout must be at most 2147483 seconds"
    ):
        SQLiteJournal("x.db", busy_timeout=2_147_484)
    SQLiteJournal("x.db", busy_timeout=2_147_483).close()


async def test_run_ids_and_scene_names_must_be_text(tmp_path: pathlib.Path) -> None:
    """None is a TypeError; lone surrogates a ValueError; nothing is stored."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        with pytest.raises(TypeError, match="run_id must be a str, got None"):
            await journal.create_run(None, scene="s", state=b"{}")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="run_id must be valid text"):
            await journal.create_run("r\udc80", scene="s", state=b"{}")
        with pytest.raises(ValueError, match="scene must be valid text"):
            await journal.create_run("r", scene="\ud800", state=b"{}")
        with pytest.raises(ValueError, match="run_id must be valid text"):
            await journal.get_run("\udc80")
        assert await journal.runs() == ()
    assert trio_sagas.SQLiteJournal is SQLiteJournal


async def test_claim_batch_skips_a_damaged_run(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A takeover claims every readable run and leaves the unreadable one alone."""
    db = tmp_path / "j.db"
    with await journal_with_runs(db, 4) as dead:
        (worker,) = await dead.workers()
        await dead.expire_worker(worker.worker_id)
    with side(db) as conn:  # not UTF-8, then not a time
        conn.execute("UPDATE runs SET scene = CAST(x'ff' AS TEXT) WHERE run_id = 'r1'")
        conn.execute("UPDATE runs SET created_at = 'noon' WHERE run_id = 'r2'")
    async with SQLiteJournal(db, create=False) as journal:
        claimed = await journal.claim_batch(limit=1)
        assert [record.run_id for record, _ in claimed] == ["r0"]
        claimed = await journal.claim_batch(limit=10)
        assert [record.run_id for record, _ in claimed] == ["r3"]
        skipped = [r.getMessage() for r in caplog.records if "skips" in r.getMessage()]
        assert any("run 'r2'" in message for message in skipped), skipped
        _, damaged = await journal.scan_runs(status=RunStatus.RUNNING)
        assert sorted(d.run_id for d in damaged) == ["r1", "r2"]
        assert "not valid UTF-8" in damaged[0].reason


async def test_check_reads_every_row(tmp_path: pathlib.Path) -> None:
    """check(): SQLite's findings plus every run and event decoded, damage listed by run."""
    db = tmp_path / "j.db"
    with await journal_with_runs(db, 3) as journal:
        for run_id in ("r0", "r1"):
            await journal.append(FENCES[run_id], [entry(run_id, 0), entry(run_id, 1)])
        healthy = await journal.check()
        assert healthy.ok
        assert (healthy.runs, healthy.events, healthy.integrity) == (3, 4, ())
        with side(db) as conn:
            conn.execute("UPDATE events SET data = '[' WHERE run_id = 'r1' AND seq = 1")
        found = await journal.check()
        assert not found.ok
        assert [(d.run_id, d.scene) for d in found.damaged] == [("r1", "s")]
        assert "seq 1" in found.damaged[0].reason


async def test_recover_skips_damaged_runs_and_recovers_the_others(
    tmp_path: pathlib.Path,
) -> None:
    """One damaged event and one unknown status: reported in skipped, the rest recovered."""
    db = tmp_path / "j.db"
    with await journal_with_runs(db, 4) as crashed:
        for run_id in ("r0", "r1"):
            await crashed.append(
                FENCES[run_id], [entry(run_id, 0, name="a", attempt=1)]
            )
        assert await crashed.expire_worker(crashed.worker_id)  # it "died"
    with side(db) as conn:
        conn.execute("UPDATE events SET data = '{\"oops' WHERE run_id = 'r1'")
        conn.execute("UPDATE runs SET status = 'runnin?' WHERE run_id = 'r2'")
    scene = Scene("s", [Act("a", ok)], saga=True)
    with SQLiteJournal(db, synchronous="NORMAL") as journal:
        report = await recover(journal, {"s": scene})
    skipped = {s.run_id: s.reason for s in report.skipped}
    assert sorted(skipped) == ["r1", "r2"]
    assert skipped["r1"].startswith("damaged: run 'r1' ")
    assert skipped["r2"].startswith("damaged: ")
    assert "'runnin?'" in skipped["r2"]
    assert sorted(r.run_id for r in report.results) == ["r0", "r3"]


async def test_prune_goes_in_chunks_and_deletes_every_old_run(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prune deletes every finished run in transactions of PRUNE_CHUNK runs, each its own write."""
    from trio_sagas._journal import _sqlite

    monkeypatch.setattr(_sqlite, "PRUNE_CHUNK", 3)
    db = tmp_path / "j.db"
    with await journal_with_runs(db, 8) as journal:
        for index in range(7):
            run_id = f"r{index}"
            await journal.append(
                FENCES[run_id], [entry(run_id, 0)], status=RunStatus.SUCCEEDED
            )
        before = journal.statistics().batches
        assert await journal.prune(older_than=0) == 7
        assert journal.statistics().batches - before == 3  # 3 + 3 + 1
        assert [r.run_id for r in await journal.runs()] == ["r7"]
        assert await journal.events("r0") == ()
