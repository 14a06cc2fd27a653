"""Direct tests for SQLiteJournal argument checks that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import pathlib

import pytest
import trio
import trio.testing

from trio_sagas import Act, RunStatus, Scene, SQLiteJournal, StepContext, run_scene


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
