"""Whether a crashed run was failing, read from its journal (Replay): each
failure entry alone says so, a completed chorus forgives what failed inside
it, and the failure a rollback reports is the one that failed the run."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_sagas import (
    JournalEntry,
    Scene,
    recover,
    run_scene,
)
from trio_sagas._saga._replay import Replay

from .helpers import FAILING_KINDS
from .memory_journal import MemoryJournal
from .test_resume import Shop
from .test_resume import tolerant_order as scene_of

FAILURES = sorted(FAILING_KINDS)


def replay(journal: MemoryJournal, scene: Scene, entries: Any) -> Replay:
    return Replay(
        journal.records["r"],
        scene,
        tuple(entries),
        decode=journal.codec.decode,
        deps=None,
        retry_failed=False,
    )


async def failed_run(fail: set[str], *, cancel_in: str | None = None) -> MemoryJournal:
    """The journal of one run of :func:`scene_of` with *fail* failing (or
    cancelled from outside while *cancel_in* runs)."""
    shop = Shop()
    shop.fail |= fail
    journal = MemoryJournal()
    if cancel_in is None:
        await run_scene(scene_of(shop), {}, journal=journal, run_id="r")
        return journal
    with trio.move_on_after(0.5 + {"a": 0, "d": 3}[cancel_in]):
        await run_scene(scene_of(shop), {}, journal=journal, run_id="r")
    return journal


@pytest.mark.parametrize("kind", FAILURES)
async def test_each_failure_entry_alone_makes_the_run_failing(
    kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A journal prefix ending at the first *kind* entry, with every other
    failure entry taken out: not resumable; without that entry too: resumable."""
    if kind == "ActCancelled":
        journal = await failed_run(set(), cancel_in="d")
    elif kind == "ChorusFailed":
        journal = await failed_run({"b1", "b2"})  # no branch succeeded
    else:
        journal = await failed_run({"d"})
    entries = journal.entries["r"]
    end = next(i for i, e in enumerate(entries) if e.kind == kind)
    others = [
        e for e in entries[: end + 1] if e.kind not in FAILING_KINDS or e.kind == kind
    ]
    assert [e.kind for e in others].count(kind) == 1
    scene = scene_of(Shop())
    assert not replay(journal, scene, others).resumable()
    assert replay(journal, scene, [e for e in others if e.kind != kind]).resumable()


async def test_a_completed_chorus_forgives_only_what_failed_inside_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``b1`` failed and its PARTIAL_SUCCESS chorus completed: resumable. The
    same entries with ``a``'s failure added before the chorus: still failing
    (it is outside the chorus)."""
    journal = await failed_run({"b1"})
    entries = journal.entries["r"]
    done = next(i for i, e in enumerate(entries) if e.kind == "ChorusCompleted")
    scene = scene_of(Shop())
    assert replay(journal, scene, entries[: done + 1]).resumable()
    assert not replay(journal, scene, entries[:done]).resumable()
    a_failed = JournalEntry(
        run_id="r", seq=-1, kind="ActFailed", step="order/a", at=0.0, data={}
    )
    assert not replay(
        journal, scene, [*entries[:done], a_failed, entries[done]]
    ).resumable()


async def test_the_rollback_reports_the_failure_that_failed_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``b1`` failed (tolerated), then ``d`` failed and the process died before
    its rollback ended: the recovery's rollback names ``d`` as the failed step
    and its error, not the tolerated ``b1``."""
    journal = await failed_run({"b1", "d"})
    entries = journal.entries["r"]
    cut = next(
        i
        for i in range(1, len(journal.writes) + 1)
        if any(
            e.kind == "ActFailed" and e.step == "order/d"
            for e in journal.as_after(i).entries["r"]
        )
    )
    assert any(e.kind == "ActFailed" and e.step == "order/pack/b1" for e in entries)
    (result,) = await recover(journal.as_after(cut), [scene_of(Shop())])
    assert not result.ok
    assert result.failed_step == "order/d"
    assert "d declined" in str(result.error)
