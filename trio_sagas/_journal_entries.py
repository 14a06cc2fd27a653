"""A journaled run read back: one time axis across its processes, readable lines.

A run's entries may come from several processes (the one that crashed, the
one that recovered or resumed it). Each process stamps ``at`` with its own
trio clock, so the raw ``at`` values of two processes are unrelated. The
wall-clock ``written_at`` of each entry is set when its batch is written (at
most a step after the event), so within one process ``written_at - at`` is
nearly constant: the smallest such difference in a *segment* (one process's
entries) maps that segment's trio times onto the wall clock. A segment ends
where the difference jumps by more than :data:`SEGMENT_GAP`, and always at a
``RunResumed`` entry (the first a resuming process writes). Times are then
shown relative to the run's first entry. :mod:`._timeline` draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._saga import JournalEntry
from ._saga._events import RunResumed

SEGMENT_GAP = 5.0
"""Seconds by which ``written_at - at`` must jump to mark another process.

A virtual clock (tests, demos) that jumps further than that between two
entries of one process looks like another process there.
"""

_RUN_RESUMED = RunResumed.__name__


def _has_write_times(entries: Sequence[JournalEntry]) -> bool:
    # A journal sets written_at on every entry it stores; entries built by
    # hand (or by a test double) may leave the default 0.0: no wall clock.
    return all(entry.written_at for entry in entries)


def segments(entries: Sequence[JournalEntry]) -> list[int]:
    """Which process wrote each entry: 0 for the first, 1 for the next, …

    Without write times only ``RunResumed`` entries tell processes apart.
    """
    wall = _has_write_times(entries)
    out: list[int] = []
    segment = -1
    low = 0.0
    for entry in entries:
        offset = entry.written_at - entry.at
        if (
            segment < 0
            or entry.kind == _RUN_RESUMED
            or (wall and abs(offset - low) > SEGMENT_GAP)
        ):
            segment += 1
            low = offset
        low = min(low, offset)
        out.append(segment)
    return out


def wall_times(entries: Sequence[JournalEntry]) -> list[float]:
    """Each entry's time in seconds after the first entry (to the ms), across processes.

    The axis never goes back: a process that took over wrote after the
    previous one's last entry, so where its clock would place it earlier (a
    virtual clock, which runs ahead of the wall clock) it starts there.
    Entries without write times (``written_at`` left at 0) are placed on
    their trio clocks, each process's going on from the previous one's last
    entry: the outage between them is unknown, so it is not drawn.
    """
    which = segments(entries)
    wall = _has_write_times(entries)
    best: dict[int, float] = {}
    if wall:
        for entry, segment in zip(entries, which, strict=True):
            offset = entry.written_at - entry.at
            best[segment] = min(best.get(segment, offset), offset)
    times: list[float] = []
    shift = 0.0
    for index, (entry, segment) in enumerate(zip(entries, which, strict=True)):
        at = entry.at + best.get(segment, 0.0)
        if index and segment != which[index - 1]:
            gap = times[-1] - at
            shift = max(gap, 0.0) if wall else gap
        times.append(at + shift)
    return [round(t - times[0], 3) for t in times] if times else []


def entry_detail(entry: JournalEntry) -> str:
    """The one-line detail of an entry: its error, cause, or other key facts."""
    data = entry.data
    error = data.get("error")
    if isinstance(error, Mapping):
        message = error.get("message")
        return f"{error.get('type')}: {message}" if message else str(error.get("type"))
    cause = data.get("cause")
    if isinstance(cause, str):
        return cause
    parts = []
    for key in ("status", "attempts", "ok", "steps_to_undo", "branches"):
        if key in data:
            value = data[key]
            if isinstance(value, list):
                value = ",".join(map(str, value)) or "-"
            parts.append(f"{key}={value}")
    return " ".join(parts)
