"""Shared fixtures.

Virtual time: request pytest-trio's ``autojump_clock`` fixture; the test then
runs on a :class:`trio.testing.MockClock` that starts at 0 and jumps whenever
every task is blocked, so ``trio.current_time()`` values are exact.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings

from .helpers import TaskTracker as TaskTracker
from .helpers import no_task_leaks

settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# Longer runs for hunting rare interleavings: pytest --hypothesis-profile=stress
settings.register_profile(
    "stress", parent=settings.get_profile("default"), max_examples=2000
)
settings.load_profile("default")


# Kept importable from here for test modules that still import them.
_no_task_leaks = no_task_leaks


@pytest.fixture(name="no_task_leaks")
def no_task_leaks_fixture() -> Callable[[], AbstractContextManager[TaskTracker]]:
    """``with no_task_leaks() as tracker:`` fails if a task spawned inside outlives it.

    Use it inside a trio test, around the call under test;
    ``tracker.spawned`` counts the tasks spawned inside.
    """
    return _no_task_leaks


# Every async test runs under a trio.fail_after guard, so a test that hangs
# on a bug fails by name instead of being killed with the whole session by
# faulthandler. On a virtual clock a hang jumps straight to the guard's
# deadline, so it costs nothing; the virtual budget is far beyond any test's
# own sleeps. On the real clock the guard is a minute.
VIRTUAL_GUARD = 1_000_000.0
REAL_GUARD = 60.0


def _guarded(test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        virtual = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        with trio.fail_after(VIRTUAL_GUARD if virtual else REAL_GUARD):
            return await test(*args, **kwargs)

    return guarded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Wrap every async test function in the hang guard."""
    for item in items:
        test = getattr(item, "obj", None)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(test):
            item.obj = _guarded(test)


# The session's throwaway PostgreSQL server (tests/pg_server.py).
from .pg_server import pg_server as pg_server  # noqa: E402
