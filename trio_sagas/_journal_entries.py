"""A journaled run read back: its entries as timeline records and readable lines.

A run's entries may come from several processes (the one that crashed, the
one that recovered it). Each process stamps ``at`` with its own trio clock,
so the raw ``at`` values of two processes are unrelated. The wall-clock
``written_at`` of each entry is set when its batch is written (at most a
step after the event), so within one process ``written_at - at`` is nearly
constant: the smallest such difference in a *segment* (a run of entries
whose difference stays within :data:`SEGMENT_GAP` of it) maps that
segment's trio times onto the wall clock. Times are then shown relative to
the run's first entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, final

import attrs

from ._outcome import Status
from ._saga import JournalEntry
from ._validate import check_type

SEGMENT_GAP = 5.0
"""Seconds by which ``written_at - at`` must jump to mark another process."""


@final
@attrs.frozen
class EntrySpan:
    """One act or undo of a journaled run, in the shape :func:`render_timeline` draws.

    Attributes:
        name: The step path (`` (undo)`` appended for a compensation,
            `` (interrupted)`` for one whose process ended mid-step).
        status: How it ended.
        started_at: Seconds after the run's first entry.
        finished_at: Seconds after the run's first entry.
    """

    name: str
    status: Status
    started_at: float
    finished_at: float
    cause: None = None


def segments(entries: Sequence[JournalEntry]) -> list[int]:
    """Which process wrote each entry: 0 for the first, 1 for the next, …"""
    out: list[int] = []
    segment = -1
    low: float | None = None
    for entry in entries:
        offset = entry.written_at - entry.at
        if low is None or abs(offset - low) > SEGMENT_GAP:
            segment += 1
            low = offset
        low = min(low, offset)
        out.append(segment)
    return out


def wall_times(entries: Sequence[JournalEntry]) -> list[float]:
    """Each entry's time in seconds after the first entry (to the ms), across processes."""
    which = segments(entries)
    best: dict[int, float] = {}
    for entry, segment in zip(entries, which, strict=True):
        offset = entry.written_at - entry.at
        best[segment] = min(best.get(segment, offset), offset)
    times = [e.at + best[s] for e, s in zip(entries, which, strict=True)]
    return [round(t - times[0], 3) for t in times] if times else []


_RUN_END = {
    "ActCompleted": Status.SUCCEEDED,
    "ActFailed": None,  # status in the data
    "ActCancelled": Status.CANCELLED,
}
_UNDO_END = {
    "CompensationStepCompleted": Status.SUCCEEDED,
    "CompensationStepFailed": Status.FAILED,
}


def _status(data: Mapping[str, Any], default: Status) -> Status:
    name = data.get("status")
    if isinstance(name, str) and name in Status.__members__:
        return Status[name]
    return default


def timeline_from_entries(entries: Iterable[JournalEntry]) -> list[EntrySpan]:
    """The acts and undos of a run read back from a journal, as spans.

    :func:`render_timeline` and :func:`plot_timeline` draw them, and accept
    the entries themselves too: ``render_timeline(await
    journal.events(run_id))``. A run that crashed is drawn with its open
    steps ending, ``(interrupted)`` and cancelled, at its process's last
    entry; the undos of the process that recovered it follow on the same
    axis (seconds since the run's first entry, from the entries' wall-clock
    ``written_at``: each process's trio clock is its own).

    Returns:
        Records with ``name``, ``status``, ``started_at``, ``finished_at``,
        in start order.

    Raises:
        TypeError: an item is not a :class:`JournalEntry`.
    """
    entries = tuple(entries)
    for entry in entries:
        check_type(entry, JournalEntry, "entries[...]")
    times = wall_times(entries)
    spans: list[EntrySpan] = []
    open_runs: dict[str, float] = {}
    open_undos: dict[str, float] = {}
    last_time = 0.0

    def close_interrupted() -> None:
        for opened, label in ((open_runs, ""), (open_undos, " (undo)")):
            for step, start in opened.items():
                spans.append(
                    EntrySpan(
                        f"{step}{label} (interrupted)",
                        Status.CANCELLED,
                        start,
                        last_time,
                    )
                )
            opened.clear()

    previous = 0
    for entry, at, segment in zip(entries, times, segments(entries), strict=True):
        if segment != previous:
            close_interrupted()  # another process took over
            previous = segment
        kind = entry.kind
        if kind == "ActStarted":
            open_runs[entry.step] = at
        elif kind in _RUN_END and entry.step in open_runs:
            status = _RUN_END[kind] or _status(entry.data, Status.FAILED)
            spans.append(EntrySpan(entry.step, status, open_runs.pop(entry.step), at))
        elif kind == "CompensationStepStarted":
            open_undos[entry.step] = at
        elif kind in _UNDO_END and entry.step in open_undos:
            spans.append(
                EntrySpan(
                    f"{entry.step} (undo)",
                    _UNDO_END[kind],
                    open_undos.pop(entry.step),
                    at,
                )
            )
        last_time = at
    close_interrupted()
    spans.sort(key=lambda s: (s.started_at, s.finished_at, s.name))
    return spans


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
