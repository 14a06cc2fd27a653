"""fan_in and open_merge lose nothing: unhandled messages, outside cancel, commits."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import trio
import trio.testing

import trio_sagas
from trio_sagas import Status, StepContext, fan_in


def buffered(*items: object) -> trio.MemoryReceiveChannel[object]:
    """A closed channel holding *items* in its buffer."""
    send, receive = trio.open_memory_channel[object](len(items))
    for item in items:
        send.send_nowait(item)
    send.close()
    return receive


async def undo(item: object) -> None:
    """An undo action (the tests look at names and counts only)."""


async def test_a_failure_reports_every_buffered_message_it_did_not_handle(
    autojump_clock: trio.abc.Clock,
) -> None:
    """10 sent, 2 handled, 1 failed: the failed one and the other 7 are reported."""

    async def handler(item: object, ctx: StepContext) -> None:
        await trio.sleep(1)
        if item == 2:
            raise ValueError("bad message 2")

    with trio.fail_after(60):
        outcome = await fan_in(StepContext("ingest"), [buffered(*range(10))], handler)
    assert outcome.status is Status.FAILED
    assert outcome.attributes["handled"] == 2
    assert outcome.attributes["unhandled"] == tuple((0, k) for k in range(2, 10))
    assert outcome.attributes["committed"] == 0
    assert trio.current_time() == 3.0


async def test_a_timeout_reports_the_interrupted_and_the_buffered_messages(
    autojump_clock: trio.abc.Clock,
) -> None:
    """TIMED_OUT: the message in hand and those still buffered are in ``unhandled``."""

    async def handler(item: object, ctx: StepContext) -> None:
        ctx.register_compensation(undo, item, name=f"undo-{item}")
        await trio.sleep(1)

    context = StepContext("ingest")
    with trio.fail_after(60):
        outcome = await fan_in(
            context, [buffered("a0", "a1", "a2"), buffered("b0")], handler, timeout=1.5
        )
    assert outcome.status is Status.TIMED_OUT
    assert outcome.attributes["handled_per_source"] == (1, 1)
    assert outcome.attributes["interrupted"] == 1
    assert outcome.attributes["unhandled"] == ((0, "a1"), (0, "a2"))
    # a0 and b0 ended at the same instant, in the scheduler's order.
    assert sorted(context.compensation.names[:2]) == ["undo-a0", "undo-b0"]
    assert context.compensation.names[2] == "undo-a1"
    assert trio.current_time() == 1.5


async def test_a_message_waiting_for_a_slot_is_reported(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With ``limit``, a message held while waiting for a slot is not lost."""

    async def handler(item: object, ctx: StepContext) -> None:
        await trio.sleep(1)
        raise ValueError(item)  # whichever drain got the slot first

    with trio.fail_after(60):
        outcome = await fan_in(
            StepContext("ingest"),
            [buffered("a0"), buffered("b0", "b1"), buffered("c0")],
            handler,
            limit=1,
        )
    assert outcome.status is Status.FAILED
    assert outcome.attributes["handled"] == 0
    assert outcome.attributes["unhandled"] == (
        (0, "a0"),
        (1, "b0"),
        (1, "b1"),
        (2, "c0"),
    )


@pytest.mark.parametrize("timeout", [None, 10.0])
async def test_outside_cancel_is_a_bare_cancelled_and_leaves_the_buffer(
    autojump_clock: trio.abc.Clock, timeout: float | None
) -> None:
    """An outer cancel raises plain Cancelled; what is buffered stays for a kept clone."""
    send, receive = trio.open_memory_channel[int](10)
    for k in range(5):
        send.send_nowait(k)
    kept = receive.clone()
    context = StepContext("ingest")
    caught: list[BaseException] = []

    async def handler(item: object, ctx: StepContext) -> None:
        ctx.register_compensation(undo, item, name=f"undo-{item}")
        await trio.sleep(1)

    with trio.fail_after(60), trio.move_on_after(1.5):
        try:
            await fan_in(context, [receive, buffered("x")], handler, timeout=timeout)
        except trio.Cancelled as exc:  # not a group: this clause sees it
            caught.append(exc)
            raise
    assert len(caught) == 1
    assert trio.current_time() == 1.5
    names = context.compensation.names
    assert sorted(names[:2]) == ["undo-0", "undo-x"]  # both ended at 1.0
    assert names[2] == "undo-1"  # interrupted at 1.5
    assert [kept.receive_nowait() for _ in range(3)] == [2, 3, 4]


async def test_commit_every_discards_handled_undo_actions_at_each_checkpoint() -> None:
    """Checkpoints commit what was handled; a failure rolls back only what came after."""

    async def handler(item: object, ctx: StepContext) -> None:
        ctx.register_compensation(undo, item, name=f"undo-{item}")
        await trio.lowlevel.checkpoint()
        if item == 9:
            raise ValueError(item)

    context = StepContext("stream")
    outcome = await fan_in(context, [buffered(*range(12))], handler, commit_every=4)
    assert outcome.status is Status.FAILED
    assert outcome.attributes["committed"] == 8
    assert outcome.attributes["handled"] == 9
    assert outcome.attributes["compensations"] == 2
    assert outcome.attributes["unhandled"] == ((0, 9), (0, 10), (0, 11))
    assert context.compensation.names == ("undo-8", "undo-9")

    success = await fan_in(context, [buffered(*range(6))], handler, commit_every=4)
    assert success.ok
    assert success.attributes["committed"] == 6
    assert context.compensation.names == ("undo-8", "undo-9")


def test_commit_every_keeps_memory_flat_over_200000_messages() -> None:
    """An endless stream with checkpoints: memory at 200,000 messages ~ at 20,000."""
    samples: dict[int, int] = {}
    total = 200_000
    # Halfway between two checkpoints both times, so the window holds as much.
    early, late = 20_500, total - 500

    async def handler(item: int, ctx: StepContext) -> None:
        ctx.register_compensation(undo, item)
        if item in (early, late):
            gc.collect()
            samples[item] = tracemalloc.get_traced_memory()[0]

    async def main() -> None:
        send, receive = trio.open_memory_channel[int](64)

        async def produce() -> None:
            async with send:
                for k in range(total):
                    try:
                        send.send_nowait(k)
                    except trio.WouldBlock:
                        await send.send(k)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            outcome = await fan_in(
                StepContext("stream"), [receive], handler, commit_every=1000
            )
        assert outcome.value == total
        assert outcome.attributes["committed"] == total

    tracemalloc.start()
    try:
        trio.run(main)
    finally:
        tracemalloc.stop()
    # Without commit_every the undo actions alone grow by ~150 bytes per
    # message (27 MB here); with it, the difference is noise.
    assert samples[late] - samples[early] < 64 * 1024


async def test_merge_outside_cancel_is_bare_and_reports_the_buffer(
    autojump_clock: trio.abc.Clock,
) -> None:
    """open_merge under an outer cancel: plain Cancelled, leftovers in ``undelivered``."""
    caught: list[BaseException] = []
    received: list[tuple[int, object]] = []
    with trio.fail_after(60), trio.move_on_after(1):
        try:
            async with trio_sagas.open_merge(
                buffered(1, 2, 3), buffered("x")
            ) as merged:
                received.append(await merged.receive())
                await trio.sleep_forever()
        except trio.Cancelled as exc:  # not a group: this clause sees it
            caught.append(exc)
            raise
    assert len(caught) == 1
    assert trio.current_time() == 1.0
    # Everything not delivered is reported, each source's items in order.
    everything = [(0, 1), (0, 2), (0, 3), (1, "x")]
    assert sorted(received + list(merged.undelivered), key=str) == sorted(
        everything, key=str
    )
    assert [item for source, item in merged.undelivered if source == 0] == [
        item for source, item in everything if source == 0 and (0, item) not in received
    ]


async def test_merge_early_exit_reports_what_a_memory_source_still_buffers() -> None:
    """Leaving the block early takes the buffered items off and reports them."""
    async with trio_sagas.open_merge(buffered(1, 2, 3, 4)) as merged:
        assert await merged.receive() == (0, 1)
    assert merged.undelivered == ((0, 2), (0, 3), (0, 4))
    assert merged.statistics().undelivered == 3


async def test_outside_cancel_racing_a_failure_still_leaves_the_buffer(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A handler failing while an outer cancel stops it: nothing is taken off unreported."""
    send, receive = trio.open_memory_channel[int](10)
    for k in range(4):
        send.send_nowait(k)
    kept = receive.clone()

    async def handler(item: object, ctx: StepContext) -> None:
        try:
            await trio.sleep(1)
        except trio.Cancelled:
            if item == 0:  # the other handler lets the Cancelled through
                raise ValueError("cleanup failed while cancelled") from None
            raise

    caught: list[BaseException] = []
    with trio.fail_after(60), trio.move_on_after(0.5):
        try:
            await fan_in(StepContext("ingest"), [receive, buffered("x")], handler)
        except trio.Cancelled as exc:
            caught.append(exc)
            raise
    assert len(caught) == 1
    # The failure set a cause, but the call ended in the outer cancel: the
    # messages still buffered were left in the channel for the kept clone.
    assert [kept.receive_nowait() for _ in range(3)] == [1, 2, 3]
    kept.close()  # fan_in closed its own handle: this was the last one
    with pytest.raises(trio.BrokenResourceError):
        send.send_nowait(9)
