"""An order saga: reserve inventory, notify, charge payment, create a shipment.

The payment is declined, so the saga rolls back what completed — in reverse
order of completion, the notifications (a Chorus) in parallel — and prints
every event with its virtual time. Run it: ``python examples/order_saga.py``.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio
import trio.testing

import trio_sagas
from trio_sagas import Act, Chorus, Event, Scene, StepContext


@attrs.define
class Order:
    id: str
    items: dict[str, int]
    total_cents: int
    reservation: str | None = None
    charge: str | None = None
    log: list[str] = attrs.field(factory=list)


class PaymentDeclined(Exception):
    pass


async def reserve(ctx: StepContext, order: Order) -> str:
    await trio.sleep(0.2)
    order.reservation = f"res-{order.id}"
    return order.reservation


async def release(ctx: StepContext, order: Order) -> None:
    await trio.sleep(0.1)
    order.log.append(f"released reservation {ctx.result}")
    order.reservation = None


async def email(ctx: StepContext, order: Order) -> None:
    await trio.sleep(0.3)


async def email_apology(ctx: StepContext, order: Order) -> None:
    await trio.sleep(0.5)
    order.log.append("sent apology email")


async def sms(ctx: StepContext, order: Order) -> None:
    await trio.sleep(0.1)


async def sms_apology(ctx: StepContext, order: Order) -> None:
    await trio.sleep(0.5)
    order.log.append("sent apology sms")


async def charge(ctx: StepContext, order: Order) -> str:
    await trio.sleep(0.4)
    raise PaymentDeclined(f"card declined for {order.total_cents / 100:.2f} EUR")


async def refund(ctx: StepContext, order: Order) -> None:
    order.log.append("refunded")  # never runs here: the charge did not complete


async def ship(ctx: StepContext, order: Order) -> None:
    order.log.append("shipped")  # never runs here: the saga stopped before it


SCENE = Scene(
    "process-order",
    [
        Act("reserve-inventory", reserve, compensate=release, timeout=5),
        Chorus(
            "notify",
            [
                Act("email", email, compensate=email_apology),
                Act("sms", sms, compensate=sms_apology),
            ],
        ),
        Act("charge-payment", charge, compensate=refund, timeout=5),
        Act("create-shipment", ship),
    ],
    saga=True,
)


def show(event: Event) -> None:
    name = type(event).__name__
    detail: dict[str, Any] = {
        key: value
        for key, value in attrs.asdict(event, recurse=False).items()
        if key in ("scene", "step", "steps_to_undo", "failed_at_step", "error")
    }
    text = ", ".join(f"{k}={v!r}" for k, v in detail.items())
    print(f"  t={event.at:3.1f}s  {name}({text})")


async def main() -> None:
    order = Order("42", {"book": 1}, total_cents=2599)
    print("Events:")
    result = await trio_sagas.run_scene(SCENE, order, observer=show, run_id="order-42")
    print(f"\nstatus={result.status.name} failed_step={result.failed_step!r}")
    print(f"error: {result.error!r}")
    print("rollback log:", order.log)
    assert result.compensation is not None
    assert result.compensation.ok
    assert order.reservation is None
    assert sorted(order.log) == [
        "released reservation res-42",
        "sent apology email",
        "sent apology sms",
    ]


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
