"""``trio-sagas check``: is every byte of a SQLite journal readable?

Reads the file directly with :mod:`sqlite3`, read-only, so a damaged
journal is examined without being changed: SQLite's ``integrity_check``,
then every run row (known status, state decodable by the codec, ``last_seq``
matching its entries) and every entry (JSON data, ``seq`` without gaps,
result values decodable). Every damaged run is listed with its first fault.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
from collections.abc import Iterator
from typing import final

import attrs

from .._saga import Codec, RunStatus


@final
@attrs.frozen
class Damage:
    """One problem: the run it is in (None for the file as a whole), and what."""

    run_id: str | None
    problem: str


def _connect(path: pathlib.Path) -> sqlite3.Connection:
    # mode=ro: never create, migrate or repair what we examine.
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def check_file(path: pathlib.Path, codec: Codec) -> list[Damage]:
    """Every problem found in the journal at *path* (empty: healthy)."""
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        return [Damage(None, f"cannot open: {exc}")]
    try:
        return list(_check(conn, codec))
    except sqlite3.DatabaseError as exc:
        return [Damage(None, f"not readable as a SQLite database: {exc}")]
    finally:
        conn.close()


def _check(conn: sqlite3.Connection, codec: Codec) -> Iterator[Damage]:
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    problems = [r[0] for r in rows if r[0] != "ok"]
    for problem in problems:
        yield Damage(None, f"integrity_check: {problem}")
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    if not {"runs", "events"} <= tables:
        yield Damage(None, "not a trio-sagas journal (no runs/events tables)")
        return
    seen: set[str] = set()
    runs = conn.execute(
        "SELECT run_id, status, state, last_seq FROM runs ORDER BY created_at, run_id"
    ).fetchall()
    for run_id, status, state, last_seq in runs:
        seen.add(run_id)
        problem = _run_problem(conn, codec, run_id, status, state, last_seq)
        if problem is not None:
            yield Damage(run_id, problem)
    orphans = conn.execute(
        "SELECT DISTINCT run_id FROM events WHERE run_id NOT IN (SELECT run_id FROM runs)"
    ).fetchall()
    for (run_id,) in orphans:
        if run_id not in seen:
            yield Damage(run_id, "entries without a run record")


def _run_problem(
    conn: sqlite3.Connection,
    codec: Codec,
    run_id: str,
    status: object,
    state: object,
    last_seq: object,
) -> str | None:
    if status not in {s.value for s in RunStatus}:
        return f"unknown status {status!r}"
    if state is not None:
        problem = _decode(codec, state, "state")
        if problem is not None:
            return problem
    entries = conn.execute(
        "SELECT seq, kind, data, value FROM events WHERE run_id = ? ORDER BY seq",
        (run_id,),
    ).fetchall()
    for expected, (seq, kind, data, value) in enumerate(entries):
        if seq != expected:
            return f"entry {expected} missing (next is {seq})"
        try:
            decoded = json.loads(data)
        except (TypeError, ValueError) as exc:
            return f"entry {seq} ({kind}): data is not JSON: {exc}"
        if not isinstance(decoded, dict):
            return f"entry {seq} ({kind}): data is not a JSON object"
        if value is not None:
            problem = _decode(codec, value, f"entry {seq} ({kind}) value")
            if problem is not None:
                return problem
    count = len(entries)
    if last_seq != count - 1:
        return f"last_seq is {last_seq!r} but {count} entries are stored"
    return None


def _decode(codec: Codec, data: object, what: str) -> str | None:
    if not isinstance(data, bytes):
        return f"{what} is {type(data).__name__}, not bytes"
    try:
        codec.decode(data)
    except Exception as exc:
        return f"{what} does not decode: {type(exc).__name__}: {exc}"
    return None
