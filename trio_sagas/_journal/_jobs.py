"""The SQLite journal's hot write path: an append, encoded and handed over.

A saga's step costs one append (the completion of one act and the intent of
the next). Everything that can happen on the caller's side happens there,
before the hand-off: the entries' data is encoded to JSON by one reused C
encoder (``json.JSONEncoder.encode`` builds a new one per call), and the job
the writer thread runs is one small object (:class:`Append`), not a closure
with a cell per captured variable -- the write of a thousand concurrent runs
is a thousand of them, all alive until their batch commits.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from .._saga._journal import Fence, JournalEntry, RunStatus
from . import _sqlite_leases as leases
from ._sqlite_config import Settings

BATCHED: Final = sqlite3.sqlite_version_info >= (3, 35)
"""Whether this SQLite has ``UPDATE ... FROM`` and ``RETURNING`` (3.35): then
a batch's appends are written by a few statements (:func:`append_many`)."""

_CHUNKS: Final = (64, 32, 16, 8, 4, 2, 1)
"""Rows per statement: a few statement texts (all cached), few statements."""

_JSON = json.JSONEncoder(separators=(",", ":"))

_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
if _c_encoder is not None:
    # The encoder json.JSONEncoder.encode builds at each call (same output),
    # built once. markers=None: no cycle check, and none is needed -- the
    # recorder turns every field into plain JSON values first.
    _iterencode = _c_encoder(
        None,
        _JSON.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )

    def encode_data(data: Mapping[str, Any]) -> str:
        """An entry's data as compact JSON text."""
        return "".join(_iterencode(data, 0)) if data else "{}"

else:  # pragma: no cover  (an interpreter without the C accelerator)
    encode_data: Callable[[Mapping[str, Any]], str] = _JSON.encode  # type: ignore[no-redef]


ROW: Final = 7
"""Values per row in :attr:`Append.rows`: run_id, seq, kind, step, at, data, value."""


def encode_rows(
    settings: Settings, fence: Fence, entries: Sequence[JournalEntry]
) -> list[Any]:
    """The ``events`` rows of an append, flat (:data:`ROW` values a row),
    encoded on the caller's side (the entries are the caller's), each value
    checked to be bytes. Flat: one object per append waits for the batch,
    not one more per row."""
    encode = encode_data
    rows: list[Any] = []
    for e in entries:
        value: object = e.value
        if value is not None and not isinstance(value, bytes):
            settings.check_encoded(
                value, f"run {fence.run_id!r}: the result at seq {e.seq}"
            )
        rows += (e.run_id, e.seq, e.kind, e.step, e.at, encode(e.data), value)
    return rows


class Append:
    """The job of one fenced append (see :func:`._sqlite_leases.append`)."""

    __slots__ = ("fence", "rows", "state", "status", "where")

    def __init__(
        self,
        where: str,
        fence: Fence,
        rows: list[Any],
        state: bytes | None,
        status: RunStatus | None,
    ) -> None:
        self.where = where
        self.fence = fence
        self.rows = rows
        self.state = state
        self.status = status

    def __call__(self, conn: sqlite3.Connection) -> None:
        flat = self.rows
        rows = [tuple(flat[i : i + ROW]) for i in range(0, len(flat), ROW)]
        leases.append(conn, self.where, self.fence, rows, self.state, self.status)


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    out: list[Sequence[Any]] = []
    start = 0
    for size in _CHUNKS:
        while len(items) - start >= size:
            out.append(items[start : start + size])
            start += size
    return out


_FENCED_UPDATE = (
    # The fence of leases.append, for many runs at once: the run is held by
    # the worker under the epoch and RUNNING, the entries continue last_seq,
    # and the worker's lease is live. Keep the two in step.
    "WITH v (run_id, worker, epoch, first_seq, last_seq, state, status) AS "
    "(VALUES {values}) "
    "UPDATE runs SET updated_at = ?, "
    "last_seq = coalesce(v.last_seq, runs.last_seq), "
    "state = coalesce(v.state, runs.state), "
    "status = coalesce(v.status, runs.status), "
    "owner = CASE WHEN v.status IS NULL OR v.status = 'running' "
    "THEN runs.owner ELSE NULL END "
    "FROM v WHERE runs.run_id = v.run_id AND runs.owner = v.worker "
    "AND runs.epoch = v.epoch AND runs.status = 'running' "
    "AND (v.first_seq IS NULL OR runs.last_seq = v.first_seq - 1) "
    "AND EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = v.worker "
    "AND w.expires_at > ?) "
    "RETURNING runs.run_id"
)
_INSERT = (
    "INSERT INTO events (run_id, seq, kind, step, at, data, value, written_at) "
    "VALUES {values}"
)
_UPDATE_SQL = {
    n: _FENCED_UPDATE.format(values=", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n))
    for n in _CHUNKS
}
_INSERT_SQL = {
    n: _INSERT.format(values=", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * n))
    for n in _CHUNKS
}


def append_many(conn: sqlite3.Connection, jobs: Sequence[Append]) -> set[str] | None:
    """Several runs' appends (distinct runs) in a few statements.

    One fenced UPDATE per chunk says which runs accepted their append; their
    entries go in by multi-row INSERTs. Each statement is one hand-over to
    SQLite, instead of four per write: with a thousand runs writing, the
    writer thread is not left waiting for the interpreter lock between them.

    Returns the ids of the runs whose append is written; a refused append
    wrote nothing (run it alone to learn why). None: something failed (say,
    a duplicate ``seq``), and a savepoint took back everything these jobs
    wrote: run them one by one.
    """
    now = time.time()
    accepted: set[str] = set()
    conn.execute("SAVEPOINT appends")
    try:
        for chunk in _chunks(jobs):
            params: list[Any] = []
            for job in chunk:
                rows = job.rows
                fence = job.fence
                status = job.status
                params += (
                    fence.run_id,
                    fence.worker,
                    fence.epoch,
                    rows[1] if rows else None,  # the first seq
                    rows[1 - ROW] if rows else None,  # the last seq
                    job.state,
                    None if status is None else status.value,
                )
            params += (now, now)
            for (run_id,) in conn.execute(_UPDATE_SQL[len(chunk)], params):
                accepted.add(run_id)
        values: list[Any] = []  # ROW + 1 a row: written_at last
        for job in jobs:
            if job.fence.run_id in accepted:
                rows = job.rows
                for start in range(0, len(rows), ROW):
                    values += rows[start : start + ROW]
                    values.append(now)
        start = 0
        for chunk in _chunks(range(len(values) // (ROW + 1))):
            end = start + len(chunk) * (ROW + 1)
            conn.execute(_INSERT_SQL[len(chunk)], values[start:end])
            start = end
    except Exception:
        # Whatever it was (a duplicate seq, a value SQLite cannot bind), each
        # job alone will say which one it concerns.
        if not conn.in_transaction:
            raise  # SQLite ended the transaction: the batch is lost
        conn.execute("ROLLBACK TO appends")
        conn.execute("RELEASE appends")
        return None
    conn.execute("RELEASE appends")
    return accepted
