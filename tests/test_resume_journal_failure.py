"""A RESUME run whose journal fails mid-run (a full disk, a replaced file):
nothing is undone in memory -- an undo runs only once its intent is durable
-- and the recovery that resumes the run finds every completed act's effect
still in place.

The bug this pins: the process rolled the run back in memory without
journaling the undos, the journal still said "a completed", and the resumed
run, which never runs a completed act again, ended SUCCEEDED with a's effect
undone.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing

from trio_sagas import JournalError, RunStatus, Scene, recover, run_scene

from .memory_journal import MemoryJournal
from .test_resume import Shop, order

ACTS = ("a", "pack/b1", "pack/b2", "ship/c1", "ship/c2", "d", "e")


def net(shop: Shop) -> Counter[str]:
    """Per act path: times run minus times undone (1: its effect stands)."""
    count: Counter[str] = Counter()
    for key in shop.runs():
        count[key.removeprefix("r/")] += 1
    for key in shop.undos():
        count[key.removeprefix("r/").removesuffix("#compensate")] -= 1
    return count


async def fail_then_recover(
    fail_at: int, *, fail_step: str = ""
) -> tuple[Shop, Shop, list[str]]:
    """Run the order saga on a journal whose writes fail from the *fail_at*-th
    on, then recover it on another worker of the same store."""
    first, second = Shop(), Shop()
    if fail_step:
        first.fail.add(fail_step)
        second.fail.add(fail_step)
    journal = MemoryJournal()
    async with journal:
        journal.fail_at = fail_at
        with pytest.raises(JournalError):
            await run_scene(order(first), {}, journal=journal, run_id="r")
        (run,) = await journal.runs()
        assert run.status is RunStatus.RUNNING, fail_at
    undone_here = first.undos()
    other = journal.worker()
    async with other:
        report = await recover(other, [order(second)])
        assert len(report.results) == 1, fail_at
    return first, second, undone_here


async def write_count(fail_step: str = "") -> int:
    shop = Shop()
    shop.fail.update([fail_step] if fail_step else [])
    journal = MemoryJournal()
    await run_scene(order(shop), {}, journal=journal, run_id="r")
    return len(journal.writes)


async def test_journal_failure_then_resume_keeps_every_effect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """For every write that can fail: no undo runs in the failing process, and
    the resumed run ends SUCCEEDED with each act's effect standing once."""
    for fail_at in range(2, await write_count() + 1):
        first, second, undone_here = await fail_then_recover(fail_at)
        assert undone_here == [], fail_at
        effects = net(first) + net(second)
        assert effects == Counter({f"order/{a}": 1 for a in ACTS}), (fail_at, effects)


async def test_journal_failure_in_a_failing_run_is_rolled_back_once_resumed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The last act fails and the journal breaks at any later write: whatever
    the recovery does (resume, then the act fails again; or roll back), every
    effect is undone and no undo ran without its intent journaled."""
    for fail_at in range(2, await write_count("e") + 1):
        first, second, _ = await fail_then_recover(fail_at, fail_step="e")
        effects = net(first) + net(second)
        # e fails after logging its run (no effect): its count may stay 1.
        assert all(n <= 0 for step, n in effects.items() if step != "order/e"), (
            fail_at,
            effects,
        )
        journal_undos = Counter(second.undos()) + Counter(first.undos())
        assert max(journal_undos.values()) <= 2, fail_at


async def test_a_roll_back_run_still_rolls_back_in_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A ROLL_BACK run (the default) is unchanged: its sagas roll back in memory
    after a journal failure (recovery undoes again, at least once)."""
    shop = Shop()
    scene = order(shop)
    plain = Scene(scene.name, scene.steps, saga=True)
    journal = MemoryJournal()
    with trio.fail_after(100):
        journal.fail_at = 4
        with pytest.raises(JournalError):
            await run_scene(plain, {}, journal=journal, run_id="r")
    assert shop.undos(), "the ROLL_BACK run was not rolled back in memory"
