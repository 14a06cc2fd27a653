"""The journal recorder's flush: the write lock without a scheduler round when
no sibling writes, and the same cancellation and ordering as a trio.Lock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from trio_sagas import ActStarted, JournalEntry
from trio_sagas._events import SILENT
from trio_sagas._saga._journal import Fence
from trio_sagas._saga._recorder import JournalRecorder

from .memory_journal import MemoryJournal


class SlowJournal(MemoryJournal):
    """A memory journal whose appends take one virtual second and are logged."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, float, tuple[int, ...]]] = []

    async def append(
        self, fence: Fence, entries: Sequence[JournalEntry], **kwargs: Any
    ) -> None:
        seqs = tuple(e.seq for e in entries)
        self.log.append(("begin", trio.current_time(), seqs))
        await trio.sleep(1)
        await super().append(fence, entries, **kwargs)
        self.log.append(("end", trio.current_time(), seqs))


async def recorder(journal: SlowJournal) -> JournalRecorder:
    fence = await journal.create_run("r", scene="s", state=b"{}")
    return JournalRecorder("r", SILENT, journal, fence, state={})


async def test_a_cancelled_caller_writes_nothing_and_keeps_its_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Flush in a cancelled scope: Cancelled, no append begun, the events kept
    for the next flush (which writes them)."""
    journal = SlowJournal()
    rec = await recorder(journal)
    rec.emit(ActStarted, 0.0, step="a")
    with trio.CancelScope() as scope:
        scope.cancel()
        await rec.flush()
    assert scope.cancelled_caught
    assert journal.log == []
    assert [e.seq for e in rec.pending] == [0]
    await rec.flush()
    assert journal.log == [("begin", 0.0, (0,)), ("end", 1.0, (0,))]
    assert rec.pending == []


async def test_parallel_branches_share_one_append(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Branches flushing at once inside ``parallel()`` (a chorus): the first
    flush waits one scheduler round for the lock, so every branch's event
    goes in its one append; the others find nothing left to write."""
    journal = SlowJournal()
    rec = await recorder(journal)

    async def branch(step: str) -> None:
        rec.emit(ActStarted, trio.current_time(), step=step)
        await rec.flush()

    with rec.parallel():
        async with trio.open_nursery() as nursery:
            for step in "abc":
                nursery.start_soon(branch, step)
    assert rec.branches == 0
    assert journal.log == [("begin", 0.0, (0, 1, 2)), ("end", 1.0, (0, 1, 2))]


async def test_flushes_outside_parallel_take_turns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two flushes of one run at once without ``parallel()``: the first writes
    its event at once; the second waits for that append to end (no append
    overlaps another), then writes what is still pending."""
    journal = SlowJournal()
    rec = await recorder(journal)

    async def branch(step: str) -> None:
        rec.emit(ActStarted, trio.current_time(), step=step)
        await rec.flush()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(branch, "a")
        nursery.start_soon(branch, "b")
    assert journal.log == [
        ("begin", 0.0, (0,)),
        ("end", 1.0, (0,)),
        ("begin", 1.0, (1,)),
        ("end", 2.0, (1,)),
    ]
    assert [e.seq for e in await journal.events("r")] == [0, 1]


async def test_a_lone_flush_is_one_schedule_point() -> None:
    """Uncontended, a flush yields to the scheduler once (in its append), not
    once more for the write lock."""
    journal = MemoryJournal()
    fence = await journal.create_run("r", scene="s", state=b"{}")
    rec = JournalRecorder("r", SILENT, journal, fence, state={})
    steps = 0

    class Count(trio.abc.Instrument):
        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal steps
            steps += 1

    rec.emit(ActStarted, 0.0, step="a")
    counter = Count()
    trio.lowlevel.add_instrument(counter)
    try:
        await rec.flush()
    finally:
        trio.lowlevel.remove_instrument(counter)
    # The memory journal's append checkpoints once: one task step ends there,
    # and the step that resumes us is still running (not counted yet).
    assert steps == 1
