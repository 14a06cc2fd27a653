"""Helpers shared by the test modules: one copy of each, imported where needed.

* :class:`Declined` — the stock step failure ("card declined").
* :class:`TaskTracker` / :func:`no_task_leaks` — fail when a task spawned
  inside a block outlives it (also the ``no_task_leaks`` fixture in conftest).
* :func:`run_virtual` — ``trio.run`` on a virtual clock, for tests that drive
  ``trio.run`` themselves (Hypothesis properties); async tests request
  pytest-trio's ``autojump_clock`` fixture instead.
* :func:`was_failing` — whether a journal cut at a crash says the run was
  failing (so an ``OnCrash.RESUME`` run is rolled back, not resumed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TypeAlias, TypeVar

import trio
import trio.testing

T = TypeVar("T")


class Declined(Exception):
    """A step failure (a payment declined)."""


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
def no_task_leaks() -> Iterator[TaskTracker]:
    """``with no_task_leaks() as tracker:`` fails if a task spawned inside outlives it.

    Use it inside a trio run, around the call under test; ``tracker.spawned``
    counts the tasks spawned inside.
    """
    tracker = TaskTracker()
    trio.lowlevel.add_instrument(tracker)
    try:
        yield tracker
    finally:
        trio.lowlevel.remove_instrument(tracker)
    leaked = sorted(task.name for task in tracker.live)
    assert not leaked, f"tasks outlived the block: {leaked}"


LeakCheck: TypeAlias = Callable[[], AbstractContextManager[TaskTracker]]
"""The type of the ``no_task_leaks`` fixture."""


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """``trio.run(main)`` on a clock that starts at 0 and jumps when all tasks block."""
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


FAILING_KINDS = frozenset(
    ["ActFailed", "ActCancelled", "SceneFailed", "ChorusFailed", "CompensationStarted"]
)


def was_failing(entries: Iterable[tuple[str, str]]) -> bool:
    """Whether a run whose journal holds these ``(kind, step)`` entries was
    failing when it stopped: a failure a chorus completed after does not
    count (a PARTIAL_SUCCESS chorus tolerated it)."""
    failures: set[str] = set()
    for kind, step in entries:
        if kind in FAILING_KINDS:
            failures.add(step)
        elif kind == "ChorusCompleted":
            failures = {f for f in failures if not f.startswith(step + "/")}
    return bool(failures)
