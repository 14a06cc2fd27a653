"""fan_in against a hand-written trio fan-in; throughput with undo; memory.

Clock: every time below is CPU time of this process (``time.process_time``),
in interleaved rounds (medians), so other work on a shared machine does not
inflate it; memory is measured with :mod:`tracemalloc`.

Cases (``nox -s bench``; ``-- --quick`` for a smoke run, whose plot goes to
the git-ignored ``benchmarks/scratch/``). Rows carry stable keys and per-message
µs (``candidate_us``, ``baseline_us``, ``overhead_us``):

* ``fan_in 8x20000 trivial handler``: 8 pre-filled, closed memory channels
  of 20,000 items each, drained by :func:`trio_sagas.fan_in` versus the
  hand-written fan-in a Trio user writes (one task per channel running
  ``async for item in channel: await handler(item, None)``). Channels are
  built before each timed run, so only draining is measured. Target: ratio
  <= 1.25.
* ``vs hand-written, batched receive``: against a hand-written fan-in with
  fan_in's own receive strategy (cancel check per item, a yield every 32): what is left
  is fan_in's own per-message cost, reported in µs per message (target:
  <= 1 µs).
* ``+ 1 undo per message``: a handler that registers one compensation per
  message (the fan-in commits, so none runs), against the same fan_in with
  a trivial handler: the cost of registering and keeping one undo, in µs
  per message (target: <= 1.5 µs); and the same with ``commit_every=1000``,
  where the actions are not kept to the end.
* memory per in-flight message (tracemalloc): 2,000 channels each holding
  one message whose handler is parked, for fan_in and for the hand-written
  fan-in, divided by 2,000.
* memory of an endless stream: bytes kept per message between message
  20,000 and the last, one undo registered per message, with
  ``commit_every=1000`` (flat: about 0) and without (every undo kept).
* throughput against the number of channels (64,000 items in all, median
  of 5 on CPU time), drawn to ``docs/_static/fanin_throughput.png`` when
  matplotlib is installed (it is in the ``bench`` dependency group).
"""

from __future__ import annotations

import gc
import math
import pathlib
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _harness import compare, report

import trio_sagas

QUICK = "--quick" in sys.argv
ROOT = pathlib.Path(__file__).parent.parent
# A smoke run draws its plot into the git-ignored scratch folder, so it never
# changes a published figure.
FIGURES = ROOT / "benchmarks" / "scratch" if QUICK else ROOT / "docs" / "_static"
CHANNELS = 8
ITEMS = 20_000
ROUNDS = 3 if QUICK else 11
WARMUP = 1


def filled_sets(count: int) -> Iterator[list[trio.MemoryReceiveChannel[int]]]:
    """*count* ready sets of CHANNELS closed channels holding ITEMS ints each.

    Built eagerly, before timing starts; items are small (shared) ints.
    """
    sets = []
    for _ in range(count):
        receivers = []
        for _ in range(CHANNELS):
            send, receive = trio.open_memory_channel[int](math.inf)
            for item in range(ITEMS):
                send.send_nowait(item & 0xFF)
            send.close()
            receivers.append(receive)
        sets.append(receivers)
    return iter(sets)


async def trivial(item: int, ctx: Any) -> None:
    """The handler under test: does nothing."""


async def undo(item: int) -> None:
    """An undo action (never run: the fan-in commits)."""


async def with_undo(item: int, ctx: trio_sagas.StepContext) -> None:
    """Registers one undo action per message."""
    ctx.register_compensation(undo, item)


async def hand_written(
    receivers: list[trio.MemoryReceiveChannel[int]],
    handler: Callable[[int, Any], Any],
) -> None:
    """The baseline: one draining task per channel calling the handler."""

    async def drain(receive: trio.MemoryReceiveChannel[int]) -> None:
        async with receive:
            async for item in receive:
                await handler(item, None)

    async with trio.open_nursery() as nursery:
        for receive in receivers:
            nursery.start_soon(drain, receive)


async def hand_written_batched(
    receivers: list[trio.MemoryReceiveChannel[int]],
    handler: Callable[[int, Any], Any],
) -> None:
    """A tuned baseline: the same receive strategy fan_in uses, no contexts.

    Cancel check per item, a scheduler yield every 32 items; this isolates
    what fan_in's own per-message work (context, undo bookkeeping) costs.
    """
    checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled

    async def drain(receive: trio.MemoryReceiveChannel[int]) -> None:
        countdown = 0
        async with receive:
            while True:
                if countdown:
                    countdown -= 1
                    await checkpoint_if_cancelled()
                else:
                    countdown = 32
                    await trio.lowlevel.checkpoint()
                try:
                    item = receive.receive_nowait()
                except trio.WouldBlock:
                    item = await receive.receive()
                except trio.EndOfChannel:
                    return
                await handler(item, None)

    async with trio.open_nursery() as nursery:
        for receive in receivers:
            nursery.start_soon(drain, receive)


async def with_fan_in(
    receivers: list[trio.MemoryReceiveChannel[int]],
    handler: Callable[[int, Any], Any],
) -> None:
    """The candidate."""
    outcome = await trio_sagas.fan_in(
        trio_sagas.StepContext("bench"), receivers, handler
    )
    assert outcome.value == CHANNELS * ITEMS, outcome


async def with_fan_in_committing(
    receivers: list[trio.MemoryReceiveChannel[int]],
    handler: Callable[[int, Any], Any],
) -> None:
    """The candidate, committing every 1,000 messages (an endless stream's set-up)."""
    outcome = await trio_sagas.fan_in(
        trio_sagas.StepContext("bench"), receivers, handler, commit_every=1000
    )
    assert outcome.value == CHANNELS * ITEMS, outcome


def runner(
    fn: Callable[..., Any], handler: Callable[[int, Any], Any], sets: Iterator[Any]
) -> Callable[[], None]:
    def run() -> None:
        trio.run(fn, next(sets), handler)

    return run


async def parked(item: int, ctx: trio_sagas.StepContext | None) -> None:
    """A handler that registers one undo action (if it can) and waits."""
    if ctx is not None:
        ctx.register_compensation(undo, item)
    await trio.sleep_forever()


def memory_in_flight(n: int = 2_000) -> dict[str, float]:
    """Bytes per parked message: n channels, one message each, all handlers parked.

    Measured with tracemalloc once every task is blocked, for fan_in and for
    the hand-written fan-in (whose handler gets no context), per message.
    """

    async def measure(fan: Callable[..., Any]) -> int:
        receivers = []
        for index in range(n):
            send, receive = trio.open_memory_channel[int](1)
            send.send_nowait(index)
            send.close()
            receivers.append(receive)
        size = 0

        async def probe() -> None:
            nonlocal size
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            size = tracemalloc.get_traced_memory()[0] - start
            scope.cancel()

        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                await fan(receivers, parked)
        return size

    async def fan_in_parked(receivers: Any, handler: Any) -> None:
        await trio_sagas.fan_in(trio_sagas.StepContext("mem"), receivers, handler)

    tracemalloc.start()
    try:
        candidate = trio.run(measure, fan_in_parked)
        baseline = trio.run(measure, hand_written)
    finally:
        tracemalloc.stop()
    return {
        "bytes_per_in_flight_message_fan_in": candidate / n,
        "bytes_per_in_flight_message_hand_written": baseline / n,
        "bytes_per_in_flight_message_extra": (candidate - baseline) / n,
    }


def filled(channels: int, total: int) -> list[trio.MemoryReceiveChannel[int]]:
    """One set of *channels* closed channels sharing *total* items."""
    receivers = []
    for index in range(channels):
        send, receive = trio.open_memory_channel[int](math.inf)
        for item in range(total // channels + (index < total % channels)):
            send.send_nowait(item & 0xFF)
        send.close()
        receivers.append(receive)
    return receivers


THROUGHPUT_ITEMS = 64_000


def throughput_by_channels(
    total: int = THROUGHPUT_ITEMS,
) -> dict[str, dict[int, int]]:
    """Items per CPU second (median of 5) per variant and channel count."""
    variants: dict[str, tuple[Callable[..., Any], Callable[[int, Any], Any]]] = {
        "fan_in": (fan_in_any, trivial),
        "fan_in + 1 undo per message": (fan_in_any, with_undo),
        "hand-written": (hand_written, trivial),
        "hand-written, batched receive": (hand_written_batched, trivial),
    }
    table: dict[str, dict[int, int]] = {name: {} for name in variants}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(3 if QUICK else 5):
        # Interleaved: every variant once per round, so noise hits all alike.
        for channels in (1, 4, 16, 64):
            for name, (fn, handler) in variants.items():
                receivers = filled(channels, total)
                gc.collect()
                start = time.process_time()
                trio.run(fn, receivers, handler)
                elapsed = time.process_time() - start
                times.setdefault((name, channels), []).append(elapsed)
    for (name, channels), samples in times.items():
        table[name][channels] = round(total / statistics.median(samples))
    return table


def memory_endless_stream(total: int = 200_000) -> dict[str, float]:
    """Bytes kept per message from message 20,000 to *total* (tracemalloc).

    One producer, one undo registered per message; sampled at the same
    phase of the commit window both times.
    """

    async def run(commit_every: int | None) -> int:
        early, late = 20_500, total - 500
        samples: dict[int, int] = {}

        async def handler(item: int, ctx: trio_sagas.StepContext) -> None:
            ctx.register_compensation(undo, item)
            if item in (early, late):
                gc.collect()
                samples[item] = tracemalloc.get_traced_memory()[0]

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
            await trio_sagas.fan_in(
                trio_sagas.StepContext("stream"),
                [receive],
                handler,
                commit_every=commit_every,
            )
        return samples[late] - samples[early]

    tracemalloc.start()
    try:
        flat = trio.run(run, 1000)
        kept = trio.run(run, None)
    finally:
        tracemalloc.stop()
    span = total - 21_000
    return {
        "stream_bytes_per_message_commit_every_1000": round(flat / span, 2),
        "stream_bytes_per_message_no_commit": round(kept / span, 1),
    }


async def fan_in_any(
    receivers: list[trio.MemoryReceiveChannel[int]],
    handler: Callable[[int, Any], Any],
) -> None:
    """fan_in without the fixed item count check."""
    await trio_sagas.fan_in(trio_sagas.StepContext("bench"), receivers, handler)


def plot(table: dict[str, dict[int, int]]) -> str | None:
    """Draw *table* to FIGURES/fanin_throughput.png; None without matplotlib."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.8), dpi=110)
    for name, row in table.items():
        axes.plot(list(row), [v / 1000 for v in row.values()], marker="o", label=name)
    channels = sorted({c for row in table.values() for c in row})
    axes.set_xscale("log", base=2)
    axes.set_xticks(channels, [str(c) for c in channels])
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    axes.set_xlabel(f"channels ({THROUGHPUT_ITEMS:,} items in all, log scale)")
    axes.set_ylabel("thousand items per CPU second")
    axes.set_title("fan_in throughput by number of channels")
    axes.grid(True, alpha=0.3)
    # Below the axes, so the legend never hides a curve.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    figure.tight_layout()
    target = FIGURES / "fanin_throughput.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target)
    plt.close(figure)
    return str(target.relative_to(FIGURES.parent.parent))


def main() -> None:
    total = ROUNDS + WARMUP
    rows = [
        compare(
            f"fan_in {CHANNELS}x{ITEMS} trivial handler",
            runner(with_fan_in, trivial, filled_sets(total)),
            runner(hand_written, trivial, filled_sets(total)),
            key="trivial",
            items=CHANNELS * ITEMS,
            rounds=ROUNDS,
            warmup=WARMUP,
            target=1.25,
        ),
        compare(
            f"fan_in {CHANNELS}x{ITEMS} vs hand-written, batched receive",
            runner(with_fan_in, trivial, filled_sets(total)),
            runner(hand_written_batched, trivial, filled_sets(total)),
            key="vs_batched_receive",
            items=CHANNELS * ITEMS,
            rounds=ROUNDS,
            warmup=WARMUP,
        ),
        compare(
            f"fan_in {CHANNELS}x{ITEMS} + 1 undo per message",
            runner(with_fan_in, with_undo, filled_sets(total)),
            runner(hand_written, trivial, filled_sets(total)),
            key="undo",
            items=CHANNELS * ITEMS,
            rounds=ROUNDS,
            warmup=WARMUP,
        ),
        compare(
            f"fan_in {CHANNELS}x{ITEMS} + 1 undo vs no undo",
            runner(with_fan_in, with_undo, filled_sets(total)),
            runner(with_fan_in, trivial, filled_sets(total)),
            key="undo_vs_none",
            items=CHANNELS * ITEMS,
            rounds=ROUNDS,
            warmup=WARMUP,
        ),
        compare(
            f"fan_in {CHANNELS}x{ITEMS} + 1 undo (commit_every) vs none",
            runner(with_fan_in_committing, with_undo, filled_sets(total)),
            runner(with_fan_in, trivial, filled_sets(total)),
            key="undo_commit_every_vs_none",
            items=CHANNELS * ITEMS,
            rounds=ROUNDS,
            warmup=WARMUP,
        ),
    ]
    items = CHANNELS * ITEMS
    overhead = (rows[1]["candidate_s"] - rows[1]["baseline_s"]) / items * 1e6
    per_undo = (rows[3]["candidate_s"] - rows[3]["baseline_s"]) / items * 1e6
    per_undo_committing = (rows[4]["candidate_s"] - rows[4]["baseline_s"]) / items
    extra: dict[str, Any] = {
        "clock": "process_time (CPU)",
        "items_per_s_fan_in_trivial": round(items / rows[0]["candidate_s"]),
        "items_per_s_hand_written": round(items / rows[0]["baseline_s"]),
        "items_per_s_hand_written_batched": round(items / rows[1]["baseline_s"]),
        "items_per_s_fan_in_with_undo": round(items / rows[2]["candidate_s"]),
        "us_per_message_over_same_strategy_loop": round(overhead, 3),
        "us_per_message_over_same_strategy_loop_target": 1.0,
        "us_per_undo_registered": round(per_undo, 3),
        "us_per_undo_registered_target": 1.5,
        # Kept until the end, 160,000 actions also cost garbage-collector
        # passes; committed every 1,000 messages they do not.
        "us_per_undo_registered_commit_every_1000": round(per_undo_committing * 1e6, 3),
    }
    extra.update({k: round(v) for k, v in memory_in_flight().items()})
    extra.update(memory_endless_stream(40_000 if QUICK else 200_000))
    table = throughput_by_channels()
    extra["items_per_s_by_channels"] = table
    extra["plot"] = plot(table)
    report("fanin", rows, extra)


if __name__ == "__main__":
    main()
