"""fan_in: per-message contexts and undo, first failure stops all, ownership."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_sagas
from trio_sagas import (
    CancelOrigin,
    CancelReason,
    Outcome,
    Status,
    StepContext,
    fan_in,
)

from .helpers import LeakCheck  # the conftest fixture's type


def prefilled(*sizes: int) -> list[trio.MemoryReceiveChannel[tuple[int, int]]]:
    """One closed, pre-filled channel per size; items are (source, k)."""
    receivers = []
    for source, size in enumerate(sizes):
        send, receive = trio.open_memory_channel[tuple[int, int]](math.inf)
        for k in range(size):
            send.send_nowait((source, k))
        send.close()
        receivers.append(receive)
    return receivers


async def nothing() -> None:
    """An undo action that does nothing (the tests look at names only)."""


async def test_success_handles_every_item_once_and_commits(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """Every item is handled exactly once; the fan-in's undo actions are discarded."""
    context = StepContext("ingest")
    context.register_compensation(nothing, name="caller-before")
    seen: list[tuple[int, int]] = []

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        await trio.sleep(1)
        seen.append(item)
        ctx.register_compensation(nothing, name=f"undo-{item}")

    with no_task_leaks() as tracker:
        outcome = await fan_in(context, prefilled(3, 0, 5, 1), handler)
    assert tracker.spawned == 4
    assert outcome.status is Status.SUCCEEDED
    assert outcome.value == 9
    assert outcome.unwrap() == 9
    assert sorted(seen) == sorted(
        (s, k) for s, n in enumerate((3, 0, 5, 1)) for k in range(n)
    )
    assert (outcome.started_at, outcome.finished_at) == (0.0, 5.0)
    assert trio.current_time() == 5.0
    assert outcome.attributes["handled_per_source"] == (3, 0, 5, 1)
    assert outcome.attributes["compensations"] == 9
    assert outcome.attributes["interrupted"] == 0
    # Only the caller's own action is left.
    assert context.compensation.names == ("caller-before",)


async def test_no_receivers_succeeds_at_once(autojump_clock: trio.abc.Clock) -> None:
    """An empty receiver list is a success with value 0 at time 0."""

    async def handler(item: object, ctx: StepContext) -> None:
        raise AssertionError("never called")  # pragma: no cover

    outcome = await fan_in(StepContext("empty"), [], handler, timeout=5)
    assert outcome == Outcome(
        "empty",
        Status.SUCCEEDED,
        value=0,
        started_at=0.0,
        finished_at=0.0,
        attributes=outcome.attributes,
    )
    assert outcome.attributes["handled_per_source"] == ()


async def test_child_contexts_are_named_by_source_and_sequence() -> None:
    """Each message gets a fresh child context "<source>.<seq>" with the parent's deps."""
    context = StepContext("ingest", deps={"db": "fake"})
    names: list[tuple[str, str, object, bool]] = []

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        names.append(
            (ctx.name, ctx.path, ctx.deps, ctx.compensation is context.compensation)
        )

    await fan_in(context, prefilled(2, 1), handler)
    assert sorted(names) == [
        ("0.1", "ingest/0.1", {"db": "fake"}, False),
        ("0.2", "ingest/0.2", {"db": "fake"}, False),
        ("1.1", "ingest/1.1", {"db": "fake"}, False),
    ]


async def test_messages_of_one_channel_are_handled_in_order_one_at_a_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Per channel: strictly sequential and in order; channels run concurrently."""
    running: dict[int, int] = {0: 0, 1: 0}
    order: dict[int, list[int]] = {0: [], 1: []}

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        source, k = item
        running[source] += 1
        assert running[source] == 1
        await trio.sleep(1)
        order[source].append(k)
        running[source] -= 1

    outcome = await fan_in(StepContext("ordered"), prefilled(4, 4), handler)
    assert outcome.ok
    assert order == {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}
    assert trio.current_time() == 4.0


async def test_first_failure_stops_every_source_at_once(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """A poison message cancels peers in the same instant, with a readable reason."""
    context = StepContext("ingest")
    slow_send, slow_receive = trio.open_memory_channel[tuple[int, int]](0)
    peer_reasons: list[str | None] = []
    refused: list[int] = []
    poison = ValueError("poison")

    async def endless_producer() -> None:
        k = 0
        try:
            while True:
                await slow_send.send((1, k))
                k += 1
        except trio.BrokenResourceError:
            refused.append(k)

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        source, k = item
        ctx.register_compensation(nothing, name=f"undo-{source}-{k}")
        if source == 0 and k == 2:
            await trio.sleep(0.5)
            raise poison
        try:
            await trio.sleep(10 if source == 1 else 1)
        except trio.Cancelled as cancelled:
            peer_reasons.append(cancelled.reason)
            raise

    (fast,) = prefilled(5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(endless_producer)
        with no_task_leaks():
            outcome = await fan_in(context, [fast, slow_receive], handler)
    # The endless producer was told at once that nobody listens any more;
    # the item it was blocked offering was taken off and reported.
    assert refused == [2]
    assert outcome.attributes["unhandled"] == (
        (0, (0, 2)),  # the poison
        (0, (0, 3)),  # still buffered
        (0, (0, 4)),
        (1, (1, 0)),  # interrupted
        (1, (1, 1)),  # its sender was blocked offering it
    )
    assert outcome.status is Status.FAILED
    assert outcome.error is poison
    assert outcome.cause is None
    assert outcome.finished_at == trio.current_time() == 2.5
    assert outcome.attributes["failed_at"] == "0.3"
    assert outcome.attributes["handled_per_source"] == (2, 0)
    assert outcome.attributes["interrupted"] == 1
    assert peer_reasons == [
        "step_failed (internal), triggered by '0.3': "
        "fan-in message failed: ValueError: poison"
    ]
    # The failing and interrupted messages' undo actions stay with the caller.
    # Ordered by when each handler ended: 0.1 (t=1), 0.2 (t=2), the poison
    # 0.3 (t=2.5), then 1.1, interrupted by it.
    assert context.compensation.names == (
        "undo-0-0",
        "undo-0-1",
        "undo-0-2",
        "undo-1-0",
    )


async def test_compensations_run_in_reverse_registration_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    """After a failure the caller's run undoes later messages first, caller's own last."""
    context = StepContext("ingest")
    undone: list[str] = []

    async def undo(label: str) -> None:
        undone.append(label)

    context.register_compensation(undo, "caller-before")

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        source, k = item
        ctx.register_compensation(undo, f"{source}.{k}:a")
        await trio.sleep(1 + source * 0.25)
        ctx.register_compensation(undo, f"{source}.{k}:b")
        if item == (1, 1):
            raise RuntimeError("bad payload")

    outcome = await fan_in(context, prefilled(3, 3), handler)
    assert outcome.status is Status.FAILED
    assert trio.current_time() == 2.5
    report = await context.compensation.run()
    assert report.ok
    # Handler end order: 0.0 (t=1), 1.0 (t=1.25), 0.1 (t=2), 1.1 fails (t=2.5)
    # and interrupts 0.2, which had registered only its first action.
    assert undone == [
        "0.2:a",
        "1.1:b",
        "1.1:a",
        "0.1:b",
        "0.1:a",
        "1.0:b",
        "1.0:a",
        "0.0:b",
        "0.0:a",
        "caller-before",
    ]


async def test_receive_error_is_a_failure_naming_the_receiver(
    autojump_clock: trio.abc.Clock,
) -> None:
    """An error raised by a channel's receive fails the fan-in like a handler error."""

    class Broken(trio.abc.ReceiveChannel[int]):
        closed = False

        async def receive(self) -> int:
            await trio.sleep(1)
            raise OSError("connection reset")

        async def aclose(self) -> None:
            self.closed = True
            await trio.lowlevel.checkpoint()

    broken = Broken()

    async def handler(item: object, ctx: StepContext) -> None:
        await trio.sleep_forever()

    (ok,) = prefilled(1)
    outcome = await fan_in(StepContext("ingest"), [ok, broken], handler)
    assert outcome.status is Status.FAILED
    assert isinstance(outcome.error, OSError)
    assert outcome.attributes["failed_at"] == "receivers[1]"
    assert outcome.attributes["interrupted"] == 1
    assert outcome.finished_at == 1.0
    assert broken.closed


async def test_errors_raised_while_stopping_are_kept_as_later_errors() -> None:
    """A peer that raises while being cancelled does not replace the first error."""
    first, second = KeyError("first"), OSError("during cancel")

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        if item[0] == 0:
            await trio.lowlevel.checkpoint()
            raise first
        try:
            await trio.sleep_forever()
        finally:
            raise second

    outcome = await fan_in(StepContext("ingest"), prefilled(1, 1), handler)
    assert outcome.error is first
    assert outcome.attributes["later_errors"] == (("1.1", second),)


async def test_timeout_gives_timed_out_and_keeps_compensations(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """timeout on the trio clock -> TIMED_OUT, STEP_TIMEOUT (internal), undo kept."""
    context = StepContext("ingest")
    reasons: list[str | None] = []

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        ctx.register_compensation(nothing, name=f"undo-{item}")
        try:
            await trio.sleep(2)
        except trio.Cancelled as cancelled:
            reasons.append(cancelled.reason)
            raise

    with no_task_leaks():
        outcome = await fan_in(context, prefilled(3, 3), handler, timeout=5)
    assert outcome.status is Status.TIMED_OUT
    assert outcome.error is None
    assert outcome.cause is not None
    assert outcome.cause.reason is CancelReason.STEP_TIMEOUT
    assert outcome.cause.origin is CancelOrigin.INTERNAL
    assert outcome.cause.triggered_by == "ingest"
    assert outcome.finished_at == trio.current_time() == 5.0
    assert outcome.attributes["handled"] == 4
    assert outcome.attributes["interrupted"] == 2
    assert len(context.compensation) == 6
    assert (
        reasons
        == [
            "step_timeout (internal), triggered by 'ingest': fan-in did not finish within 5.0 s"
        ]
        * 2
    )
    with pytest.raises(trio_sagas.OutcomeError):
        outcome.unwrap()


async def test_timeout_not_reached_is_a_plain_success(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """When every channel ends before the deadline, the timer is cancelled quietly."""

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        await trio.sleep(1)

    with no_task_leaks():
        outcome = await fan_in(StepContext("ingest"), prefilled(2), handler, timeout=10)
    assert outcome.ok
    assert trio.current_time() == 2.0


async def test_zero_timeout_stops_before_any_handler_finishes(
    autojump_clock: trio.abc.Clock,
) -> None:
    """timeout=0 times out at once."""

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        await trio.sleep(1)

    outcome = await fan_in(StepContext("ingest"), prefilled(2), handler, timeout=0)
    assert outcome.status is Status.TIMED_OUT
    assert trio.current_time() == 0.0
    assert outcome.attributes["handled"] == 0


async def test_limit_bounds_concurrent_handlers(autojump_clock: trio.abc.Clock) -> None:
    """limit=2 over 4 channels: never more than 2 handlers at once."""
    running = 0
    peak = 0

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    outcome = await fan_in(
        StepContext("ingest"), prefilled(2, 2, 2, 2), handler, limit=2
    )
    assert outcome.value == 8
    assert peak == 2
    assert trio.current_time() == 4.0


async def test_limit_above_channel_count_changes_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With limit >= channels, one handler per channel still runs at a time."""
    peak = running = 0

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    outcome = await fan_in(StepContext("ingest"), prefilled(3, 3), handler, limit=10)
    assert outcome.value == 6
    assert peak == 2
    assert trio.current_time() == 3.0


async def test_clones_drain_one_channel_with_more_parallelism(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Passing clones of one channel is how to handle it with several tasks."""
    (receive,) = prefilled(6)
    clones = [receive.clone() for _ in range(3)]
    receive.close()

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        await trio.sleep(1)

    outcome = await fan_in(StepContext("ingest"), clones, handler)
    assert outcome.value == 6
    assert trio.current_time() == 2.0


async def test_external_cancellation_propagates_after_keeping_compensations(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """Outer cancel: raised (not returned), undo actions moved to the caller, channels closed."""
    context = StepContext("ingest")
    send, receive = trio.open_memory_channel[tuple[int, int]](10)
    for k in range(3):
        send.send_nowait((0, k))
    returned: list[Outcome[int]] = []

    async def handler(item: tuple[int, int], ctx: StepContext) -> None:
        ctx.register_compensation(nothing, name=f"undo-{item[1]}")
        await trio.sleep(1)

    with no_task_leaks(), trio.move_on_after(1.5) as outer:
        returned.append(await fan_in(context, [receive], handler))
    assert outer.cancelled_caught
    assert returned == []
    assert trio.current_time() == 1.5
    assert context.compensation.names == ("undo-0", "undo-1")
    with pytest.raises(trio.BrokenResourceError):
        send.send_nowait((0, 9))


async def test_receivers_are_closed_on_success_and_failure() -> None:
    """fan_in owns the receivers: after it returns, each handle is closed."""
    for fail in (False, True):
        receivers = prefilled(2, 2)

        async def handler(
            item: tuple[int, int], ctx: StepContext, fail: bool = fail
        ) -> None:
            await trio.lowlevel.checkpoint()
            if fail:
                raise ValueError(item)

        await fan_in(StepContext("ingest"), receivers, handler)
        for receive in receivers:
            with pytest.raises(trio.ClosedResourceError):
                receive.receive_nowait()


async def test_already_cancelled_caller_still_closes_receivers() -> None:
    """Cancelled before the first receive: Cancelled raised, channels closed."""
    send, receive = trio.open_memory_channel[int](1)

    async def handler(item: int, ctx: StepContext) -> None:
        raise AssertionError("never called")  # pragma: no cover

    with trio.CancelScope() as scope:
        scope.cancel()
        await fan_in(StepContext("ingest"), [receive], handler)
    assert scope.cancelled_caught
    with pytest.raises(trio.BrokenResourceError):
        send.send_nowait(1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"context": "ingest"}, TypeError, "context must be a StepContext"),
        ({"receivers": None}, TypeError, "receivers must be an iterable"),
        ({"receivers": "channel"}, TypeError, "receivers must be an iterable"),
        ({"context": None}, TypeError, "context must be a StepContext, got None"),
        (
            {"receivers": [1]},
            TypeError,
            r"receivers\[0\] must be a trio.abc.ReceiveChannel",
        ),
        ({"handler": print}, TypeError, "handler must be an async function"),
        ({"timeout": -1}, ValueError, "timeout must be >= 0"),
        ({"timeout": "5"}, TypeError, "timeout must be a number"),
        ({"timeout": math.nan}, ValueError, "timeout must be >= 0 seconds, got nan"),
        ({"timeout": math.inf}, ValueError, "timeout must be a finite number"),
        ({"timeout": True}, TypeError, "timeout must be a number of seconds"),
        ({"handler": None}, TypeError, "handler must be an async callable, got None"),
        ({"limit": 0}, ValueError, "limit must be an int >= 1, got 0"),
        ({"limit": -3}, ValueError, "limit must be an int >= 1, got -3"),
        ({"limit": True}, TypeError, "limit must be an int"),
        ({"limit": 1.5}, TypeError, "limit must be an int"),
        ({"limit": "3"}, TypeError, "limit must be an int >= 1, got '3'"),
        ({"commit_every": 0}, ValueError, "commit_every must be an int >= 1, got 0"),
        ({"commit_every": 2.0}, TypeError, "commit_every must be an int"),
    ],
)
async def test_bad_arguments_fail_fast(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad input raises at once, naming the argument; the channel stays open."""
    send, receive = trio.open_memory_channel[int](1)

    async def handler(item: int, ctx: StepContext) -> None:
        raise AssertionError("never called")  # pragma: no cover

    arguments: dict[str, Any] = {
        "context": StepContext("ingest"),
        "receivers": [receive],
        "handler": handler,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        await fan_in(**arguments)
    send.send_nowait(1)  # not closed: fan_in never took ownership


async def test_same_channel_twice_is_rejected() -> None:
    """Two drainers on one handle would close it under each other: ValueError."""
    (receive,) = prefilled(1)

    async def handler(item: object, ctx: StepContext) -> None:
        raise AssertionError("never called")  # pragma: no cover

    with pytest.raises(ValueError, match=r"receivers\[1\] is the same channel object"):
        await fan_in(StepContext("ingest"), [receive, receive], handler)
    with pytest.raises(TypeError, match="receivers must be an iterable"):
        await fan_in(StepContext("ingest"), receive, handler)  # type: ignore[arg-type]


# -- property -----------------------------------------------------------------

sources_strategy = st.lists(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=6),
    max_size=4,
)


@given(
    sources=sources_strategy,
    poison=st.none() | st.tuples(st.integers(0, 3), st.integers(0, 5)),
    limit=st.none() | st.integers(1, 3),
    buffer=st.sampled_from([0, 1, 3]),
    commit_every=st.none() | st.integers(1, 4),
)
def test_property_exactly_once_and_compensations_match(
    sources: Sequence[Sequence[tuple[int, int]]],
    poison: tuple[int, int] | None,
    limit: int | None,
    buffer: int,
    commit_every: int | None,
) -> None:
    """Handled + unhandled + unsent = all, each once; after a failure every undo is there once."""
    every = {(s, k) for s, items in enumerate(sources) for k in range(len(items))}
    poison_hit = poison in every

    async def main() -> None:
        context = StepContext("prop")
        context.register_compensation(nothing, name="caller")
        handled: list[tuple[int, int]] = []
        registered: list[str] = []
        rejected: list[tuple[int, int]] = []
        receivers = []

        async def producer(
            s: int,
            send: trio.MemorySendChannel[tuple[int, int]],
            items: Sequence[tuple[int, int]],
        ) -> None:
            async with send:
                for k, (send_delay, _) in enumerate(items):
                    await trio.sleep(send_delay)
                    try:
                        await send.send((s, k))
                    except trio.BrokenResourceError:
                        rejected.extend((s, j) for j in range(k, len(items)))
                        return

        async def handler(item: tuple[int, int], ctx: StepContext) -> None:
            s, k = item
            ctx.register_compensation(nothing, name=f"{s}.{k}:a")
            registered.append(f"{s}.{k}:a")
            await trio.sleep(sources[s][k][1])
            ctx.register_compensation(nothing, name=f"{s}.{k}:b")
            registered.append(f"{s}.{k}:b")
            if item == poison:
                raise ValueError(item)
            handled.append(item)

        async with trio.open_nursery() as nursery:
            for s, items in enumerate(sources):
                send, receive = trio.open_memory_channel[tuple[int, int]](buffer)
                receivers.append(receive)
                nursery.start_soon(producer, s, send, items)
            outcome = await fan_in(
                context, receivers, handler, limit=limit, commit_every=commit_every
            )

        # Nothing vanishes: every item was handled, reported or never sent.
        unhandled = outcome.attributes["unhandled"]
        assert isinstance(unhandled, tuple)
        taken = handled + [item for _, item in unhandled]
        assert sorted(taken + rejected) == sorted(every)
        assert all(source == item[0] for source, item in unhandled)
        assert len(handled) == len(set(handled))
        assert set(handled) <= every
        assert outcome.attributes["handled"] == len(handled)
        if not poison_hit:
            assert unhandled == ()
            assert outcome.attributes["committed"] == len(every)
            assert outcome.status is Status.SUCCEEDED
            assert outcome.value == len(every)
            assert set(handled) == every
            assert context.compensation.names == ("caller",)
            return
        assert outcome.status is Status.FAILED
        assert outcome.error is not None
        assert outcome.error.args == (poison,)
        assert poison not in handled
        names = context.compensation.names
        assert names[0] == "caller"
        # Checkpoints committed the first messages handled, in whole steps;
        # every other action registered for a message is there exactly once.
        committed = outcome.attributes["committed"]
        assert isinstance(committed, int)
        if commit_every is None:
            assert committed == 0
        else:
            assert committed % commit_every == 0
        gone = {f"{s}.{k}:{part}" for s, k in handled[:committed] for part in "ab"}
        assert sorted(names[1:]) == sorted(set(registered) - gone)
        for s, k in handled[committed:]:
            assert names.count(f"{s}.{k}:a") == names.count(f"{s}.{k}:b") == 1
        # A message's own actions stay in registration order.
        for name in names[1:]:
            if name.endswith(":b"):
                assert names.index(name[:-1] + "a") < names.index(name)
        # Producers were stopped: nothing handled after a rejected send.
        assert not set(rejected) & set(handled)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- open_merge -----------------------------------------------------------------


async def produce(
    send: trio.MemorySendChannel[str], items: Sequence[str], delay: float
) -> list[str]:
    """Send *items* one per *delay* seconds; return those the channel refused."""
    refused: list[str] = []
    async with send:
        for index, item in enumerate(items):
            await trio.sleep(delay)
            try:
                await send.send(item)
            except trio.BrokenResourceError:
                refused.extend(items[index:])
                break
    return refused


async def test_merge_tags_items_and_keeps_per_source_order(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """Items arrive tagged with their source index, each source in order, then EOF."""
    received: list[tuple[int, str]] = []
    times: list[float] = []
    async with trio.open_nursery() as nursery:
        receivers = []
        for tag, delay in (("a", 1.0), ("b", 1.25), ("c", 0.25)):
            send, receive = trio.open_memory_channel[str](0)
            receivers.append(receive)
            nursery.start_soon(produce, send, [f"{tag}{k}" for k in range(3)], delay)
        with no_task_leaks():
            async with trio_sagas.open_merge(*receivers) as merged:
                async for pair in merged:
                    received.append(pair)
                    times.append(trio.current_time())
                stats = merged.statistics()
    assert received == [
        (2, "c0"),
        (2, "c1"),
        (2, "c2"),
        (0, "a0"),
        (1, "b0"),
        (0, "a1"),
        (1, "b1"),
        (0, "a2"),
        (1, "b2"),
    ]
    assert times == [0.25, 0.5, 0.75, 1.0, 1.25, 2.0, 2.5, 3.0, 3.75]
    assert trio.current_time() == 3.75
    assert stats == trio_sagas.MergeStatistics(
        sources=3,
        open_sources=0,
        delivered_per_source=(3, 3, 3),
        undelivered=0,
        failed_source=None,
    )


async def test_merge_of_nothing_ends_at_once(no_task_leaks: LeakCheck) -> None:
    """open_merge() with no sources yields a channel that is already exhausted."""
    merged: trio_sagas.MergedReceiveChannel[int]
    with no_task_leaks():
        async with trio_sagas.open_merge() as merged:
            with pytest.raises(trio.EndOfChannel):
                await merged.receive()


async def test_leaving_the_block_early_stops_pumps_and_closes_sources(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """break out early: pumps cancelled, an item in hand reported, producers refused."""
    refused: list[str] = []
    received: list[tuple[int, str]] = []

    async def run(send: trio.MemorySendChannel[str]) -> None:
        refused.extend(await produce(send, [f"a{k}" for k in range(100)], 0.25))

    silent_send, silent = trio.open_memory_channel[str](0)
    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[str](0)
        nursery.start_soon(run, send)
        with no_task_leaks() as tracker:
            async with trio_sagas.open_merge(receive, silent) as merged:
                async for pair in merged:
                    received.append(pair)
                    await trio.sleep(1)  # a slow consumer: the pump waits with a1
                    break
            assert tracker.spawned == 3
            assert trio.current_time() == 1.25
    assert received == [(0, "a0")]
    # a1 was taken from source 0 but never handed over, and a2 was being
    # offered by the producer, blocked since t=0.75: both are reported, not
    # lost; the producer's next send (a3, at 1.5) is refused at once.
    assert merged.undelivered == ((0, "a1"), (0, "a2"))
    assert merged.statistics().open_sources == 0
    assert merged.statistics().delivered_per_source == (1, 0)
    assert merged.statistics().undelivered == 2
    assert refused == [f"a{k}" for k in range(3, 100)]
    assert trio.current_time() == 1.5
    with pytest.raises(trio.BrokenResourceError):
        silent_send.send_nowait("late")


async def test_a_source_that_never_ends_does_not_hang_an_early_exit(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """A silent, never-closed source does not keep the block open."""
    silent_send, silent = trio.open_memory_channel[int](0)
    (finite,) = prefilled(2)
    with no_task_leaks():
        async with trio_sagas.open_merge(silent, finite) as merged:
            got = [await merged.receive(), await merged.receive()]
    assert got == [(1, (0, 0)), (1, (0, 1))]
    with pytest.raises(trio.BrokenResourceError):
        silent_send.send_nowait(1)


async def test_closing_the_merged_channel_stops_the_pumps_not_the_block(
    autojump_clock: trio.abc.Clock,
) -> None:
    """merged.aclose() inside the block: pumps stop, receive says closed, block goes on."""
    silent_send, silent = trio.open_memory_channel[int](0)
    async with trio_sagas.open_merge(silent) as merged:
        await merged.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert merged.statistics().open_sources == 0
        with pytest.raises(trio.ClosedResourceError):
            await merged.receive()
        await trio.sleep(1)  # the block itself was not cancelled
    assert trio.current_time() == 1.0
    with pytest.raises(trio.BrokenResourceError):
        silent_send.send_nowait(1)


class FailingSource(trio.abc.ReceiveChannel[str]):
    """Yields its items one per second, then raises *error*."""

    def __init__(self, items: Sequence[str], error: Exception) -> None:
        self.items = list(items)
        self.error = error
        self.closed = False

    async def receive(self) -> str:
        await trio.sleep(1)
        if self.items:
            return self.items.pop(0)
        raise self.error

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


async def test_a_source_error_is_raised_bare_by_receive_and_out_of_the_block(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """The first source error ends the merge and propagates unwrapped, naming its source."""
    error = ConnectionError("reset")
    failing = FailingSource(["x0", "x1"], error)
    steady_send, steady = trio.open_memory_channel[str](0)
    received: list[tuple[int, str]] = []
    refused: list[list[str]] = []
    stats: list[trio_sagas.MergedReceiveChannel[str]] = []

    async def run() -> None:
        refused.append(await produce(steady_send, [f"s{k}" for k in range(10)], 0.7))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)

        async def consume() -> None:
            async with trio_sagas.open_merge(steady, failing) as merged:
                stats.append(merged)
                async for pair in merged:
                    received.append(pair)

        with no_task_leaks(), pytest.raises(ConnectionError) as caught:
            await consume()
        assert trio.current_time() == 3.0
    assert caught.value is error
    assert "raised by open_merge source 1" in (error.__notes__ or [])
    assert received == [
        (0, "s0"),
        (1, "x0"),
        (0, "s1"),
        (1, "x1"),
        (0, "s2"),
        (0, "s3"),
    ]
    assert failing.closed
    (merged,) = stats
    assert merged.statistics().failed_source == 1
    assert refused == [[f"s{k}" for k in range(4, 10)]]
    # The block closed the merged channel on its way out.
    with pytest.raises(trio.ClosedResourceError):
        await merged.receive()


async def test_a_source_error_not_yet_received_is_raised_when_the_block_ends(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Leaving the block normally does not hide a source that failed meanwhile."""
    error = OSError("disk gone")
    failing = FailingSource([], error)
    with pytest.raises(OSError, match="disk gone"):
        async with trio_sagas.open_merge(failing) as merged:
            await trio.sleep(5)
    assert merged.statistics().failed_source == 0


async def test_a_caught_source_error_is_not_raised_again() -> None:
    """A consumer that handled the source error leaves the block cleanly."""
    failing = FailingSource([], KeyError("gone"))
    async with trio_sagas.open_merge(failing) as merged:
        with pytest.raises(KeyError):
            await merged.receive()
        # Once reported, the merged channel is broken.
        with pytest.raises(trio.BrokenResourceError, match="source 0 failed earlier"):
            await merged.receive()


async def test_errors_from_the_block_body_propagate_unwrapped(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """A body exception is not wrapped in an ExceptionGroup and keeps its own context."""
    silent_send, silent = trio.open_memory_channel[int](0)

    def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            raise RuntimeError("body") from None

    async def body() -> None:
        async with trio_sagas.open_merge(silent):
            await trio.sleep(1)
            fail()

    with no_task_leaks(), pytest.raises(RuntimeError, match="body") as caught:
        await body()
    assert caught.value.__suppress_context__
    assert isinstance(caught.value.__context__, KeyError)
    with pytest.raises(trio.BrokenResourceError):
        silent_send.send_nowait(1)


async def test_external_cancellation_stops_merge_and_closes_sources(
    autojump_clock: trio.abc.Clock, no_task_leaks: LeakCheck
) -> None:
    """An outer cancel ends the block; pumps are gone and sources closed."""
    silent_send, silent = trio.open_memory_channel[int](0)
    with no_task_leaks(), trio.move_on_after(2) as outer:
        async with trio_sagas.open_merge(silent) as merged:
            await merged.receive()
    assert outer.cancelled_caught
    assert trio.current_time() == 2.0
    with pytest.raises(trio.BrokenResourceError):
        silent_send.send_nowait(1)


async def test_merge_rejects_bad_receivers() -> None:
    """Non-channels and repeated channel objects fail fast."""
    (receive,) = prefilled(1)
    with pytest.raises(
        TypeError, match=r"receivers\[1\] must be a trio.abc.ReceiveChannel"
    ):
        async with trio_sagas.open_merge(receive, "x"):  # type: ignore[arg-type]
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="same channel object"):
        async with trio_sagas.open_merge(receive, receive):
            pass  # pragma: no cover
    assert receive.receive_nowait() == (0, 0)  # untouched


async def test_merged_channel_repr_and_exports() -> None:
    """The merged channel and its statistics claim the public module."""
    merged: trio_sagas.MergedReceiveChannel[int]
    async with trio_sagas.open_merge() as merged:
        assert repr(merged) == "<trio_sagas.MergedReceiveChannel 0 source(s), 0 open>"
    assert trio_sagas.MergedReceiveChannel.__module__ == "trio_sagas"
    assert trio_sagas.MergeStatistics.__module__ == "trio_sagas"
    assert trio_sagas.fan_in.__module__ == "trio_sagas"


def test_trusted_child_matches_child() -> None:
    """The hot-path constructor builds exactly what StepContext.child builds."""
    scope = trio_sagas.CancellationScope("root")
    parent = StepContext("ingest", cancellation=scope, deps={"k": 1}, path="app/ingest")
    fast, slow = parent._trusted_child("0.1", "app/ingest/0.1"), parent.child("0.1")
    assert repr(fast) == repr(slow)
    assert type(fast) is StepContext
    assert fast.compensation is not parent.compensation
    assert (
        fast.compensation
        is not parent._trusted_child("0.2", "app/ingest/0.2").compensation
    )
    fast.register_compensation(nothing, name="undo")
    assert fast.compensation.names == ("undo",)
    assert not slow.compensation.has_actions


class CloseFails(trio.abc.ReceiveChannel[int]):
    """A channel that is empty and raises when closed."""

    async def receive(self) -> int:
        await trio.lowlevel.checkpoint()
        raise trio.EndOfChannel

    async def aclose(self) -> None:
        # Raises before its first checkpoint: fan_in and open_merge close
        # with trio.aclose_forcefully, which cancels the close at once.
        raise OSError("close failed")


async def test_an_error_closing_a_receiver_fails_the_fan_in() -> None:
    """A receiver whose aclose raises turns a would-be success into FAILED."""

    async def handler(item: object, ctx: StepContext) -> None:
        await trio.lowlevel.checkpoint()

    (ok,) = prefilled(2)
    outcome = await fan_in(StepContext("ingest"), [ok, CloseFails()], handler)
    assert outcome.status is Status.FAILED
    assert isinstance(outcome.error, OSError)
    assert outcome.attributes["failed_at"] == "receivers[1]"


async def test_an_error_closing_a_merge_source_is_raised_at_exit() -> None:
    """open_merge reports a source whose aclose raised, once the block ends."""

    async def consume() -> None:
        async with trio_sagas.open_merge(CloseFails()) as merged:
            with pytest.raises(trio.EndOfChannel):
                await merged.receive()

    with pytest.raises(OSError, match="close failed"):
        await consume()


@given(
    gaps=st.lists(st.lists(st.integers(0, 4), max_size=8), max_size=5),
    stop_after=st.none() | st.integers(0, 12),
)
def test_property_merge_keeps_order_and_loses_nothing(
    gaps: Sequence[Sequence[int]], stop_after: int | None
) -> None:
    """Per-source order kept, tags right; received + undelivered + refused/unsent = all."""

    async def main() -> None:
        received: list[tuple[int, int]] = []
        unsent: list[tuple[int, int]] = []

        async def producer(source: int, send: trio.MemorySendChannel[int]) -> None:
            async with send:
                for k, gap in enumerate(gaps[source]):
                    await trio.sleep(gap / 4)
                    try:
                        await send.send(k)
                    except trio.BrokenResourceError:
                        unsent.extend((source, j) for j in range(k, len(gaps[source])))
                        return

        async with trio.open_nursery() as nursery:
            receivers = []
            for source in range(len(gaps)):
                send, receive = trio.open_memory_channel[int](0)
                receivers.append(receive)
                nursery.start_soon(producer, source, send)
            async with trio_sagas.open_merge(*receivers) as merged:
                async for pair in merged:
                    received.append(pair)
                    if stop_after is not None and len(received) >= stop_after:
                        break
        everything = {(s, k) for s, row in enumerate(gaps) for k in range(len(row))}
        undelivered = list(merged.undelivered)
        parts = received + undelivered + unsent
        assert sorted(parts) == sorted(everything)  # each item exactly once
        for source in range(len(gaps)):
            mine = [k for s, k in received if s == source]
            assert mine == sorted(mine)
            assert mine == list(range(len(mine)))
        stats = merged.statistics()
        assert sum(stats.delivered_per_source) == len(received)
        assert stats.undelivered == len(undelivered)
        assert stats.open_sources == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
