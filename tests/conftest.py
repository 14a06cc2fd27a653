"""Shared fixtures.

Virtual time: request pytest-trio's ``autojump_clock`` fixture; the test then
runs on a :class:`trio.testing.MockClock` that starts at 0 and jumps whenever
every task is blocked, so ``trio.current_time()`` values are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings

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


class TaskTracker(trio.abc.Instrument):
    """Records every task spawned while installed and forgets it when it exits."""

    def __init__(self) -> None:
        self.live: dict[trio.lowlevel.Task, None] = {}
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.live[task] = None
        self.spawned += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live.pop(task, None)


@contextmanager
def _no_task_leaks() -> Iterator[TaskTracker]:
    tracker = TaskTracker()
    trio.lowlevel.add_instrument(tracker)
    try:
        yield tracker
    finally:
        trio.lowlevel.remove_instrument(tracker)
    leaked = sorted(task.name for task in tracker.live)
    assert not leaked, f"tasks outlived the block: {leaked}"


@pytest.fixture
def no_task_leaks() -> Callable[[], AbstractContextManager[TaskTracker]]:
    """``with no_task_leaks() as tracker:`` fails if a task spawned inside outlives it.

    Use it inside a trio test, around the call under test;
    ``tracker.spawned`` counts the tasks spawned inside.
    """
    return _no_task_leaks


# The session's throwaway PostgreSQL server (tests/pg_server.py).
from .pg_server import pg_server as pg_server  # noqa: E402
