"""Direct tests for SQLiteJournal argument checks that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import contextlib
import logging
import pathlib
import sqlite3

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_sagas import (
    Act,
    JournalEntry,
    JournalError,
    RunStatus,
    Scene,
    SQLiteJournal,
    StepContext,
    run_scene,
)
from trio_sagas._journal._sqlite import MAX_BUSY_TIMEOUT


async def test_expire_worker_refuses_a_non_str_id(tmp_path: pathlib.Path) -> None:
    """expire_worker(5) is a TypeError naming 'worker_id', not a silent 'no such worker'."""
    with trio.fail_after(30):
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            with pytest.raises(TypeError, match=r"worker_id.*5"):
                await journal.expire_worker(5)  # type: ignore[arg-type]


async def test_claim_refuses_a_negative_stale_after(tmp_path: pathlib.Path) -> None:
    """claim(run_id, stale_after=-1) is a ValueError naming 'stale_after'."""
    with trio.fail_after(30):
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            await journal.create_run("r", scene="s", state=b"{}")
            with pytest.raises(ValueError, match=r"stale_after.*-1"):
                await journal.claim("r", stale_after=-1)


async def test_claim_batch_refuses_stale_after_none(tmp_path: pathlib.Path) -> None:
    """claim_batch(stale_after=None) is a TypeError naming 'stale_after' (0.0 means no grace)."""
    with trio.fail_after(30):
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            with pytest.raises(TypeError, match=r"stale_after.*None"):
                await journal.claim_batch(limit=1, stale_after=None)  # type: ignore[arg-type]
            assert await journal.claim_batch(limit=1) == ()


async def test_sqlite_lease_is_not_timed_on_a_virtual_clock(
    mock_clock: trio.testing.MockClock, tmp_path: pathlib.Path
) -> None:
    """SQLite's lease runs on the host clock: 100 virtual seconds in an act (lease 1 s) lose nothing."""
    seen: list[float] = []

    async def long_act(ctx: StepContext, state: object) -> str:
        mock_clock.jump(100)
        await (
            trio.lowlevel.checkpoint()
        )  # a lease deadline armed on trio time fires here
        seen.append(trio.current_time())
        return "done"

    scene = Scene("s", [Act("a", long_act)])
    mock_clock.rate = 1.0  # so that the guard below fires on a hang: 100 jumped + 30 s
    with trio.fail_after(130):
        async with SQLiteJournal(tmp_path / "j.db", lease=1.0) as journal:
            result = await run_scene(scene, {}, journal=journal, run_id="r")
            run = await journal.get_run("r")
    assert result.ok
    assert 100.0 <= seen[0] < 130.0
    assert run is not None
    assert run.status is RunStatus.SUCCEEDED


def test_sqlite_journal_refuses_a_zero_lease(tmp_path: pathlib.Path) -> None:
    """SQLiteJournal(lease=0) is a ValueError naming 'lease'; no file is created."""
    with pytest.raises(ValueError, match=r"lease.*0"):
        SQLiteJournal(tmp_path / "j.db", lease=0)
    assert not (tmp_path / "j.db").exists()


async def test_append_refuses_a_state_that_is_not_bytes(tmp_path: pathlib.Path) -> None:
    """append(state="{}") is a TypeError naming the run's state; nothing is written."""
    with trio.fail_after(30):
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            fence = await journal.create_run("r", scene="s", state=b"{}")
            entry = JournalEntry("r", 0, "SceneStarted", "s", 0.0)
            with pytest.raises(TypeError, match=r"run 'r': the state: .* returned str"):
                await journal.append(fence, [entry], state="{}")  # type: ignore[arg-type]
            assert await journal.events("r") == ()
            run = await journal.get_run("r")
    assert run is not None
    assert (run.state, run.last_seq) == (b"{}", -1)


async def test_runs_names_the_first_damaged_run_and_counts_the_others(
    tmp_path: pathlib.Path,
) -> None:
    """runs() with damaged records: JournalError naming the first, '(and N more damaged runs)'."""
    db = tmp_path / "j.db"
    with trio.fail_after(30):
        async with SQLiteJournal(db) as journal:
            for run_id in ("r1", "r2", "r3"):
                await journal.create_run(run_id, scene="s", state=b"{}")
            for damaged, more in (
                (["r2"], ""),
                (["r2", "r3"], " (and 1 more damaged runs)"),
            ):
                with contextlib.closing(
                    sqlite3.connect(db, isolation_level=None)
                ) as conn:
                    conn.execute(
                        "UPDATE runs SET status = 'bogus' WHERE run_id IN "
                        f"({', '.join('?' * len(damaged))})",
                        damaged,
                    )
                with pytest.raises(JournalError) as caught:
                    await journal.runs()
                assert str(caught.value) == (
                    f"run 'r2' in journal {str(db)!r} is damaged and cannot be read: "
                    f"'bogus' is not a valid RunStatus{more}"
                )


def test_busy_timeout_may_be_sqlites_limit_but_not_more(tmp_path: pathlib.Path) -> None:
    """busy_timeout=MAX_BUSY_TIMEOUT is taken (sqlite3's limit); a millisecond more is a ValueError."""
    SQLiteJournal(tmp_path / "j.db", busy_timeout=MAX_BUSY_TIMEOUT)
    with pytest.raises(
        ValueError, match=r"busy_timeout must be at most 2147483 seconds"
    ):
        SQLiteJournal(tmp_path / "j.db", busy_timeout=MAX_BUSY_TIMEOUT + 0.001)


async def test_get_run_refuses_a_run_id_that_is_not_a_label(
    tmp_path: pathlib.Path,
) -> None:
    """get_run(5) is a TypeError naming 'run_id', not a silent 'no such run'."""
    with trio.fail_after(30):
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            with pytest.raises(TypeError, match=r"run_id.*5"):
                await journal.get_run(5)  # type: ignore[arg-type]
            assert await journal.get_run("r") is None


async def test_claim_batch_skips_a_damaged_run_with_a_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """claim_batch claims the readable runs around a damaged one, leaves it alone, logs it once."""
    caplog.set_level(logging.WARNING, logger="trio_sagas")
    db = tmp_path / "j.db"
    with trio.fail_after(30):
        with SQLiteJournal(db) as dead:
            for run_id in ("r1", "r2", "r3"):
                await dead.create_run(run_id, scene="s", state=b"{}")
        async with SQLiteJournal(db) as journal:
            assert dead.worker_id is not None
            await journal.expire_worker(dead.worker_id)
            with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
                conn.execute("UPDATE runs SET scene = x'ff' WHERE run_id = 'r2'")
            claimed = await journal.claim_batch(limit=10)
    assert [record.run_id for record, _ in claimed] == ["r1", "r3"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"a claim skips a damaged run: run 'r2' in journal {str(db)!r} is damaged "
        "and cannot be read: its scene name is b'\\xff', not text"
    ]


async def test_events_refuses_a_run_id_that_is_not_a_label(
    tmp_path: pathlib.Path,
) -> None:
    """events(5) is a TypeError naming run_id, like get_run's."""
    async with SQLiteJournal(tmp_path / "j.db") as journal:
        with pytest.raises(TypeError, match="run_id"):
            await journal.events(5)  # type: ignore[arg-type]


async def test_a_closed_journal_gives_its_worker_row_up(
    tmp_path: pathlib.Path,
) -> None:
    """Leaving ``async with SQLiteJournal`` unregisters its worker: another
    process sees no row of it (its runs are claimable at once, not after the
    lease)."""
    db = tmp_path / "j.db"
    async with SQLiteJournal(db) as first:
        worker = first.worker_id
        assert worker is not None
    async with SQLiteJournal(db) as second:
        rows = await second.workers()
    assert worker not in {row.worker_id for row in rows}
    assert second.worker_id in {row.worker_id for row in rows}


async def _quick(ctx: StepContext, state: object) -> None:
    await trio.lowlevel.checkpoint()


async def test_the_heartbeat_keeps_a_run_longer_than_its_lease(
    tmp_path: pathlib.Path,
) -> None:
    """A run outlasting its lease three times over (real clock) keeps it: the
    journal's heartbeat renews it while ``async with`` holds the journal."""

    async def slow(ctx: StepContext, state: object) -> None:
        await trio.sleep(1.6)

    scene = Scene("s", [Act("a", slow)], saga=True)
    async with SQLiteJournal(tmp_path / "j.db", lease=0.5) as journal:
        result = await run_scene(scene, {}, journal=journal, run_id="r1")
        assert result.ok
        record = await journal.get_run("r1")
    assert record is not None
    assert record.status is RunStatus.SUCCEEDED


@pytest.mark.parametrize("call", ["claim_batch", "claim_and_load"])
async def test_a_batch_claim_takes_every_good_run_behind_a_damaged_one(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, call: str
) -> None:
    """The oldest candidate damaged, three good ones behind it, limit 3: the
    one batch claims all three (its second round skips only the damaged row)
    and logs the damaged run once."""
    caplog.set_level(logging.WARNING, logger="trio_sagas")
    db = tmp_path / "j.db"
    with trio.fail_after(30):
        with SQLiteJournal(db) as dead:
            for run_id in ("bad", "g1", "g2", "g3"):
                await dead.create_run(run_id, scene="s", state=b"{}")
        async with SQLiteJournal(db) as journal:
            assert dead.worker_id is not None
            await journal.expire_worker(dead.worker_id)
            with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
                conn.execute("UPDATE runs SET scene = x'ff' WHERE run_id = 'bad'")
            if call == "claim_batch":
                got = [r.run_id for r, _ in await journal.claim_batch(limit=3)]
            else:
                got = [c.record.run_id for c in await journal.claim_and_load(limit=3)]
    assert got == ["g1", "g2", "g3"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "run 'bad'" in warnings[0]


async def test_entering_a_journal_cancelled_while_it_registers_does_not_hang(
    tmp_path: pathlib.Path,
) -> None:
    """``async with SQLiteJournal`` cancelled while its worker registers: the
    entry ends with the cancellation, its heartbeat stopped (here a rescue
    task stops the heartbeat after 3 s so that the bug fails the test instead
    of hanging the session)."""
    journal = SQLiteJournal(tmp_path / "j.db", lease=1.0)
    keeper = journal._worker.keeper
    register = keeper._register
    gate = trio.Event()
    rescued: list[bool] = []

    async def slow_register() -> str:
        await gate.wait()
        return await register()

    keeper._register = slow_register

    async def open_gate() -> None:
        await trio.sleep(0.3)  # after the entry was cancelled (at 0.1 s)
        gate.set()

    async def rescue() -> None:
        await trio.sleep(3)
        rescued.append(True)
        keeper.stop()

    entered = False
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rescue)
            nursery.start_soon(open_gate)
            with trio.move_on_after(0.1):
                async with journal:
                    entered = True
            nursery.cancel_scope.cancel()
    journal.close()
    assert (entered, rescued) == (False, [])
