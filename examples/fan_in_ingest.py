"""Three order sources drained with fan_in; a poison message rolls everything back.

Run: ``python examples/fan_in_ingest.py`` (virtual clock: finishes at once).

Each message reserves stock and writes an order row, registering an undo for
each. The ``web`` source carries an order for a negative quantity; when it
fails, the other sources stop at once, and the worker runs the collected
undo actions in reverse: the warehouse and the order table end up exactly as
they started, and every order taken off a channel but not handled is listed
for requeueing.
"""

from __future__ import annotations

from typing import cast

import trio
import trio.testing

import trio_sagas

Order = tuple[str, str, int]  # (order id, sku, quantity)

SOURCES: dict[str, tuple[float, list[Order]]] = {
    # name: (seconds between messages, orders)
    "web": (0.3, [("w1", "apple", 2), ("w2", "pear", 1), ("w3", "apple", -4)]),
    "mobile": (0.4, [("m1", "pear", 3), ("m2", "plum", 1), ("m3", "apple", 1)]),
    "partner": (0.7, [("p1", "plum", 5), ("p2", "pear", 2)]),
}


class Warehouse:
    """In-memory stock levels."""

    def __init__(self) -> None:
        self.stock = {"apple": 10, "pear": 10, "plum": 10}

    async def reserve(self, sku: str, quantity: int) -> None:
        await trio.sleep(0.05)
        self.stock[sku] -= quantity

    async def unreserve(self, sku: str, quantity: int) -> None:
        await trio.sleep(0.02)
        self.stock[sku] += quantity
        log(f"undo: unreserve {quantity} {sku}")


class OrderTable:
    """In-memory order rows."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    async def insert(self, order_id: str, source: str) -> None:
        await trio.sleep(0.1)
        self.rows[order_id] = source

    async def delete(self, order_id: str) -> None:
        await trio.sleep(0.02)
        del self.rows[order_id]
        log(f"undo: delete order {order_id}")


def log(text: str) -> None:
    print(f"[{trio.current_time():5.2f}] {text}")


async def produce(
    name: str, gap: float, orders: list[Order], send: trio.MemorySendChannel[Order]
) -> None:
    async with send:
        for order in orders:
            await trio.sleep(gap)
            try:
                await send.send(order)
            except trio.BrokenResourceError:
                log(f"{name}: worker stopped, {order[0]} stays queued")
                return


async def main() -> None:
    warehouse, table = Warehouse(), OrderTable()
    sources = list(SOURCES)

    async def handle(order: Order, ctx: trio_sagas.StepContext) -> None:
        order_id, sku, quantity = order
        if quantity <= 0:
            raise ValueError(
                f"order {order_id}: quantity must be positive, got {quantity}"
            )
        await warehouse.reserve(sku, quantity)
        ctx.register_compensation(warehouse.unreserve, sku, quantity)
        source = sources[int(ctx.name.split(".")[0])]
        await table.insert(order_id, source)
        ctx.register_compensation(table.delete, order_id)
        log(f"{source}: {order_id} handled ({quantity} {sku}) as message {ctx.name}")

    before = dict(warehouse.stock)
    ctx = trio_sagas.StepContext("ingest")
    async with trio.open_nursery() as nursery:
        receivers = []
        for name, (gap, orders) in SOURCES.items():
            send, receive = trio.open_memory_channel[Order](0)
            nursery.start_soon(produce, name, gap, orders, send)
            receivers.append(receive)
        outcome = await trio_sagas.fan_in(ctx, receivers, handle, limit=2)

    log(
        f"fan_in {outcome.status.value} at {outcome.finished_at:.2f}: {outcome.error!r}; "
        f"handled per source {outcome.attributes['handled_per_source']}, "
        f"{outcome.attributes['interrupted']} interrupted"
    )
    # Taken off a channel but not handled (failed, interrupted, or still
    # buffered when the fan-in stopped): nothing vanishes, requeue them.
    unhandled = cast(tuple[tuple[int, Order], ...], outcome.attributes["unhandled"])
    log(f"not handled, to requeue: {[order[0] for _, order in unhandled]}")
    log(f"stock now {warehouse.stock}, orders {sorted(table.rows)}")
    log(f"rolling back {len(ctx.compensation)} actions, last registered first")
    report = await ctx.compensation.run()
    log(
        f"rollback ok={report.ok}; stock {warehouse.stock}, orders {sorted(table.rows)}"
    )
    assert warehouse.stock == before
    assert not table.rows


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
