"""Timelines: any run's work as spans on the trio clock, drawn as a Gantt.

:func:`timeline_spans` turns what a component reports into :class:`Span`
records; :func:`render_timeline` draws them as plain text (no dependency);
:func:`plot_timeline` writes a PNG/SVG with matplotlib (the ``plot`` extra).

Sources understood:

* a :class:`SagaResult` (or its events): one span per act and per undo;
* a journaled run's entries (``await journal.events(run_id)``): the same,
  for every process that worked on the run -- a resumed run shows the dead
  process's work, a mark, then the new one's;
* anything with ``outcomes`` — an :class:`ErrGroup`, an ignition result —
  as a sequence or a mapping of :class:`Outcome`;
* a run read back from a journal (its :class:`JournalEntry` sequence, see
  :func:`timeline_from_entries`): one span per act and per undo;
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
from ._journal_entries import timeline_from_entries
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


_RUN_END = {
    "ActCompleted": Status.SUCCEEDED,
    "ActFailed": Status.FAILED,
    "ActCancelled": Status.CANCELLED,
}
_UNDO_END = {
    "CompensationStepCompleted": Status.SUCCEEDED,
    "CompensationStepFailed": Status.FAILED,
}


def _from_journal(entries: Sequence[JournalEntry]) -> list[Span]:
    """A journaled run's spans, every process's: each process's trio clock
    has its own origin, so each after a ``RunResumed`` is drawn from where
    the one before ended, after a mark (its outage is not shown); work a
    crash cut short ends CANCELLED at its process's last write."""
    spans: list[tuple[int, Span]] = []  # (process, span)
    open_runs: dict[str, float] = {}
    open_undos: dict[str, float] = {}
    process = 0
    shift = last = 0.0
    for entry in entries:
        if entry.kind == "RunResumed":
            # Work the crash cut short: drawn up to the process's last write.
            for step, start in open_runs.items():
                spans.append((process, Span(step, start, last, Status.CANCELLED)))
            for step, start in open_undos.items():
                spans.append(
                    (process, Span(step, start, last, Status.CANCELLED, "undo"))
                )
            open_runs.clear()
            open_undos.clear()
            process += 1
            shift = last - entry.at
            owner = str(entry.data.get("owner"))[:8]  # enough to tell workers apart
            mark = Span(f"resumed by {owner}", last, last, Status.SKIPPED, "skip")
            spans.append((process, mark))
        at = entry.at + shift
        last = max(last, at)
        if entry.kind == "ActStarted":
            open_runs[entry.step] = at
        elif entry.kind in _RUN_END and entry.step in open_runs:
            start = open_runs.pop(entry.step)
            spans.append((process, Span(entry.step, start, at, _RUN_END[entry.kind])))
        elif entry.kind == "CompensationStepStarted":
            open_undos[entry.step] = at
        elif entry.kind in _UNDO_END and entry.step in open_undos:
            start = open_undos.pop(entry.step)
            span = Span(entry.step, start, at, _UNDO_END[entry.kind], "undo")
            spans.append((process, span))
    # Gantt order; at one instant, a dead process's work before the mark,
    # the mark before the new process's work.
    spans.sort(
        key=lambda ps: (
            ps[1].start,
            ps[0],
            ps[1].kind != "skip",
            ps[1].end,
            ps[1].label,
        )
    )
    return [span for _, span in spans]


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
        # A past run read back from a journal: a resumed one with the mark
        # where each new process took over, any other as its entries say.
        if any(entry.kind == "RunResumed" for entry in source):
            return _from_journal(source)
        return _from_records(timeline_from_entries(source))
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
