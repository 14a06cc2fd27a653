"""Resume on every backend (memory, SQLite, PostgreSQL): a journal cut after
a write, copied into the backend by a worker that then leaves, is resumed by
another worker with recover()."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio

from trio_sagas import RunResumed, RunStatus, Uncertain, recover, run_scene

from .memory_journal import MemoryJournal
from .test_postgres_contract import journal_factory
from .test_resume import Shop, order

__all__ = ["journal_factory"]  # the fixture, imported for this module's tests

Factory = Any
PACE = 0.01
FINAL = {k: 1 for k in ("a", "b1", "b2", "c1", "c2", "d", "e")}


@pytest.mark.parametrize("cut", [2, 5, 8])
async def test_resume_on_every_backend(journal_factory: Factory, cut: int) -> None:
    """The cut run, resumed on the backend: SUCCEEDED with the uncrashed state;
    no completed act runs again; the RunResumed entry is journaled."""
    # The real clock (the journals' leases are host time): acts of 10-30 ms.
    source = MemoryJournal()
    await run_scene(order(Shop(PACE)), {}, journal=source, run_id="r")
    crashed = source.as_after(cut)
    entries = await crashed.events("r")
    record = await crashed.get_run("r")
    assert record is not None
    assert record.state is not None
    with trio.fail_after(60):
        async with journal_factory() as dead:
            fence = await dead.create_run("r", scene="order", state=b"{}")
            await dead.append(fence, entries, state=record.state)
        # The dead worker left: its run is claimable now.
        second = Shop(PACE)
        async with journal_factory() as worker:
            (result,) = await recover(
                worker, [order(second, uncertain=Uncertain.RETRY)]
            )
            run = await worker.get_run("r")
            journaled = await worker.events("r")
    assert result.ok
    assert result.state == FINAL
    assert run is not None
    assert run.status is RunStatus.SUCCEEDED
    completed = {e.step for e in entries if e.kind == "ActCompleted"}
    assert not {f"r/{p}" for p in completed} & set(second.runs())
    assert max(Counter(second.runs()).values()) == 1
    assert [e.kind for e in journaled].count(RunResumed.__name__) == 1
    assert [e.seq for e in journaled] == list(range(len(journaled)))
