"""A bundle cancellation, told step by step.

An application keeps one cancellation tree::

    app
    ├── cache            (a bundle: three Redis connections share one node)
    │   ├── primary
    │   ├── replica
    │   └── sentinel
    └── http             (unrelated; must keep running)

The Redis primary's connection fails at t=2s. Its handler cancels the whole
``app/cache`` bundle with ``STEP_FAILED``; every connection under it stops at
once and reports the *root* cause (the bundle, triggered by ``primary``),
while ``app/http`` is untouched. Runs on a virtual clock, so it finishes
instantly and the times are exact.
"""

from __future__ import annotations

import math

import trio
import trio.testing

from trio_sagas import CancellationScope, CancelReason


async def redis_connection(node: CancellationScope, fail_after: float | None) -> None:
    """Hold a connection open until cancelled; maybe fail first."""
    with node.open():
        try:
            if fail_after is not None:
                await trio.sleep(fail_after)
                raise ConnectionResetError("connection reset by peer")
            await trio.sleep(math.inf)
        except trio.Cancelled as cancelled:
            print(
                f"t={trio.current_time():4.1f}s  {node.path:<22} stops: {cancelled.reason}"
            )
            raise
        except ConnectionResetError as error:
            print(f"t={trio.current_time():4.1f}s  {node.path:<22} fails: {error}")
            bundle = node.parent
            assert bundle is not None
            bundle.cancel(
                CancelReason.STEP_FAILED, triggered_by=node.name, message=str(error)
            )


async def http_server(node: CancellationScope) -> None:
    """Serve for 5 seconds, unaffected by the cache bundle."""
    with node.open():
        await trio.sleep(5)
    print(f"t={trio.current_time():4.1f}s  {node.path:<22} finished its work normally")


async def main() -> None:
    app = CancellationScope("app")
    cache = app.child("cache")
    connections = [
        (cache.child("primary"), 2.0),
        (cache.child("replica"), None),
        (cache.child("sentinel"), None),
    ]
    http = app.child("http")

    async with trio.open_nursery() as nursery:
        for node, fail_after in connections:
            nursery.start_soon(redis_connection, node, fail_after)
        nursery.start_soon(http_server, http)

    print()
    print("Who was cancelled, and why:")
    for node in app.walk():
        cause = node.cause
        verdict = "running/finished normally" if cause is None else cause.describe()
        print(f"  {node.path:<22} {verdict}")
    assert not app.cancelled
    assert not http.cancelled
    replica = connections[1][0]
    assert replica.cause is not None
    assert replica.cause.scope == "app/cache"
    assert replica.cause.triggered_by == "primary"


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
