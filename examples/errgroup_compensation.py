"""An error group booking a trip: the flight fails, everything else stops and is undone.

Four bookings run concurrently in one error group. The flight booking fails at
t=2s. In that same instant the hotel and car bookings still in progress are
cancelled (the printout shows the reason trio hands them), and once every
task has ended the undo actions of the steps that had made progress run in
reverse order, shielded, each bounded by a timeout. The 20-second refund of
the hotel deposit does not delay the cancellation of the others. Virtual
clock: it finishes instantly and the times are exact.
"""

from __future__ import annotations

import math

import trio
import trio.testing

import trio_sagas
from trio_sagas import Event, StepContext


def say(what: str) -> None:
    print(f"  t={trio.current_time():5.1f}s  {what}")


async def undo(what: str, seconds: float) -> None:
    await trio.sleep(seconds)
    say(f"undone: {what}")


async def book_hotel(ctx: StepContext, trip: str) -> None:
    await trio.sleep(1)
    ctx.register_compensation(
        undo, f"hotel deposit for {trip}", 20.0, name="refund-deposit"
    )
    say("hotel deposit paid; confirming the room…")
    await trio.sleep(10)


async def book_car(ctx: StepContext, trip: str) -> None:
    await trio.sleep(0.5)
    ctx.register_compensation(undo, f"car hold for {trip}", 1.0, name="release-car")
    say("car on hold; waiting for the rental desk…")
    await trio.sleep(math.inf)


async def book_flight(ctx: StepContext, trip: str) -> None:
    await trio.sleep(2)
    raise RuntimeError("no seats left on LH 404")


async def notify_traveller(trip: str) -> None:
    try:
        await trio.sleep(math.inf)
    except trio.Cancelled as cancelled:
        say(f"notification cancelled: {cancelled.reason}")
        raise


def observe(event: Event) -> None:
    if isinstance(event, trio_sagas.GroupCancelled):
        say(
            f"GROUP CANCELLED ({event.cause.reason.value}, by {event.cause.triggered_by})"
        )
    elif isinstance(event, trio_sagas.GroupCompensationStarted):
        # The event lists actions in registration order; they run newest first.
        say(f"compensation starts: {', '.join(reversed(event.actions))}")
    elif isinstance(event, trio_sagas.GroupCompensationCompleted):
        say(f"compensation done, ok={event.report.ok}")


async def main() -> None:
    print("Booking trip 'lisbon-2026':")
    try:
        async with trio_sagas.open_err_group(
            name="trip", observer=observe, compensation_timeout=60
        ) as group:
            group.start_step(book_hotel, "lisbon-2026", name="hotel")
            group.start_step(book_car, "lisbon-2026", name="car")
            group.start_step(book_flight, "lisbon-2026", name="flight")
            group.start_soon(notify_traveller, "lisbon-2026", name="notify")
    except RuntimeError as error:
        say(f"booking failed: {error}")

    print("\nOutcomes:")
    for outcome in group.outcomes:
        why = f" <- {outcome.cause.describe()}" if outcome.cause else ""
        print(
            f"  {outcome.name:<7} {outcome.status.name:<9} at t={outcome.finished_at}{why}"
        )
    cancelled_at = {o.finished_at for o in group.outcomes if o.name != "flight"}
    assert cancelled_at == {2.0}, "peers must stop at the failure's instant"
    assert trio.current_time() == 23.0  # 2 s + 1 s car + 20 s deposit refund


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
