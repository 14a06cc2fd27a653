"""Shared fixtures.

Virtual time: request pytest-trio's ``autojump_clock`` fixture; the test then
runs on a :class:`trio.testing.MockClock` that starts at 0 and jumps whenever
every task is blocked, so ``trio.current_time()`` values are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
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
