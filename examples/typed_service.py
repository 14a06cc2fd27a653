"""A typed order service: ``mypy --strict`` with no cast and no assert.

The steps take a ``StepContext[Deps]``, so ``ctx.deps`` is a ``Deps`` to the
type checker; the acts, the scene and :func:`trio_sagas.run_scene` carry the
same parameter, so passing the wrong dependencies is a type error, not a
crash at three in the morning. Keys come from the context: the run's
``ctx.idempotency_key`` (a ``str``) for each call to a provider, and in the
undo ``ctx.forward_key``, the key the charge had, to name what to refund.

Run it: ``python examples/typed_service.py``; check it: ``mypy --strict
examples/typed_service.py``.
"""

from __future__ import annotations

import attrs
import trio
import trio.testing

import trio_sagas
from trio_sagas import Act, Scene, StepContext


@attrs.define
class Payments:
    """A fake payment provider that deduplicates by idempotency key."""

    charges: dict[str, int] = attrs.field(factory=dict)
    refunds: dict[str, str] = attrs.field(factory=dict)
    decline_over: int = 10_000

    async def charge(self, amount: int, *, key: str) -> str:
        await trio.sleep(0.2)
        if amount > self.decline_over:
            raise ValueError(f"card declined for {amount}")
        self.charges.setdefault(key, amount)  # a retry never charges twice
        return f"ch-{len(self.charges)}"

    async def refund(self, charge_key: str | None, *, key: str) -> int:
        """Refund the charge made under *charge_key* (0 if there was none)."""
        await trio.sleep(0.1)
        if charge_key is None or charge_key not in self.charges:
            return 0
        self.refunds.setdefault(key, charge_key)
        return self.charges[charge_key]


@attrs.define
class Inventory:
    """A fake inventory service."""

    held: dict[str, int] = attrs.field(factory=dict)

    async def reserve(self, sku: str, quantity: int, *, key: str) -> str:
        await trio.sleep(0.1)
        self.held[key] = quantity
        return f"res-{sku}"

    async def release(self, key: str) -> None:
        self.held.pop(key, None)


@attrs.define
class Deps:
    """What every step of the order saga talks to."""

    payments: Payments
    inventory: Inventory
    log: list[str] = attrs.field(factory=list)


@attrs.define
class Order:
    """The saga's state."""

    sku: str
    quantity: int
    amount: int
    reservation: str | None = None
    charge: str | None = None


async def reserve(ctx: StepContext[Deps], order: Order) -> str:
    order.reservation = await ctx.deps.inventory.reserve(
        order.sku, order.quantity, key=ctx.idempotency_key
    )
    return order.reservation


async def release(ctx: StepContext[Deps], order: Order) -> None:
    # The key the reservation was made under: the undo's forward_key.
    if ctx.forward_key is not None:
        await ctx.deps.inventory.release(ctx.forward_key)
    ctx.deps.log.append(f"released {order.reservation} ({ctx.path})")
    order.reservation = None


async def charge(ctx: StepContext[Deps], order: Order) -> str:
    order.charge = await ctx.deps.payments.charge(order.amount, key=ctx.idempotency_key)
    ctx.deps.log.append(f"charged {order.amount} in run {ctx.run_id}")
    return order.charge


async def refund(ctx: StepContext[Deps], order: Order) -> None:
    refunded = await ctx.deps.payments.refund(ctx.forward_key, key=ctx.idempotency_key)
    ctx.deps.log.append(f"refunded {refunded} of {ctx.forward_key}")
    order.charge = None


async def ship(ctx: StepContext[Deps], order: Order) -> None:
    await trio.sleep(0.3)
    if order.quantity > 5:
        raise RuntimeError(f"cannot ship {order.quantity} at once")
    ctx.deps.log.append(f"shipped {order.sku}")


# Annotated, a step of other deps is refused here (unannotated, the type is
# inferred from the steps: Scene[Deps] too, but a mix would become Scene[Any]).
ORDER_SAGA: Scene[Deps] = Scene(
    "order",
    [
        Act("reserve", reserve, compensate=release),
        Act("charge", charge, compensate=refund),
        Act("ship", ship),
    ],
    saga=True,
)


async def place(deps: Deps, order: Order, run_id: str) -> None:
    result = await trio_sagas.run_scene(ORDER_SAGA, order, deps=deps, run_id=run_id)
    # `deps=Inventory()` above would be a type error: the scene wants Deps.
    print(f"{run_id}: {result.status.name} at t={trio.current_time():g}")
    for line in deps.log:
        print(f"   {line}")
    deps.log.clear()


async def main() -> None:
    deps = Deps(Payments(), Inventory())
    await place(deps, Order("book", 1, 2599), "order-1")
    await place(deps, Order("chair", 8, 9900), "order-2")
    print(f"charges {deps.payments.charges}")
    print(f"refunds {deps.payments.refunds}")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
