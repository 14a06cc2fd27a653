"""The SQL of worker leases and epoch fencing for :class:`SQLiteJournal`.

Plain functions of a :class:`sqlite3.Connection`. The writes are jobs of
the journal's group-commit writer (:mod:`._writer`): each runs inside its
own savepoint of the batch's transaction, so none of them begins, commits
or rolls back; raising rolls back exactly its own changes. Leases run on the host's clock (:func:`time.time`): every
process sharing the file is on one machine. ``runs.owner`` holds the worker
id of the holder; ``runs.epoch`` is bumped by every claim; every append is
one UPDATE that checks holder, epoch, ``last_seq`` and the writer's live lease.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .._events import logger
from .._saga._journal import (
    ClaimedRun,
    Fence,
    JournalEntry,
    JournalError,
    LeaseLostError,
    RunClaimedError,
    RunDamagedError,
    RunIdInUseError,
    RunRecord,
    RunStatus,
    WorkerRecord,
)
from ._rows import decode_run, select_events

SCHEMA_V2 = (
    "ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
)
"""Version 1 -> 2. Runs of version 1 (per-call owner tokens) have no live
worker, so they are claimable at once, as they were."""

# One encoder for every entry's data (json.dumps would build one per call).
_JSON = json.JSONEncoder(separators=(",", ":"))

RUN_COLUMNS = (
    "run_id, scene, status, state, owner, created_at, updated_at, last_seq, "
    "epoch, claims"
)

# A RUNNING run whose holder has no live lease (row gone or expired).
_HOLDER_DEAD = (
    "NOT EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = runs.owner "
    "AND w.expires_at > :now)"
)


def run_record(row: tuple[Any, ...]) -> RunRecord:
    run_id, scene, status, state, owner, created, updated, last_seq, epoch, claims = row
    return RunRecord(
        run_id=run_id,
        scene=scene,
        status=RunStatus(status),
        state=None if state is None else bytes(state),
        owner=owner,
        created_at=created,
        updated_at=updated,
        last_seq=last_seq,
        epoch=epoch,
        claims=claims,
    )


def register(
    conn: sqlite3.Connection, worker_id: str, host: str, pid: int, lease: float
) -> str:
    now = time.time()
    conn.execute(
        "INSERT INTO workers (worker_id, host, pid, started_at, renewed_at, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (worker_id, host, pid, now, now, now + lease),
    )
    return worker_id


def renew(conn: sqlite3.Connection, worker_id: str, lease: float) -> bool:
    """Push the lease on; False when it had lapsed (never revived) or is gone."""
    now = time.time()
    return (
        conn.execute(
            "UPDATE workers SET renewed_at = ?, expires_at = ? "
            "WHERE worker_id = ? AND expires_at > ?",
            (now, now + lease, worker_id, now),
        ).rowcount
        == 1
    )


def workers(conn: sqlite3.Connection) -> tuple[WorkerRecord, ...]:
    rows = conn.execute(
        "SELECT worker_id, host, pid, started_at, renewed_at, expires_at "
        "FROM workers ORDER BY started_at"
    ).fetchall()
    return tuple(WorkerRecord(*row) for row in rows)


def expire(conn: sqlite3.Connection, worker_id: str) -> bool:
    now = time.time()
    return bool(
        conn.execute(
            "UPDATE workers SET expires_at = ? WHERE worker_id = ? AND expires_at > ?",
            (now, worker_id, now),
        ).rowcount
    )


def unregister(conn: sqlite3.Connection, worker_id: str) -> None:
    conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))


def create_run(
    conn: sqlite3.Connection,
    where: str,
    run_id: str,
    scene: str,
    worker: str,
    state: bytes,
) -> bool:
    """Insert the run held by *worker*; False (nothing written) when that
    worker's lease is not live, as the fenced appends check."""
    now = time.time()
    try:
        created = conn.execute(
            "INSERT INTO runs (run_id, scene, status, owner, state, "
            "created_at, updated_at, epoch) SELECT ?, ?, ?, ?, ?, ?, ?, 1 "
            "WHERE EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = ? "
            "AND w.expires_at > ?)",
            (
                *(run_id, scene, RunStatus.RUNNING.value, worker, state),
                now,
                now,
                worker,
                now,
            ),
        ).rowcount
    except sqlite3.IntegrityError:
        raise RunIdInUseError(
            f"run id {run_id!r} is already in journal {where}; run ids are never reused"
        ) from None
    return created == 1


def entry_rows(entries: Sequence[JournalEntry]) -> list[tuple[Any, ...]]:
    """The rows of *entries* (encoded on the caller's thread)."""
    return [
        (
            e.run_id,
            e.seq,
            e.kind,
            e.step,
            e.at,
            _JSON.encode(e.data),
            e.value,
        )
        for e in entries
    ]


def append(
    conn: sqlite3.Connection,
    where: str,
    fence: Fence,
    rows: list[tuple[Any, ...]],
    state: bytes | None,
    status: RunStatus | None,
) -> None:
    """The fenced append: one UPDATE checks everything, then the inserts."""
    now = time.time()
    first_seq = rows[0][1] if rows else None
    updated = conn.execute(
        "UPDATE runs SET updated_at = :now, "
        "last_seq = coalesce(:last_seq, last_seq), "
        "state = coalesce(:state, state), status = coalesce(:status, status), "
        "owner = CASE WHEN :status IS NULL OR :status = 'running' "
        "THEN owner ELSE NULL END "
        "WHERE run_id = :run_id AND owner = :worker AND epoch = :epoch "
        "AND status = 'running' "
        "AND (:first_seq IS NULL OR last_seq = :first_seq - 1) "
        "AND EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = :worker "
        "AND w.expires_at > :now)",
        {
            "now": now,
            "last_seq": rows[-1][1] if rows else None,
            "first_seq": first_seq,
            "state": state,
            "status": None if status is None else status.value,
            "run_id": fence.run_id,
            "worker": fence.worker,
            "epoch": fence.epoch,
        },
    ).rowcount
    if updated != 1:
        raise _refusal(conn, where, fence, first_seq, now)
    if rows:
        conn.executemany(
            "INSERT INTO events (run_id, seq, kind, step, at, written_at, "
            "data, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row[:5], now, *row[5:]) for row in rows],
        )


def _refusal(
    conn: sqlite3.Connection,
    where: str,
    fence: Fence,
    first_seq: int | None,
    now: float,
) -> JournalError:
    """Why a fenced append wrote nothing (its UPDATE changed no row)."""
    run = f"run {fence.run_id!r} in journal {where}"
    live = conn.execute(
        "SELECT 1 FROM workers WHERE worker_id = ? AND expires_at > ?",
        (fence.worker, now),
    ).fetchone()
    if live is None:
        return LeaseLostError(
            f"{run}: the lease of worker {fence.worker!r} lapsed; it may "
            "no longer write (the run is left to the worker that claims it)"
        )
    row = conn.execute(
        "SELECT owner, epoch, status, last_seq FROM runs WHERE run_id = ?",
        (fence.run_id,),
    ).fetchone()
    if row is not None and (row[0], row[1], row[2]) == (
        fence.worker,
        fence.epoch,
        RunStatus.RUNNING.value,
    ):
        return JournalError(
            f"entries for {run} do not continue it: its last seq is {row[3]}, "
            f"the first new seq is {first_seq} (nothing was written)"
        )
    return RunClaimedError(
        f"{run} is no longer held by worker {fence.worker!r} under epoch "
        f"{fence.epoch} (claimed by another worker, or finished)"
    )


def claim(
    conn: sqlite3.Connection,
    run_id: str,
    worker: str,
    wanted: Sequence[str],
    stale_after: float,
    max_claims: int,
) -> Fence | None:
    """Claim one run (see :meth:`Journal.claim`)."""
    if not wanted:
        return None
    now = time.time()
    marks = ", ".join(f":s{i}" for i in range(len(wanted)))
    params: dict[str, Any] = {f"s{i}": v for i, v in enumerate(wanted)}
    params.update(
        now=now,
        run_id=run_id,
        worker=worker,
        stale=now - stale_after,
        max_claims=max_claims,
    )
    claimable = (
        f"run_id = :run_id AND status IN ({marks}) AND (status != 'running' "
        f"OR ({_HOLDER_DEAD} AND updated_at <= :stale))"
    )
    # Claimed too often (every taker died): an operator must look at it. The
    # switch bumps the epoch, so the last taker's fence is refused (as in
    # PostgreSQL).
    conn.execute(
        "UPDATE runs SET status = 'needs_intervention', owner = NULL, "
        f"epoch = epoch + 1, updated_at = :now WHERE {claimable} "
        "AND status = 'running' AND claims >= :max_claims",
        params,
    )
    row = conn.execute(
        "UPDATE runs SET owner = :worker, status = 'running', "
        "epoch = epoch + 1, claims = claims + 1, updated_at = :now "
        f"WHERE {claimable} RETURNING epoch",
        params,
    ).fetchone()
    return None if row is None else Fence(run_id, worker, row[0])


def claim_batch(
    conn: sqlite3.Connection,
    worker: str,
    limit: int,
    stale_after: float,
    max_claims: int,
    where: str,
) -> tuple[tuple[RunRecord, Fence], ...]:
    """Claim up to *limit* claimable RUNNING runs, oldest first (the index on
    status and creation time finds them without listing every run), in one
    transaction. A run whose record cannot be read is skipped, not claimed
    (left RUNNING for an operator; ``scan_runs()``/``check()`` list it)."""
    claimed = claim_and_load(
        conn, worker, None, limit, stale_after, max_claims, where, load=False
    )
    return tuple((c.record, c.fence) for c in claimed)


def claim_and_load(
    conn: sqlite3.Connection,
    worker: str,
    run_ids: Sequence[str] | None,
    limit: int,
    stale_after: float,
    max_claims: int,
    where: str,
    *,
    load: bool = True,
) -> tuple[ClaimedRun, ...]:
    """Claim the claimable runs of *run_ids* (or, None, the oldest claimable
    RUNNING runs), at most *limit*, and read their entries, in one
    transaction of the writer.

    A run whose record or entries cannot be read is skipped before its
    claim (logged; ``scan_runs()``/``check()`` list it)."""
    out: list[ClaimedRun] = []
    if run_ids is not None:
        rows = []
        for run_id in run_ids:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is not None:
                rows.append(row)
        _claim_rows(
            conn, worker, rows, limit, stale_after, max_claims, where, load, out
        )
        return tuple(out)
    skip = 0
    while len(out) < limit:
        now = time.time()
        rows = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND "
            f"{_HOLDER_DEAD} AND updated_at <= :stale "
            "ORDER BY created_at, run_id LIMIT :limit OFFSET :skip",
            {
                "now": now,
                "stale": now - stale_after,
                "limit": limit - len(out),
                "skip": skip,
            },
        ).fetchall()
        if not rows:
            break
        skip += _claim_rows(
            conn, worker, rows, limit, stale_after, max_claims, where, load, out
        )
    return tuple(out)


def _claim_rows(
    conn: sqlite3.Connection,
    worker: str,
    rows: Sequence[tuple[Any, ...]],
    limit: int,
    stale_after: float,
    max_claims: int,
    where: str,
    load: bool,
    out: list[ClaimedRun],
) -> int:
    """Claim the runs of *rows* into *out* (until it holds *limit*); returns
    how many were damaged (skipped, unclaimed: they keep their place in the
    candidates' order)."""
    damaged = 0
    for row in rows:
        if len(out) >= limit:
            break
        try:
            decode_run(row, run_record, where)
            entries = select_events(conn, row[0], where) if load else ()
        except JournalError as exc:
            logger.warning("a claim skips a damaged run: %s", exc)
            damaged += 1
            continue
        run_id = row[0]
        fence = claim(conn, run_id, worker, ["running"], stale_after, max_claims)
        if fence is not None:
            claimed = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            out.append(ClaimedRun(run_record(claimed), fence, entries))
    return damaged


def read_events(
    conn: sqlite3.Connection, run_ids: Sequence[str], where: str
) -> tuple[tuple[JournalEntry, ...] | RunDamagedError, ...]:
    """Each run's entries, or its damage, in one read."""
    out: list[tuple[JournalEntry, ...] | RunDamagedError] = []
    for run_id in run_ids:
        try:
            out.append(select_events(conn, run_id, where))
        except RunDamagedError as exc:
            out.append(exc)
    return tuple(out)


def prune(
    conn: sqlite3.Connection, statuses: Sequence[str], cutoff: float, limit: int
) -> int:
    """Delete at most *limit* runs with *statuses* last written at *cutoff* or
    before (host clock), with their entries; returns how many were deleted."""
    if not statuses:
        return 0
    marks = ", ".join("?" * len(statuses))
    chosen = conn.execute(
        f"SELECT run_id FROM runs WHERE status IN ({marks}) AND updated_at <= ? "
        "LIMIT ?",
        (*statuses, cutoff, limit),
    ).fetchall()
    conn.executemany("DELETE FROM events WHERE run_id = ?", chosen)
    conn.executemany("DELETE FROM runs WHERE run_id = ?", chosen)
    return len(chosen)
