"""The README's first example: a saga whose payment fails, rolled back.

Run it with ``python examples/quickstart.py``. Every step takes the step
context ``ctx`` first, then the saga's state.
"""

import trio

import trio_sagas
from trio_sagas import StepContext as Ctx

Order = dict[str, str]


async def reserve(ctx: Ctx, order: Order) -> str:
    print("reserve", order["item"])
    return "hold-1"  # what run returns is ctx.result in compensate


async def release(ctx: Ctx, order: Order) -> None:
    print("release", ctx.result)


async def book(ctx: Ctx, order: Order) -> None:
    print("book a courier")


async def unbook(ctx: Ctx, order: Order) -> None:
    print("cancel the courier")


async def charge(ctx: Ctx, order: Order) -> None:
    raise ValueError("card declined")


checkout = trio_sagas.Scene(
    "checkout",
    saga=True,
    steps=[
        trio_sagas.Act("reserve", run=reserve, compensate=release),
        trio_sagas.Act("book", run=book, compensate=unbook),
        trio_sagas.Act("charge", run=charge),
    ],
)


async def main() -> None:
    result = await trio_sagas.run_scene(checkout, {"item": "teapot"})
    print(result.status.name, result.failed_step, repr(result.error))
    assert result.compensation is not None  # a saga that failed was rolled back
    print("rolled back:", [o.name for o in result.compensation.outcomes])


trio.run(main)
