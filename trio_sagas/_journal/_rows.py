"""Reading rows back: every damaged value is a :exc:`JournalError` naming its run.

A journal file can be damaged below SQLite's notice (a flipped byte inside a
value, a row written by a buggy tool): an unknown status, event data that
is not JSON, a text where a number belongs. None of that may escape as a
bare :exc:`ValueError` or :exc:`json.JSONDecodeError` from ``runs()``, and
one damaged run must not hide the others: :meth:`SQLiteJournal.scan_runs`
returns the readable runs and, separately, a :class:`DamagedRun` for each
run that cannot be read, so recovery can report it and go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from .._saga._journal import (
    JournalEntry,
    JournalError,
    RunDamagedError,
    RunRecord,
    RunStatus,
)


class BadText(str):
    """A TEXT value that was not valid UTF-8 (shown with backslash escapes)."""

    __slots__ = ()


def decode_text(data: bytes) -> str:
    """The connections' ``text_factory``: invalid UTF-8 becomes :class:`BadText`.

    sqlite3's default raises :exc:`UnicodeDecodeError` for the whole query;
    this way only the row holding the value is reported as damaged.
    """
    try:
        return data.decode()
    except UnicodeDecodeError:
        return BadText(data.decode(errors="backslashreplace"))


def _bad_text(row: tuple[Any, ...]) -> str | None:
    for value in row:
        if isinstance(value, BadText):
            return f"the text {value!r} is not valid UTF-8"
    return None


@attrs.frozen
class DamagedRun:
    """A run whose record cannot be read back.

    Attributes:
        run_id: The run's id (its ``repr`` if the id itself is damaged).
        scene: The scene name if it is readable, else None.
        reason: What is wrong, for the operator.
    """

    run_id: str
    scene: str | None
    reason: str


def _name(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def decode_run(
    row: tuple[Any, ...], build: Callable[[tuple[Any, ...]], RunRecord], where: str
) -> RunRecord:
    """``build(row)``, with every problem a :exc:`JournalError` naming the run."""
    run_id = row[0]
    try:
        problem = _bad_text(row)
        if problem is None:
            record = build(row)
            problem = _run_problem(record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        problem = str(exc)
    if problem is not None:
        raise RunDamagedError(
            f"run {_name(run_id)!r} in {where} is damaged and cannot be read: {problem}",
            _name(run_id),
        )
    return record


def _run_problem(record: Any) -> str | None:
    # Any: the record was built from raw row values, whatever its annotations say.
    if not isinstance(record.run_id, str):
        return f"its id is {record.run_id!r}, not text"
    if not isinstance(record.scene, str):
        return f"its scene name is {record.scene!r}, not text"
    if record.state is not None and not isinstance(record.state, bytes):
        return f"its state is {type(record.state).__name__}, not bytes"
    for field in ("created_at", "updated_at"):
        value = getattr(record, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"its {field} is {value!r}, not a time"
    if isinstance(record.last_seq, bool) or not isinstance(record.last_seq, int):
        return f"its last_seq is {record.last_seq!r}, not an integer"
    return None


def damaged_run(row: tuple[Any, ...], error: JournalError) -> DamagedRun:
    """The report for a run row :func:`decode_run` refused."""
    scene = row[1] if isinstance(row[1], str) else None
    return DamagedRun(_name(row[0]), scene, str(error))


def select_run(
    conn: Any,
    query: str,
    run_id: str,
    build: Callable[[tuple[Any, ...]], RunRecord],
    where: str,
) -> RunRecord | None:
    """One run by id (*query* has one parameter), or None."""
    row = conn.execute(query, (run_id,)).fetchone()
    return None if row is None else decode_run(row, build, where)


def runs_where(
    status: RunStatus | Iterable[RunStatus] | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause and its parameters for ``runs(status=...)``.

    None: every run. Else the runs with one of the statuses, and every run
    whose status this version does not know (it may be one to recover).
    """
    if status is None:
        return "", []
    known = [s.value for s in RunStatus]
    wanted = (
        [status.value]
        if isinstance(status, RunStatus)
        else [RunStatus(s).value for s in status]
    )
    where = (
        f"WHERE status IN ({', '.join('?' * len(wanted))}) "
        f"OR status NOT IN ({', '.join('?' * len(known))})"
    )
    return where, [*wanted, *known]


def damaged_error(damaged: Sequence[DamagedRun]) -> JournalError:
    """What ``runs()`` raises for damaged runs: the first, and how many more."""
    more = f" (and {len(damaged) - 1} more damaged runs)" if len(damaged) > 1 else ""
    return JournalError(damaged[0].reason + more)


def select_runs(
    conn: Any,
    query: str,
    params: Sequence[Any],
    build: Callable[[tuple[Any, ...]], RunRecord],
    where: str,
) -> tuple[tuple[RunRecord, ...], tuple[DamagedRun, ...]]:
    """The readable runs *query* selects, and the damaged ones apart."""
    records: list[RunRecord] = []
    damaged: list[DamagedRun] = []
    for row in conn.execute(query, params).fetchall():
        try:
            records.append(decode_run(row, build, where))
        except JournalError as exc:
            damaged.append(damaged_run(row, exc))
    return tuple(records), tuple(damaged)


_EVENTS = (
    "SELECT seq, kind, step, at, written_at, data, value FROM events "
    "WHERE run_id = ? ORDER BY seq"
)


def select_events(conn: Any, run_id: str, where: str) -> tuple[JournalEntry, ...]:
    """The run's entries in ``seq`` order, each checked."""
    rows = conn.execute(_EVENTS, (run_id,)).fetchall()
    return tuple(decode_entry(run_id, row, where) for row in rows)


def decode_entry(run_id: str, row: tuple[Any, ...], where: str) -> JournalEntry:
    """One ``events`` row (seq, kind, step, at, written_at, data, value)."""
    seq, kind, step, at, written_at, data, value = row
    try:
        problem = _bad_text(row)
        if problem is not None:
            raise ValueError(problem)
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ValueError(f"seq is {seq!r}, not an integer")
        if not isinstance(kind, str) or not isinstance(step, str):
            raise ValueError(f"kind/step are {kind!r}/{step!r}, not text")
        for name, time in (("at", at), ("written_at", written_at)):
            if isinstance(time, bool) or not isinstance(time, (int, float)):
                raise ValueError(f"{name} is {time!r}, not a time")
        if not isinstance(data, (str, bytes)):
            raise ValueError(f"data is {type(data).__name__}, not JSON text")
        fields = json.loads(data)
        if not isinstance(fields, dict):
            raise ValueError(f"data is {type(fields).__name__}, not a JSON object")
        if value is not None and not isinstance(value, bytes):
            raise ValueError(f"value is {type(value).__name__}, not bytes")
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError too
        raise RunDamagedError(
            f"run {run_id!r} in {where} is damaged: its event at seq {seq!r} "
            f"cannot be read: {exc}",
            _name(run_id),
        ) from exc
    return JournalEntry(
        run_id=run_id,
        seq=seq,
        kind=kind,
        step=step,
        at=at,
        data=fields,
        value=value,
        written_at=written_at,
    )


@attrs.frozen
class JournalCheck:
    """What :meth:`SQLiteJournal.check` found.

    Attributes:
        integrity: SQLite's findings (``PRAGMA integrity_check``); empty when
            the file is sound.
        damaged: Every run whose record or one of whose events cannot be read.
        runs: How many runs were read.
        events: How many events were read.
    """

    integrity: tuple[str, ...]
    damaged: tuple[DamagedRun, ...]
    runs: int
    events: int

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.integrity and not self.damaged


def check_rows(
    conn: Any,
    run_query: str,
    build: Callable[[tuple[Any, ...]], RunRecord],
    where: str,
) -> JournalCheck:
    """The structure check, then every run row and every event decoded."""
    rows = conn.execute("PRAGMA integrity_check(100)").fetchall()
    integrity = tuple(str(r[0]) for r in rows if r[0] != "ok")
    damaged: list[DamagedRun] = []
    runs = events = 0
    for row in conn.execute(run_query).fetchall():
        runs += 1
        try:
            record = decode_run(row, build, where)
            for entry in conn.execute(_EVENTS, (record.run_id,)).fetchall():
                events += 1
                decode_entry(record.run_id, entry, where)
        except JournalError as exc:
            damaged.append(damaged_run(row, exc))
    return JournalCheck(integrity, tuple(damaged), runs, events)
