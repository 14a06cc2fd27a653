"""The error group's task records: one column per field, outcomes built when read.

Every task's record is stored column by column, the task being an index:
names in a list; statuses, times and the rare value/error/cause in dicts.
Not an object per task: 20,000 records outliving their tasks made the GC
walk the whole heap, a third of the group's overhead over a bare nursery.
Outcomes are built when read (a frozen attrs record costs as much as
spawning the task itself), once each.

The group's task wrappers write the columns directly (:mod:`._group`): a
method call per write would cost a tenth of a task's overhead.
"""

from __future__ import annotations

from typing import Any

from .._outcome import CancelCause, Outcome, Status


class TaskRecords:
    """The columns of every task's record, and the outcomes read from them."""

    __slots__ = (
        "_extras",
        "_finished",
        "_names",
        "_outcome_cache",
        "_started",
        "_statuses",
    )

    def __init__(self) -> None:
        self._names: list[str] = []
        # index -> value, set when the task starts / ends (dicts, so a spawn
        # only appends its name).
        self._statuses: dict[int, Status] = {}
        self._started: dict[int, float | None] = {}
        self._finished: dict[int, float] = {}
        # index -> (value, error, cause), only where one is not None.
        self._extras: dict[
            int, tuple[object, BaseException | None, CancelCause | None]
        ] = {}
        self._outcome_cache: dict[int, Outcome[Any]] = {}

    def _new_record(self, name: str) -> int:
        """A record for a task named *name* that has not ended; its index."""
        index = len(self._names)
        self._names.append(name)
        return index

    def _outcome(self, index: int) -> Outcome[Any] | None:
        """Task *index*'s outcome, or None while it has not ended."""
        outcome = self._outcome_cache.get(index)
        status = self._statuses.get(index)
        if outcome is None and status is not None:
            value, error, cause = self._extras.get(index, (None, None, None))
            outcome = self._outcome_cache[index] = Outcome(
                self._names[index],
                status,
                value=value,
                error=error,
                cause=cause,
                started_at=self._started.get(index),
                finished_at=self._finished.get(index),
            )
        return outcome

    def _finished_outcomes(self) -> tuple[Outcome[Any], ...]:
        """One outcome per ended task, in the order the tasks were started."""
        outcomes = (self._outcome(index) for index in range(len(self._names)))
        return tuple(outcome for outcome in outcomes if outcome is not None)
