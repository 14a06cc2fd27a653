"""Error groups: the first failure cancels peers at once, then compensation runs once."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_sagas import (
    CancelCause,
    CancelOrigin,
    CancelReason,
    ErrGroup,
    ErrGroupStatistics,
    Event,
    GroupCancelled,
    GroupCompensationCompleted,
    GroupCompensationStarted,
    GroupTaskFinished,
    OutcomeError,
    SagaError,
    Status,
    StepContext,
    open_err_group,
)

from .helpers import Declined, LeakCheck, run_virtual


async def sleeper(seconds: float = math.inf) -> str:
    await trio.sleep(seconds)
    return f"slept {seconds}"


async def fail_after(seconds: float, message: str = "declined") -> None:
    await trio.sleep(seconds)
    raise Declined(message)


async def test_peers_cancelled_at_failure_instant_while_compensation_takes_30s(
    autojump_clock: trio.testing.MockClock, no_task_leaks: LeakCheck
) -> None:
    """Peers see Cancelled at t=1 (the failure); compensation then runs 30 s."""
    peers_cancelled: list[tuple[float, str | None]] = []
    undone: list[float] = []
    events: list[Event] = []

    async def peer() -> None:
        try:
            await trio.sleep(math.inf)
        except trio.Cancelled as cancelled:
            peers_cancelled.append((trio.current_time(), cancelled.reason))
            raise

    async def slow_undo() -> None:
        await trio.sleep(30)
        undone.append(trio.current_time())

    async def charge(ctx: StepContext) -> None:
        ctx.register_compensation(slow_undo, name="refund")
        await trio.sleep(1)
        raise Declined("card declined")

    with no_task_leaks(), pytest.raises(Declined, match="card declined"):
        async with open_err_group(
            name="checkout", observer=events.append, compensation_timeout=60
        ) as group:
            for index in range(3):
                group.start_soon(peer, name=f"peer-{index}")
            group.start_step(charge, name="charge")
    reason = "step_failed (internal) in scope 'checkout', triggered by 'charge': Declined: card declined"
    assert peers_cancelled == [(1.0, reason)] * 3
    assert undone == [31.0]
    assert trio.current_time() == 31.0
    kinds = [(type(e).__name__, e.at) for e in events]
    assert kinds[:2] == [("GroupTaskFinished", 1.0), ("GroupCancelled", 1.0)]
    assert kinds[2:5] == [("GroupTaskFinished", 1.0)] * 3
    assert kinds[5:] == [
        ("GroupCompensationStarted", 1.0),
        ("GroupCompensationCompleted", 31.0),
    ]
    cancelled = [e for e in events if isinstance(e, GroupCancelled)]
    assert cancelled[0].cause == CancelCause.of(
        CancelReason.STEP_FAILED,
        scope="checkout",
        triggered_by="charge",
        message="Declined: card declined",
    )
    assert group.compensation_report is not None
    assert group.compensation_report.ok


async def test_outcomes_record_every_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Outcomes list every task in start order with status, cause and times."""
    with pytest.raises(Declined):
        async with open_err_group(name="g") as group:
            group.start_soon(sleeper, 0.5, name="quick")
            group.start_soon(fail_after, 2.0, name="fails")
            group.start_soon(sleeper, name="slow")
    quick, fails, slow = group.outcomes
    assert (quick.name, quick.status, quick.value, quick.finished_at) == (
        "quick",
        Status.SUCCEEDED,
        "slept 0.5",
        0.5,
    )
    assert (fails.status, fails.started_at, fails.finished_at) == (
        Status.FAILED,
        0.0,
        2.0,
    )
    assert isinstance(fails.error, Declined)
    assert (slow.status, slow.finished_at) == (Status.CANCELLED, 2.0)
    assert slow.cause is not None
    assert (slow.cause.reason, slow.cause.origin, slow.cause.triggered_by) == (
        CancelReason.STEP_FAILED,
        CancelOrigin.INTERNAL,
        "fails",
    )
    assert group.failure is fails.error


async def test_compensation_failure_raises_saga_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failing compensation turns the failure into SagaError(original, *errors)."""

    async def broken_refund() -> None:
        raise RuntimeError("refund API down")

    async def release() -> None:
        await trio.sleep(1)

    async def reserve(ctx: StepContext) -> None:
        ctx.register_compensation(release, name="release")

    async def charge(ctx: StepContext) -> None:
        ctx.register_compensation(broken_refund, name="refund")
        await trio.sleep(2)
        raise Declined("declined")

    with pytest.RaisesGroup(Declined, RuntimeError) as info:
        async with open_err_group(name="g") as group:
            group.start_step(reserve, name="reserve")
            group.start_step(charge, name="charge")
    error = info.value
    assert isinstance(error, SagaError)
    assert isinstance(error.original, Declined)
    assert [str(e) for e in error.compensation_errors] == ["refund API down"]
    assert error.report is not None
    assert [(o.name, o.status) for o in error.report.outcomes] == [
        ("refund", Status.FAILED),
        ("release", Status.SUCCEEDED),
    ]
    assert group.compensation_report is error.report
    handled = []
    try:
        raise error
    except* Declined:
        handled.append("declined")
    except* RuntimeError:
        handled.append("compensation")
    assert handled == ["declined", "compensation"]


async def test_simultaneous_failures_compensate_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Steps failing at the same instant: one compensation run, each action once."""
    runs: list[str] = []
    events: list[Event] = []

    async def undo(label: str) -> None:
        runs.append(label)

    gate = trio.Event()

    async def step(ctx: StepContext, label: str) -> None:
        ctx.register_compensation(undo, label, name=f"undo-{label}")
        # Woken by one set(): all four resume in the same turn and raise
        # before any checkpoint could deliver the group's cancel.
        await gate.wait()
        raise Declined(label)

    with pytest.raises(Declined) as info:
        async with open_err_group(name="g", observer=events.append) as group:
            for label in "abcd":
                group.start_step(step, label, name=label)
            await trio.sleep(1)
            gate.set()
    assert sorted(runs) == ["a", "b", "c", "d"]
    assert sum(isinstance(e, GroupCompensationStarted) for e in events) == 1
    assert sum(isinstance(e, GroupCancelled) for e in events) == 1
    assert [o.status for o in group.outcomes] == [Status.FAILED] * 4
    first = group.failure
    assert info.value is first


async def test_success_discards_compensation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No failure: nothing is compensated and the scope is committed (cleared)."""
    runs: list[str] = []
    events: list[Event] = []

    async def undo() -> None:
        runs.append("undo")

    async def step(ctx: StepContext) -> int:
        ctx.register_compensation(undo)
        await trio.sleep(1)
        return 7

    async with open_err_group(name="g", observer=events.append) as group:
        group.start_step(step, name="s1")
        group.start_step(step, name="s2")
    assert runs == []
    assert not group.compensation.has_actions
    assert [o.value for o in group.outcomes] == [7, 7]
    assert group.compensation_report is None
    assert all(isinstance(e, GroupTaskFinished) for e in events)
    assert trio.current_time() == 1.0


async def test_external_cancel_compensates_then_propagates(
    autojump_clock: trio.testing.MockClock, no_task_leaks: LeakCheck
) -> None:
    """Cancelled from outside: compensation completes (shielded), Cancelled propagates."""
    undone: list[float] = []

    async def undo() -> None:
        await trio.sleep(5)
        undone.append(trio.current_time())

    async def step(ctx: StepContext) -> None:
        ctx.register_compensation(undo)
        await trio.sleep(math.inf)

    group: ErrGroup | None = None
    with no_task_leaks(), trio.move_on_after(2) as outer:
        async with open_err_group(name="g") as group:
            group.start_step(step, name="step")
            group.start_soon(sleeper, name="plain")
    assert outer.cancelled_caught
    assert undone == [7.0]
    assert group is not None
    for outcome in group.outcomes:
        assert outcome.status is Status.CANCELLED
        assert outcome.cause == CancelCause.external()
        assert outcome.finished_at == 2.0


async def test_limit_queues_tasks_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With limit=2, five 1-second tasks finish at 1, 1, 2, 2, 3; none is dropped."""
    finished: list[tuple[str, float]] = []

    async def job(label: str) -> None:
        await trio.sleep(1)
        finished.append((label, trio.current_time()))

    async with open_err_group(name="g", limit=2) as group:
        for label in "abcde":
            group.start_soon(job, label, name=label)
        await trio.testing.wait_all_tasks_blocked()
        assert group.statistics() == ErrGroupStatistics(
            running=2, waiting=3, finished=0, failed=0
        )
    assert sorted(finished, key=lambda x: (x[1], x[0])) == [
        ("a", 1.0),
        ("b", 1.0),
        ("c", 2.0),
        ("d", 2.0),
        ("e", 3.0),
    ]
    assert group.statistics() == ErrGroupStatistics(
        running=0, waiting=0, finished=5, failed=0
    )


async def test_try_start_soon(autojump_clock: trio.testing.MockClock) -> None:
    """try_start_soon refuses while limit tasks are running and accepts after."""
    async with open_err_group(name="g", limit=2) as group:
        assert group.try_start_soon(sleeper, 1.0, name="a")
        assert group.try_start_soon(sleeper, 1.0, name="b")
        assert not group.try_start_soon(sleeper, 1.0, name="c")
        await trio.sleep(1.5)
        assert group.try_start_soon(sleeper, 1.0, name="d")
    assert [o.name for o in group.outcomes] == ["a", "b", "d"]
    assert trio.current_time() == 2.5


async def test_try_start_soon_without_limit_always_starts() -> None:
    """Without a limit, try_start_soon always starts the task."""
    async with open_err_group() as group:
        assert all(group.try_start_soon(sleeper, 0) for _ in range(10))
    assert len(group.outcomes) == 10


async def test_queued_tasks_are_skipped_after_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Tasks still waiting for a slot when the group fails end SKIPPED, never run."""
    started: list[str] = []

    async def job(label: str) -> None:
        started.append(label)
        await trio.sleep(10)

    with pytest.raises(Declined):
        async with open_err_group(name="g", limit=1) as group:
            group.start_soon(fail_after, 1.0, name="first")
            for label in "xyz":
                group.start_soon(job, label, name=label)
    assert started == []
    statuses = [(o.name, o.status) for o in group.outcomes]
    assert statuses == [("first", Status.FAILED)] + [(n, Status.SKIPPED) for n in "xyz"]
    skipped = group.outcomes[1]
    assert skipped.cause is not None
    assert skipped.cause.triggered_by == "first"
    assert skipped.started_at is None


async def test_manual_cancel(autojump_clock: trio.testing.MockClock) -> None:
    """group.cancel(): tasks CANCELLED (MANUAL, external), compensation runs, normal exit."""
    undone: list[float] = []

    async def undo() -> None:
        await trio.sleep(2)
        undone.append(trio.current_time())

    async def step(ctx: StepContext) -> None:
        ctx.register_compensation(undo)
        await trio.sleep(math.inf)

    async with open_err_group(name="batch") as group:
        group.start_step(step, name="s")
        await trio.sleep(3)
        group.cancel()
        group.cancel(CancelReason.STEP_TIMEOUT)  # the first cause wins
    assert undone == [5.0]
    (outcome,) = group.outcomes
    assert outcome.status is Status.CANCELLED
    assert outcome.cause is not None
    assert (outcome.cause.reason, outcome.cause.origin) == (
        CancelReason.MANUAL,
        CancelOrigin.EXTERNAL,
    )
    assert group.cause == outcome.cause


async def test_manual_cancel_with_failing_compensation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failed rollback after a manual abort is not silent: SagaError."""

    async def broken() -> None:
        raise RuntimeError("cannot undo")

    async def step(ctx: StepContext) -> None:
        ctx.register_compensation(broken)
        await trio.sleep(math.inf)

    with pytest.raises(SagaError) as info:
        async with open_err_group(name="batch") as group:
            group.start_step(step, name="s")
            await trio.sleep(1)
            group.cancel()
    assert isinstance(info.value.original, OutcomeError)
    assert (
        str(info.value.original)
        == "'batch' cancelled: manual (external) in scope 'batch': group 'batch' cancelled"
    )


async def test_body_failure_is_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An exception in the async-with body cancels tasks, compensates and is raised as itself."""
    undone: list[str] = []

    async def undo() -> None:
        undone.append("undo")

    async def step(ctx: StepContext) -> None:
        ctx.register_compensation(undo)
        await trio.sleep(math.inf)

    with pytest.raises(KeyError, match="missing"):
        async with open_err_group(name="g") as group:
            group.start_step(step, name="s")
            await trio.sleep(1)
            raise KeyError("missing")
    assert undone == ["undo"]
    body = group.outcomes[-1]
    assert (body.name, body.status) == ("<body>", Status.FAILED)
    assert group.outcomes[0].cause is not None
    assert group.outcomes[0].cause.triggered_by == "<body>"


async def test_failure_racing_with_cancel_inside_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A step whose cleanup fails while being cancelled is FAILED; the first failure still wins."""

    async def cleanup_fails() -> None:
        try:
            await trio.sleep(math.inf)
        except trio.Cancelled:
            raise OSError("cleanup failed") from None

    async def step_with_nursery() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cleanup_fails)
            nursery.start_soon(sleeper)

    with pytest.raises(Declined):
        async with open_err_group(name="g") as group:
            group.start_soon(step_with_nursery, name="inner")
            group.start_soon(fail_after, 1.0, name="first")
    inner = group.outcomes[0]
    assert inner.status is Status.FAILED
    assert isinstance(inner.error, ExceptionGroup)
    assert group.statistics().failed == 2


async def test_started_after_cancel_is_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task started once the group is cancelled never runs its function."""
    ran: list[str] = []

    async def job() -> None:
        ran.append("job")

    async with open_err_group(name="g") as group:
        group.cancel()
        group.start_soon(job, name="late")
    assert ran == []
    assert group.outcomes[0].status is Status.SKIPPED


async def test_step_context_and_absorption(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Steps get a child context; their actions join the group in completion order."""
    seen: list[str] = []
    order: list[str] = []

    async def undo(label: str) -> None:
        order.append(label)

    async def step(ctx: StepContext, label: str, seconds: float) -> None:
        seen.append(ctx.path)
        ctx.register_compensation(undo, f"{label}1")
        ctx.register_compensation(undo, f"{label}2")
        await trio.sleep(seconds)

    with pytest.raises(Declined):
        async with open_err_group(name="order") as group:
            group.start_step(step, "a", 1.0, name="a")
            group.start_step(step, "b", 2.0, name="b")
            group.start_step(step, "c", 10.0, name="c")
            group.start_soon(fail_after, 3.0)
    assert sorted(seen) == ["order/a", "order/b", "order/c"]
    assert order == ["c2", "c1", "b2", "b1", "a2", "a1"]


async def test_validation() -> None:
    """Bad arguments fail fast, naming the argument and value."""
    with pytest.raises(ValueError, match="limit must be an int >= 1, got 0"):
        async with open_err_group(limit=0):
            pass  # pragma: no cover
    with pytest.raises(
        ValueError, match="name must be non-empty and contain no '/', got 'a/b'"
    ):
        async with open_err_group(name="a/b"):
            pass  # pragma: no cover
    with pytest.raises(
        ValueError, match="compensation_timeout must be > 0 seconds, got -1"
    ):
        async with open_err_group(compensation_timeout=-1):
            pass  # pragma: no cover
    with pytest.raises(TypeError, match="compensation must be a CompensationPolicy"):
        async with open_err_group(compensation="parallel"):  # type: ignore[arg-type]
            pass  # pragma: no cover

    def sync_job() -> None:
        pass

    async with open_err_group() as group:
        with pytest.raises(
            TypeError, match="fn must be an async function, got the sync callable"
        ):
            group.start_soon(sync_job)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="name must be non-empty"):
            group.start_step(sleeper, name="a/b")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="reason must be a CancelReason"):
            group.cancel("manual")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="error group 'group' is not running"):
        group.start_soon(sleeper)
    assert group.outcomes == ()


async def test_parallel_compensation_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """compensation=PARALLEL undoes every step at once."""
    from trio_sagas import CompensationPolicy

    async def undo() -> None:
        await trio.sleep(4)

    async def step(ctx: StepContext) -> None:
        ctx.register_compensation(undo)

    with pytest.raises(Declined):
        async with open_err_group(compensation=CompensationPolicy.PARALLEL) as group:
            for index in range(3):
                group.start_step(step, name=f"s{index}")
            group.start_soon(fail_after, 1.0)
    assert trio.current_time() == 5.0


# -- Hypothesis: the invariants under random timings ----------------------------

_task = st.tuples(
    st.integers(1, 20),  # duration in ticks
    st.booleans(),  # fails at the end of its duration
    st.integers(0, 20),  # compensation duration in ticks
)


@given(
    tasks=st.lists(_task, min_size=1, max_size=8),
    limit=st.one_of(st.none(), st.integers(1, 4)),
)
def test_invariants_property(
    tasks: list[tuple[int, bool, int]], limit: int | None
) -> None:
    """For random durations/failures: peers stop at the first failure's instant,
    compensation starts only after every task ended and runs each action once,
    the raised error is the first failure, and no task outlives the block."""
    from .helpers import no_task_leaks as _no_task_leaks

    undo_runs: list[int] = []
    events: list[Event] = []
    result: dict[str, Any] = {}

    async def undo(index: int, ticks: int) -> None:
        await trio.sleep(ticks)
        undo_runs.append(index)

    async def step(
        ctx: StepContext, index: int, ticks: int, fails: bool, undo_ticks: int
    ) -> None:
        ctx.register_compensation(undo, index, undo_ticks)
        await trio.sleep(ticks)
        if fails:
            raise Declined(str(index))

    async def main() -> None:
        with _no_task_leaks():
            try:
                async with open_err_group(
                    name="p", limit=limit, observer=events.append
                ) as group:
                    for index, (ticks, fails, undo_ticks) in enumerate(tasks):
                        group.start_step(
                            step, index, ticks, fails, undo_ticks, name=f"t{index}"
                        )
            except Declined as error:
                result["raised"] = error
        result["group"] = group

    run_virtual(main)
    group: ErrGroup = result["group"]
    outcomes = group.outcomes
    failed = [o for o in outcomes if o.status is Status.FAILED]
    if not failed:
        assert "raised" not in result
        assert undo_runs == []
        assert all(o.ok for o in outcomes)
        return
    first_failure_at = min(o.finished_at for o in failed if o.finished_at is not None)
    assert result["raised"] is group.failure
    assert any(
        o.error is result["raised"] and o.finished_at == first_failure_at
        for o in failed
    )
    for o in outcomes:
        assert o.finished_at is not None
        assert o.finished_at <= first_failure_at
        if o.status in (Status.CANCELLED, Status.SKIPPED):
            assert o.finished_at == first_failure_at
            assert o.cause is not None
            assert o.cause.reason is CancelReason.STEP_FAILED
    started = [o for o in outcomes if o.started_at is not None]
    assert sorted(undo_runs) == sorted(int(o.name[1:]) for o in started)
    comp_start = next(e for e in events if isinstance(e, GroupCompensationStarted))
    last_task_end = max(e.at for e in events if isinstance(e, GroupTaskFinished))
    assert comp_start.at >= last_task_end
    assert sum(isinstance(e, GroupCompensationCompleted) for e in events) == 1


async def test_cancelling_the_group_node_is_the_groups_own_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ctx.cancellation.cancel() from a step compensates and reports the node's cause."""
    undone: list[str] = []

    async def undo() -> None:
        undone.append("undo")

    async def reserve(ctx: StepContext) -> None:
        ctx.register_compensation(undo)
        await trio.sleep(math.inf)

    async def aborter(ctx: StepContext) -> None:
        await trio.sleep(1)
        assert ctx.cancellation is not None
        ctx.cancellation.cancel(CancelReason.SCOPE_CANCELLED, triggered_by="aborter")
        await trio.sleep(math.inf)

    async with open_err_group(name="g") as group:
        group.start_step(reserve, name="reserve")
        group.start_step(aborter, name="aborter")
    assert undone == ["undo"]
    assert group.cause == CancelCause.of(
        CancelReason.SCOPE_CANCELLED, scope="g", triggered_by="aborter"
    )
    for outcome in group.outcomes:
        assert outcome.status is Status.CANCELLED
        assert outcome.cause == group.cause


async def test_outside_cancel_propagates_a_plain_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An outside cancel leaves the block as trio.Cancelled itself, not a group of them."""
    seen: list[type[BaseException]] = []
    with trio.move_on_after(1):
        try:
            async with open_err_group(name="g") as group:
                group.start_soon(sleeper, name="a")
                group.start_soon(sleeper, name="b")
        except trio.Cancelled as cancelled:
            seen.append(type(cancelled))
            raise
    assert seen == [trio.Cancelled]


async def test_a_later_failure_never_replaces_the_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A second failure, in cleanup after the cancel, is recorded but the first is raised."""

    async def first() -> None:
        await trio.sleep(1)
        raise Declined("first")

    async def second() -> None:
        try:
            await trio.sleep(math.inf)
        finally:
            # Fails while unwinding from the group's cancel, one turn later.
            raise Declined("second")

    with trio.fail_after(10), pytest.raises(Declined, match=r"^first$") as info:
        async with open_err_group(name="g") as group:
            group.start_soon(second, name="second")
            group.start_soon(first, name="first")
    assert group.failure is info.value
    by_name = {o.name: o for o in group.outcomes}
    assert by_name["second"].status is Status.FAILED
    assert str(by_name["second"].error) == "second"
    assert group.cause is not None
    assert group.cause.triggered_by == "first"
    assert group.cause.message == "Declined: first"


async def test_success_leaves_no_compensation_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After a success the undo actions are committed: none runs, even later."""
    undone: list[str] = []

    async def undo(label: str) -> None:
        undone.append(label)

    async def step(ctx: StepContext, label: str) -> None:
        ctx.register_compensation(undo, label)
        await trio.sleep(1)

    with trio.fail_after(10):
        async with open_err_group(name="g") as group:
            group.start_step(step, "a", name="a")
        # A later run of the group's scope finds nothing to undo.
        report = await group.compensation.run()
    assert (len(group.compensation), report.outcomes, undone) == (0, (), [])


async def test_outside_cancel_compensates_and_keeps_trio_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Outside cancel: every undo runs in full after it, the cause keeps trio's reason."""
    undone: list[tuple[str, float]] = []

    async def undo(label: str) -> None:
        await trio.sleep(3)
        undone.append((label, trio.current_time()))

    async def step(ctx: StepContext, label: str) -> None:
        ctx.register_compensation(undo, label)
        await trio.sleep(math.inf)

    with trio.fail_after(30), trio.CancelScope() as outer:
        async with open_err_group(name="g") as group:
            group.start_step(step, "a", name="a")
            group.start_step(step, "b", name="b")
            await trio.sleep(2)
            outer.cancel(reason="shutting down")
    assert outer.cancelled_caught
    # One after the other (reverse absorption order, which trio's scheduler
    # may pick either way for tasks cancelled in the same turn).
    assert [at for _, at in undone] == [5.0, 8.0]
    assert sorted(label for label, _ in undone) == ["a", "b"]
    assert group.compensation_report is not None
    assert group.compensation_report.ok
    for outcome in group.outcomes:
        assert outcome.status is Status.CANCELLED
        assert outcome.cause == CancelCause.external("shutting down")


async def test_err_group_has_no_public_constructor() -> None:
    """ErrGroup(...) is refused: a group exists only inside its async with."""
    with pytest.raises(TypeError, match="ErrGroup has no public constructor"):
        ErrGroup()  # type: ignore[call-arg]


async def test_manager_is_entered_once(autojump_clock: trio.testing.MockClock) -> None:
    """Entering the same open_err_group() twice is a RuntimeError."""
    manager = open_err_group(name="once")
    async with manager as group:
        group.start_soon(sleeper, 1.0)
    with pytest.raises(RuntimeError, match="already entered"):
        async with manager:
            pass  # pragma: no cover


async def test_bad_arguments_fail_at_the_call_before_entry() -> None:
    """open_err_group checks its arguments when called, not when entered."""
    with pytest.raises(ValueError, match="limit must be an int >= 1, got 0"):
        open_err_group(limit=0)


async def test_observer_sequence_and_no_events_without_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A sequence of observers each get every event; events match the outcomes."""
    first: list[Event] = []
    second: list[Event] = []
    async with open_err_group(name="g", observer=[first.append, second.append]) as g:
        g.start_soon(sleeper, 1.0, name="s")
    assert first == second
    (event,) = first
    assert isinstance(event, GroupTaskFinished)
    assert event.outcome == g.outcomes[0]
