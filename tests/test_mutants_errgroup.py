"""Direct tests for error-group behaviours that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import functools
import logging

import pytest
import trio
import trio.testing

from trio_sagas import ErrGroupStatistics, Status, open_err_group

from .helpers import Declined


async def named_job(seconds: float) -> str:
    await trio.sleep(seconds)
    return "done"


async def test_partial_without_name_is_labelled_by_its_function(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A functools.partial spawned without name= is named after the wrapped function."""
    with trio.fail_after(10):
        async with open_err_group(name="g") as group:
            group.start_soon(functools.partial(named_job, 1.0))
    assert [(o.name, o.status) for o in group.outcomes] == [
        ("named_job", Status.SUCCEEDED)
    ]
    assert trio.current_time() == 1.0


async def test_cancel_with_a_string_reason_is_refused_and_cancels_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """group.cancel('manual') is a TypeError naming 'reason'; the running task still succeeds."""
    with trio.fail_after(10):
        async with open_err_group(name="g") as group:
            group.start_soon(named_job, 2.0, name="worker")
            await trio.sleep(1)
            with pytest.raises(TypeError, match=r"reason.*'manual'"):
                group.cancel("manual")  # type: ignore[arg-type]
    assert [(o.name, o.status) for o in group.outcomes] == [
        ("worker", Status.SUCCEEDED)
    ]
    assert trio.current_time() == 2.0


async def test_limit_still_holds_after_queued_tasks_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the queue drained through finished tasks, a new task waits while limit run."""
    with trio.fail_after(100):
        async with open_err_group(name="g", limit=2) as group:
            group.start_soon(named_job, 1.0, name="a")
            group.start_soon(named_job, 1.0, name="b")
            group.start_soon(named_job, 10.0, name="c")
            group.start_soon(named_job, 10.0, name="d")
            await trio.sleep(1.5)
            assert group.statistics() == ErrGroupStatistics(
                running=2, waiting=0, finished=2, failed=0
            )
            assert not group.try_start_soon(named_job, 1.0, name="refused")
            group.start_soon(named_job, 1.0, name="e")
            await trio.testing.wait_all_tasks_blocked()
            assert group.statistics() == ErrGroupStatistics(
                running=2, waiting=1, finished=2, failed=0
            )
    # c and d end at 11; e starts then and ends at 12.
    assert trio.current_time() == 12.0
    assert [o.name for o in group.outcomes] == ["a", "b", "c", "d", "e"]


async def test_failed_undo_while_unwinding_from_outside_is_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside cancel whose compensation fails logs one error naming the undo and its error."""
    ran: list[float] = []

    async def broken_refund() -> None:
        ran.append(trio.current_time())
        raise Declined("refund refused")

    caplog.set_level(logging.DEBUG, logger="trio_sagas")
    with trio.fail_after(10):
        with trio.CancelScope() as outer:
            async with open_err_group(name="checkout") as group:
                group.compensation.register(broken_refund, name="refund")
                group.start_soon(named_job, 5.0, name="worker")
                await trio.sleep(1)
                outer.cancel()
                await trio.sleep(1)
    assert outer.cancelled_caught
    assert ran == [1.0]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "error group 'checkout': compensation failed while unwinding "
        "(refund: Declined: refund refused); see group.compensation_report"
    ]
    report = group.compensation_report
    assert report is not None
    assert not report.ok


async def test_successful_undo_while_unwinding_logs_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside cancel whose compensation succeeds logs no error."""
    ran: list[float] = []

    async def refund() -> None:
        ran.append(trio.current_time())

    caplog.set_level(logging.DEBUG, logger="trio_sagas")
    with trio.fail_after(10):
        with trio.CancelScope() as outer:
            async with open_err_group(name="checkout") as group:
                group.compensation.register(refund, name="refund")
                await trio.sleep(1)
                outer.cancel()
                await trio.sleep(1)
    assert outer.cancelled_caught
    assert ran == [1.0]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    report = group.compensation_report
    assert report is not None
    assert report.ok


async def test_outcomes_read_while_tasks_run_list_only_the_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """group.outcomes read mid-run holds the tasks that ended, nothing for the running ones."""

    async def sleep_then(seconds: float) -> str:
        await trio.sleep(seconds)
        return f"slept {seconds}"

    async with open_err_group(name="g") as group:
        group.start_soon(sleep_then, 2.0, name="slow")
        group.start_soon(sleep_then, 1.0, name="fast")
        await trio.sleep(1.5)
        mid = group.outcomes
        assert [(o.name, o.status, o.value) for o in mid] == [
            ("fast", Status.SUCCEEDED, "slept 1.0")
        ]
        assert group.outcomes == mid  # read again: the same, cached
    assert [o.name for o in group.outcomes] == ["slow", "fast"]
    assert trio.current_time() == 2.0
