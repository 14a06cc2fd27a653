"""Start a small web service with trio_sagas.Ignition and print what happened.

The service needs a database (critical), a journal (an async context
manager, entered as a service), a Redis bundle (critical connection,
optional warmup), a search index (optional), a feature-flag check that is
retried until the flag server answers, and then an HTTP server, which is a
*service*: it is ready once it calls ``task_status.started()`` and keeps
serving in our nursery. The HTTP server receives the database connection and
the journal the signals it depends on started (``deps``). Redis refuses the
connection, so the whole Redis bundle stops at once and everything that
depends on it is skipped, while the rest of the startup goes on. On shutdown
the HTTP server stops first and the journal closes after it. Runs on a
virtual clock, so it finishes at once and the times printed are exact.

Run: ``python examples/startup_ignition.py``
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

import trio_sagas
from trio_sagas import (
    CancellationScope,
    ExecutionMode,
    Ignition,
    IgnitionPolicy,
    RetryPolicy,
)


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


class Journal:
    """Stands in for a durable journal: it must outlive its writers."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.closed = False

    def append(self, record: str) -> None:
        if self.closed:
            raise RuntimeError(f"journal {self.path} is closed")
        print(f"[{trio.current_time():5.2f}s] journal <- {record}")


@asynccontextmanager
async def open_journal(path: str) -> AsyncIterator[Journal]:
    await trio.sleep(0.4)
    journal = Journal(path)
    try:
        yield journal
    finally:
        journal.closed = True
        print(f"[{trio.current_time():5.2f}s] journal closed")


flag_server_calls = 0


async def load_feature_flags() -> int:
    global flag_server_calls
    flag_server_calls += 1
    await trio.sleep(0.1)
    if flag_server_calls < 3:
        raise ConnectionError("flag server starting up")
    return 42


async def http_server(
    port: int,
    *,
    deps: Mapping[str, Any],
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    journal: Journal = deps["journal"]
    await trio.sleep(0.2)
    task_status.started(f"http://0.0.0.0:{port} ({deps['database']})")
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(0.5)  # drain in-flight requests
            journal.append("in-flight orders drained")
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
    ignition.add_context("journal", open_journal, "sagas.db")
    ignition.add(
        "feature-flags",
        load_feature_flags,
        timeout=3,
        retry=RetryPolicy(max_attempts=5, initial_backoff=0.25),
    )
    ignition.add(
        "http",
        http_server,
        8080,
        depends_on=["migrations", "journal", "database"],
        timeout=1,
    )

    async with trio.open_nursery() as nursery:
        result = await ignition.run(nursery=nursery)
        print()
        print(result)
        print()
        http = result.outcomes["http"]
        if http.ok:
            print(f"serving on {http.value}; degraded: {not result.ok}")
        flags = result.outcomes["feature-flags"]
        tries = flags.attributes["attempts"]  # one record per try
        if isinstance(tries, tuple):
            print(f"feature flags: {flags.value} after {len(tries)} tries")
        # ... serve for a while, then shut down.
        await trio.sleep(60)
        nursery.cancel_scope.cancel(reason="example finished")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
