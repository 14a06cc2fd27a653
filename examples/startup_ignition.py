"""Start a small web service with trio_sagas.Ignition and print what happened.

The service needs a database (critical), a Redis bundle (critical connection,
optional warmup), a search index (optional) and then an HTTP server, which is
a *service*: it is ready once it calls ``task_status.started()`` and keeps
serving in our nursery. Redis refuses the connection, so the whole Redis
bundle stops at once and everything that depends on it is skipped, while the
rest of the startup goes on. Runs on a virtual clock, so it finishes at once
and the times printed are exact.

Run: ``python examples/startup_ignition.py``
"""

from __future__ import annotations

import trio
import trio.testing

import trio_sagas
from trio_sagas import CancellationScope, ExecutionMode, Ignition, IgnitionPolicy


async def connect_database(url: str) -> str:
    await trio.sleep(0.8)
    return f"connected to {url}"


async def connect_redis() -> None:
    await trio.sleep(0.3)
    raise ConnectionRefusedError("redis:6379 refused the connection")


async def warm_redis() -> int:
    await trio.sleep(2.0)
    return 10_000


async def run_migrations() -> int:
    await trio.sleep(1.2)
    return 3


async def load_search_index() -> None:
    await trio.sleep(30)  # far longer than the startup budget


async def sessions_ready() -> None:
    await trio.sleep(0.1)


async def http_server(
    port: int, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    await trio.sleep(0.2)
    task_status.started(f"http://0.0.0.0:{port}")
    try:
        await trio.sleep_forever()
    finally:
        print(f"[{trio.current_time():5.2f}s] http server shut down")


def log(event: trio_sagas.Event) -> None:
    if isinstance(event, trio_sagas.SignalStarted):
        print(f"[{event.at:5.2f}s] start     {event.name}")
    elif isinstance(event, trio_sagas.SignalCompleted):
        why = f"  ({event.cause})" if event.cause is not None else ""
        print(f"[{event.at:5.2f}s] {event.status.value:<10}{event.name}{why}")
    elif isinstance(event, trio_sagas.GlobalTimeoutReached):
        print(
            f"[{event.at:5.2f}s] global timeout; still pending: {', '.join(event.pending)}"
        )


async def main() -> None:
    app = CancellationScope("app")
    redis = app.child("redis")
    ignition = Ignition(
        mode=ExecutionMode.DEPENDENCY_AWARE,
        policy=IgnitionPolicy.BEST_EFFORT,
        global_timeout=5.0,
        cancel_individual_on_timeout=True,
        observer=log,
    )
    ignition.add("database", connect_database, "postgres://db/app", timeout=3)
    ignition.add("migrations", run_migrations, depends_on=["database"])
    ignition.add("redis", connect_redis, scope=redis, cancel_scope_on_failure=True)
    ignition.add("redis-warmup", warm_redis, scope=redis)
    ignition.add("sessions", sessions_ready, depends_on=["redis"])
    ignition.add("search-index", load_search_index, timeout=2.5)
    ignition.add("http", http_server, 8080, depends_on=["migrations"], timeout=1)

    async with trio.open_nursery() as nursery:
        result = await ignition.run(nursery=nursery)
        print()
        print(result)
        print()
        http = result.outcomes["http"]
        if http.ok:
            print(f"serving on {http.value}; degraded: {not result.ok}")
        # ... serve for a while, then shut down.
        await trio.sleep(60)
        nursery.cancel_scope.cancel(reason="example finished")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
