"""Entering a journal (``async with``) cancelled while its worker registers:
the entry ends with the cancellation, nothing keeps running, and the lease
the registration took is given back (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_sagas import JournalError, SQLiteJournal

from .test_postgres_contract import journal_factory

__all__ = ["journal_factory"]  # the fixture, imported for this module's tests


async def test_a_cancelled_entry_ends_and_gives_its_lease_back(
    journal_factory: Any,
) -> None:
    """The registration is slowed until after the entry was cancelled (at
    0.1 s): the entry ends right after it (no shielded heartbeat left behind
    to wait for), the block never runs, and no worker row is left."""
    journal = journal_factory(lease=2.0)
    keeper = (
        journal._worker.keeper  # SQLite
        if hasattr(journal, "_worker")
        else getattr(journal, "_keeper", None) or journal.keeper  # PostgreSQL, memory
    )
    register = keeper._register
    gate = trio.Event()

    async def slow_register() -> str:
        with trio.CancelScope(shield=True):  # a write once begun is not abandoned
            await gate.wait()
            worker_id: str = await register()
        return worker_id

    keeper._register = slow_register
    entered = False
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def open_gate() -> None:
                await trio.sleep(0.3)
                gate.set()

            nursery.start_soon(open_gate)
            start = trio.current_time()
            with trio.move_on_after(0.1) as scope:
                async with journal:
                    entered = True
            ended = trio.current_time() - start
    assert scope.cancelled_caught
    assert not entered
    assert 0.3 <= ended < 2.0  # the registration finished, then the entry ended
    async with journal_factory() as other:
        assert [
            w for w in await other.workers() if w.worker_id != other.worker_id
        ] == []


async def test_a_journal_cancelled_on_entry_is_closed(tmp_path: Any) -> None:
    """A SQLite journal whose entry was cancelled closed its connections:
    later calls say it is closed."""
    journal = SQLiteJournal(tmp_path / "j.db")
    with trio.CancelScope() as scope:
        scope.cancel()
        async with journal:
            raise AssertionError("not reached")
    with pytest.raises(JournalError, match="is closed"):
        await journal.runs()
