"""A durable run's act cancelled while its ``run`` ran is *uncertain*.

The PostgreSQL chaos test found runs journaled COMPENSATED whose act had
written its effect and was never undone: the worker's ``run_worker`` died
(a claim failed while the database restarted), its nursery cancelled the
runs beside it, and each run journaled ``ActCancelled`` for the act it was
in, rolled back only the acts that had *completed*, and wrote COMPENSATED.
The act's effect may have happened (here: it had), so it is undone like an
act a crash interrupted -- live and by a recovery reading ``ActCancelled``.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio
import trio.testing

from trio_sagas import (
    Act,
    JournalError,
    LeaseLostError,
    RunStatus,
    Scene,
    StepContext,
    recover,
    run_scene,
    run_worker,
)

from .memory_journal import MemoryJournal

GUARD = 60


def order(
    ledger: list[str], *, uncertain: Any = "compensate", seconds: float = 1
) -> Scene:
    async def do(ctx: StepContext, state: object) -> None:
        ledger.append(f"do {ctx.name}")  # the effect, then a slow reply
        await trio.sleep(seconds)

    async def undo(ctx: StepContext, state: object) -> None:
        assert ctx.result is None or ctx.name == "reserve"
        ledger.append(f"undo {ctx.name}")

    return Scene(
        "order",
        [
            Act("reserve", do, compensate=undo),
            Act("charge", do, compensate=undo, uncertain=uncertain),
        ],
        saga=True,
    )


async def test_cancelled_act_is_undone_before_compensated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled from outside while charge ran (its effect done): the rollback
    undoes charge too, so COMPENSATED is true."""
    ledger: list[str] = []
    journal = MemoryJournal()
    with trio.fail_after(GUARD):
        with trio.move_on_after(1.5):  # charge is in its slow reply
            await run_scene(order(ledger), {}, journal=journal, run_id="r")
    assert trio.current_time() == 1.5
    assert ledger == ["do reserve", "do charge", "undo charge", "undo reserve"]
    assert journal.records["r"].status is RunStatus.COMPENSATED


async def test_uncertain_skip_leaves_a_cancelled_act() -> None:
    """``uncertain="skip"`` (run has no effect unless it completes): not undone."""
    ledger: list[str] = []
    journal = MemoryJournal()
    with trio.fail_after(GUARD), trio.move_on_after(1.5):
        await run_scene(
            order(ledger, uncertain="skip"), {}, journal=journal, run_id="r"
        )
    assert ledger == ["do reserve", "do charge", "undo reserve"]
    assert journal.records["r"].status is RunStatus.COMPENSATED


async def test_a_crash_after_act_cancelled_is_recovered_with_the_undo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A journal cut right after ``ActCancelled`` was written (before any undo
    ran): recovery undoes the cancelled act as well as the completed one."""
    ledger: list[str] = []
    journal = MemoryJournal()
    with trio.fail_after(GUARD), trio.move_on_after(1.5):
        await run_scene(order(ledger), {}, journal=journal, run_id="r")
    cut = next(
        n
        for n in range(1, len(journal.writes) + 1)
        if "ActCancelled" in {e.kind for e in journal.as_after(n).entries["r"]}
    )
    crashed = journal.as_after(cut)
    kinds = [e.kind for e in crashed.entries["r"]]
    assert "ActCancelled" in kinds
    assert "CompensationStepCompleted" not in kinds
    ledger.clear()
    with trio.fail_after(GUARD):
        async with crashed:
            report = await recover(crashed, [order(ledger)])
    assert len(report) == 1
    assert ledger == ["undo charge", "undo reserve"]
    assert crashed.records["r"].status is RunStatus.COMPENSATED


async def test_run_worker_survives_a_failed_claim_and_its_neighbours_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The chaos test's trigger: a claim fails (the database restarting): run_worker
    logs it and polls again; the run next to it is not cancelled."""
    ledger: list[str] = []
    journal = MemoryJournal()
    real = journal.claim_batch
    failures = [JournalError("server restarting (test)")] * 2

    async def flaky(**kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(**kwargs)

    journal.claim_batch = flaky  # type: ignore[method-assign]
    with trio.fail_after(GUARD):
        async with journal, trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(run_worker, journal, [order(ledger)], poll=0.5)
            )
            result = await run_scene(order(ledger), {}, journal=journal, run_id="r")
            nursery.cancel_scope.cancel()
    assert result.ok
    assert not failures
    assert ledger == ["do reserve", "do charge"]


async def test_run_worker_that_cannot_register_fails_start() -> None:
    """Before it started, a journal failure is the caller's to hear."""
    journal = MemoryJournal()

    async def broken() -> str:
        raise JournalError("unreachable (test)")

    journal.keeper._register = broken
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            with pytest.raises(JournalError, match="unreachable"):
                await nursery.start(run_worker, journal, [order([])])


async def test_a_late_renewal_gives_the_worker_id_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A renewal that answers after the local deadline (the run under it was
    already cancelled): the keeper gives the id up -- expired, so the run is
    claimable at once instead of staying RUNNING under a live worker -- and
    registers a new id."""
    ledger: list[str] = []
    journal = MemoryJournal(lease=3.0)
    stalled = journal.stall_renewals = trio.Event()
    with trio.fail_after(GUARD):
        async with journal, trio.open_nursery() as nursery:
            old = journal.worker_id

            async def release() -> None:
                await trio.sleep_until(2.8)  # after the deadline 2.7
                stalled.set()

            nursery.start_soon(release)
            with pytest.raises(LeaseLostError, match="ran out"):
                await run_scene(
                    order(ledger, seconds=2), {}, journal=journal, run_id="r"
                )
            assert trio.current_time() == 2.7
            journal.stall_renewals = None
            await trio.sleep_until(2.8)
            await trio.testing.wait_all_tasks_blocked()
            assert journal.worker_id not in ("", old)
            other = journal.worker()
            report = await recover(other, [order(ledger)])
            assert [r.run_id for r in report] == ["r"]
            assert trio.current_time() == 2.8  # not when the renewed row ran out
    assert ledger == ["do reserve", "do charge", "undo charge", "undo reserve"]
