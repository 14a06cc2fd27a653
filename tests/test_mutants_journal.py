"""Direct tests for SQLiteJournal argument checks that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import pathlib

import pytest
import trio

from trio_sagas import SQLiteJournal


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
