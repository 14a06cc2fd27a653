"""Timelines: any run's work as spans on the trio clock, drawn as a Gantt.

:func:`timeline_spans` turns what a component reports into :class:`Span`
records; :func:`render_timeline` draws them as plain text (no dependency);
:func:`plot_timeline` writes a PNG/SVG with matplotlib (the ``plot`` extra).

Sources understood:

* a :class:`SagaResult` (or its events): one span per act and per undo;
* a journaled run's entries (``await journal.events(run_id)``): the same,
  for every process that worked on the run, on one axis (see
  :mod:`._journal_entries`): work a crash cut short ends ``(interrupted)``,
  and a resumed run shows a "resumed by" mark where the new process took
  over; :func:`timeline_from_entries` gives these spans by name;
* anything with ``outcomes`` — an :class:`ErrGroup`, an ignition result —
  as a sequence or a mapping of :class:`Outcome`;
* an :class:`Outcome` of a hedged call, whose ``attributes["attempts"]`` is
  the attempt timeline;
* any iterable of outcome-like records (``status``, ``started_at``,
  ``finished_at``, and ``name`` or attempt indexes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, final

import attrs

from ._events import Event
from ._journal_entries import segments, wall_times
from ._outcome import CancelCause, Outcome, Status
from ._saga import _events as se
from ._saga._journal import JournalEntry
from ._validate import check_bool, check_int, check_optional_str, check_type


@final
@attrs.frozen
class Span:
    """One piece of work on the trio clock.

    Attributes:
        label: What ran (a step path, a task or signal name, an attempt).
        start: When it started.
        end: When it ended (``start`` for work that never started).
        status: How it ended.
        kind: ``"run"`` for forward work, ``"undo"`` for compensation,
            ``"skip"`` for work that never started.
        cause: Why it was cancelled, timed out or skipped.
    """

    label: str
    start: float
    end: float
    status: Status
    kind: str = "run"
    cause: CancelCause | None = None

    @property
    def duration(self) -> float:
        """``end - start``."""
        return self.end - self.start


def _from_saga_events(events: Sequence[Event]) -> list[Span]:
    spans: list[Span] = []
    open_runs: dict[str, float] = {}
    open_undos: dict[str, float] = {}
    for event in events:
        if isinstance(event, se.ActStarted):
            open_runs[event.step] = event.at
        elif isinstance(event, se.ActCompleted):
            spans.append(
                Span(event.step, open_runs.pop(event.step), event.at, Status.SUCCEEDED)
            )
        elif isinstance(event, se.ActFailed):
            spans.append(
                Span(event.step, open_runs.pop(event.step), event.at, event.status)
            )
        elif isinstance(event, se.ActCancelled):
            spans.append(
                Span(
                    event.step,
                    open_runs.pop(event.step),
                    event.at,
                    Status.CANCELLED,
                    cause=event.cause,
                )
            )
        elif isinstance(event, se.CompensationStepStarted):
            open_undos[event.step] = event.at
        elif isinstance(
            event, (se.CompensationStepCompleted, se.CompensationStepFailed)
        ):
            status = (
                Status.SUCCEEDED
                if isinstance(event, se.CompensationStepCompleted)
                else Status.FAILED
            )
            spans.append(
                Span(
                    event.step,
                    open_undos.pop(event.step),
                    event.at,
                    status,
                    kind="undo",
                )
            )
    # Gantt order; also deterministic where parallel branches end together
    # (trio randomizes the order of same-turn events).
    spans.sort(key=lambda span: (span.start, span.end, span.label))
    return spans


_ACT_STARTED = se.ActStarted.__name__
_ACT_ENDS: dict[str, Status | None] = {
    se.ActCompleted.__name__: Status.SUCCEEDED,
    se.ActFailed.__name__: None,  # FAILED or TIMED_OUT: the entry's status
    se.ActCancelled.__name__: Status.CANCELLED,
}
_UNDO_STARTED = se.CompensationStepStarted.__name__
_UNDO_ENDS = {
    se.CompensationStepCompleted.__name__: Status.SUCCEEDED,
    se.CompensationStepFailed.__name__: Status.FAILED,
}
_RUN_RESUMED = se.RunResumed.__name__


def _status(data: Mapping[str, Any]) -> Status:
    name = data.get("status")
    if isinstance(name, str) and name in Status.__members__:
        return Status[name]
    return Status.FAILED


def _checked(entries: Iterable[object]) -> tuple[JournalEntry, ...]:
    entries = tuple(entries)
    for entry in entries:
        check_type(entry, JournalEntry, "entries[...]")
    return entries  # type: ignore[return-value]  # checked just above


def _from_journal(entries: Sequence[JournalEntry]) -> list[Span]:
    """A journaled run's spans, every process's, on one axis (seconds since
    its first entry): work a process left open when another took over ends,
    ``(interrupted)`` and CANCELLED, at that process's last entry; a
    ``RunResumed`` entry is a "resumed by" mark."""
    placed: list[tuple[int, Span]] = []  # (process, span)
    open_runs: dict[str, float] = {}
    open_undos: dict[str, float] = {}
    process = 0
    last = 0.0

    def interrupted() -> None:
        for opened, kind in ((open_runs, "run"), (open_undos, "undo")):
            for step, start in opened.items():
                span = Span(
                    f"{step} (interrupted)", start, last, Status.CANCELLED, kind
                )
                placed.append((process, span))
            opened.clear()

    times = wall_times(entries)
    for entry, at, segment in zip(entries, times, segments(entries), strict=True):
        if segment != process:
            interrupted()  # another process took over
            process = segment
        kind, step = entry.kind, entry.step
        if kind == _ACT_STARTED:
            open_runs[step] = at
        elif kind in _ACT_ENDS and step in open_runs:
            status = _ACT_ENDS[kind] or _status(entry.data)
            placed.append((process, Span(step, open_runs.pop(step), at, status)))
        elif kind == _UNDO_STARTED:
            open_undos[step] = at
        elif kind in _UNDO_ENDS and step in open_undos:
            span = Span(step, open_undos.pop(step), at, _UNDO_ENDS[kind], "undo")
            placed.append((process, span))
        elif kind == _RUN_RESUMED:
            owner = str(entry.data.get("owner"))[:8]  # enough to tell workers apart
            mark = Span(f"resumed by {owner}", at, at, Status.SKIPPED, "skip")
            placed.append((process, mark))
        last = at
    interrupted()
    # Gantt order; at one instant, a dead process's work before the mark,
    # the mark before the new process's work.
    placed.sort(
        key=lambda ps: (
            ps[1].start,
            ps[0],
            ps[1].kind != "skip",
            ps[1].end,
            ps[1].label,
            ps[1].kind,
        )
    )
    return [span for _, span in placed]


@final
@attrs.frozen
class EntrySpan:
    """One act, undo or mark of a journaled run, by name (see :func:`timeline_from_entries`).

    Attributes:
        name: The step path (`` (undo)`` appended for a compensation,
            `` (interrupted)`` for one whose process ended mid-step), or
            ``resumed by WORKER`` where another process resumed the run.
        status: How it ended (SKIPPED for a mark).
        started_at: Seconds after the run's first entry.
        finished_at: Seconds after the run's first entry.
    """

    name: str
    status: Status
    started_at: float
    finished_at: float
    cause: None = None


def timeline_from_entries(entries: Iterable[JournalEntry]) -> list[EntrySpan]:
    """The acts and undos of a run read back from a journal, as spans.

    :func:`render_timeline` and :func:`plot_timeline` draw them, and accept
    the entries themselves too: ``render_timeline(await
    journal.events(run_id))``. A run that crashed is drawn with its open
    steps ending, ``(interrupted)`` and cancelled, at its process's last
    entry; the work of the process that recovered it follows on the same
    axis (seconds since the run's first entry, from the entries' wall-clock
    ``written_at``: each process's trio clock is its own), after a
    ``resumed by`` mark where it resumed the run.

    Returns:
        Records with ``name``, ``status``, ``started_at``, ``finished_at``,
        in start order.

    Raises:
        TypeError: an item is not a :class:`JournalEntry`.
    """
    return [
        EntrySpan(
            span.label + (" (undo)" if span.kind == "undo" else ""),
            span.status,
            span.start,
            span.end,
        )
        for span in _from_journal(_checked(entries))
    ]


def _label(record: Any, index: int) -> str:
    name = getattr(record, "name", None)
    if isinstance(name, str):
        return name
    retry = getattr(record, "retry_index", None)
    hedge = getattr(record, "hedge_index", None)
    if retry is not None and hedge is not None:
        return f"retry {retry} / hedge {hedge}"
    return f"#{index}"


def _from_records(records: Iterable[Any]) -> list[Span]:
    spans: list[Span] = []
    for index, record in enumerate(records):
        status = getattr(record, "status", None)
        if not isinstance(status, Status):
            raise TypeError(f"cannot draw {record!r}: it has no Status")
        start = getattr(record, "started_at", None)
        end = getattr(record, "finished_at", None)
        cause = getattr(record, "cause", None)
        label = _label(record, index)
        if start is None:
            at = end if end is not None else 0.0
            spans.append(Span(label, at, at, status, kind="skip", cause=cause))
        else:
            spans.append(
                Span(label, start, start if end is None else end, status, cause=cause)
            )
    return spans


def timeline_spans(source: object) -> list[Span]:
    """The spans of a run, for drawing or analysis.

    Raises:
        TypeError: *source* is none of the understood kinds.
    """
    events = getattr(source, "events", None)
    if events is not None and not isinstance(source, Mapping):
        return _from_saga_events(tuple(events))
    if isinstance(source, Outcome):
        attempts = source.attributes.get("attempts")
        if isinstance(attempts, Iterable) and not isinstance(attempts, (str, bytes)):
            return _from_records(attempts)
        return _from_records([source])
    outcomes = getattr(source, "outcomes", None)
    if outcomes is not None:
        return _from_records(
            outcomes.values() if isinstance(outcomes, Mapping) else outcomes
        )
    if isinstance(source, Sequence) and source and isinstance(source[0], Event):
        return _from_saga_events(source)
    if isinstance(source, Sequence) and source and isinstance(source[0], JournalEntry):
        return _from_journal(_checked(source))
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        return _from_records(source)
    raise TypeError(f"cannot draw a timeline of {source!r}")


_MARK = {
    Status.SUCCEEDED: ("█", "#"),
    Status.FAILED: ("▓", "X"),
    Status.TIMED_OUT: ("▒", "T"),
    Status.CANCELLED: ("░", "-"),
    Status.SKIPPED: ("·", "."),
}


def render_timeline(
    source: object, *, width: int = 48, ascii_only: bool = False
) -> str:
    """A plain-text Gantt chart of a run, one line per span.

    Args:
        source: See :func:`timeline_spans`.
        width: Columns for the time axis.
        ascii_only: Use ``# X T - .`` instead of block characters.
    """
    check_int(width, "width", minimum=8)
    check_bool(ascii_only, "ascii_only")
    spans = timeline_spans(source)
    if not spans:
        return "(nothing ran)"
    t0 = min(s.start for s in spans)
    t1 = max(s.end for s in spans)
    scale = (t1 - t0) / width if t1 > t0 else 1.0
    labels = [s.label + (" (undo)" if s.kind == "undo" else "") for s in spans]
    label_width = max(len(label) for label in labels)
    lines = []
    for span, label in zip(spans, labels, strict=True):
        block, ascii_block = _MARK[span.status]
        mark = ascii_block if ascii_only else block
        first = min(width - 1, math.floor((span.start - t0) / scale))
        last = max(first + 1, min(width, math.ceil((span.end - t0) / scale)))
        bar = " " * first + mark * (last - first) + " " * (width - last)
        why = f"  {span.cause.reason.value}" if span.cause is not None else ""
        lines.append(
            f"{label:<{label_width}} |{bar}| {span.start:g}..{span.end:g} {span.status.value}{why}"
        )
    axis = f"{'':<{label_width}}  {t0:<{width // 2}g}{t1:>{width - width // 2}g}"
    return "\n".join([*lines, axis])


_COLOURS = {
    Status.SUCCEEDED: "#4c9a2a",
    Status.FAILED: "#c0392b",
    Status.TIMED_OUT: "#e67e22",
    Status.CANCELLED: "#95a5a6",
    Status.SKIPPED: "#d5dbdb",
}


def plot_timeline(
    source: object, path: str | os.PathLike[str], *, title: str | None = None
) -> None:
    """Draw a run's timeline to *path* (PNG, SVG, … by extension) with matplotlib.

    Needs the ``plot`` extra: ``pip install matplotlib`` (from a checkout: ``pip install '.[plot]'``). Draws on a
    standalone :class:`matplotlib.figure.Figure`, never through ``pyplot``:
    the caller's backend, open figures and interactive state are untouched.

    Raises:
        ModuleNotFoundError: matplotlib is not installed.
    """
    check_type(path, (str, os.PathLike), "path")
    check_optional_str(title, "title")
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "plot_timeline needs matplotlib: pip install matplotlib"
        ) from error
    spans = timeline_spans(source)
    fig = Figure(figsize=(9, 0.45 * max(len(spans), 2) + 1.2))
    ax = fig.subplots()
    for row, span in enumerate(reversed(spans)):
        colour = _COLOURS[span.status]
        if span.kind == "skip":
            # Never ran: a zero-length bar would be invisible.
            ax.plot(
                [span.start], [row], marker="D", color=colour, markeredgecolor="black"
            )
            continue
        hatch = "//" if span.kind == "undo" else None
        ax.barh(
            row,
            max(span.duration, 1e-9),
            left=span.start,
            color=colour,
            hatch=hatch,
            edgecolor="black",
        )
    ax.set_yticks(range(len(spans)))
    ax.set_yticklabels(
        [s.label + (" (undo)" if s.kind == "undo" else "") for s in reversed(spans)]
    )
    ax.set_xlabel("trio clock (s)")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in _COLOURS.values()]
    ax.legend(
        handles,
        [s.value for s in _COLOURS],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        frameon=False,
    )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
