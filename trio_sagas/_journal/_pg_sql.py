"""The SQL of PostgresJournal, and the decoding of its rows.

Every write is ONE statement in autocommit mode: one round trip, one WAL
flush, no lock held between round trips, nothing half-done if the
connection drops. ``{s}`` stands for the quoted schema name. The server's
``clock_timestamp()`` is the only clock that decides a lease.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .._saga._journal import (
    JournalEntry,
    RunRecord,
    RunStatus,
    WorkerRecord,
)

REGISTER = """
INSERT INTO {s}.workers (worker_id, host, pid, started_at, renewed_at, expires_at)
VALUES (%(w)s, %(host)s, %(pid)s, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(lease)s))
"""

# Never resurrects: a lapsed (or deleted) row matches nothing.
RENEW = """
UPDATE {s}.workers SET renewed_at = clock_timestamp(),
       expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
 WHERE worker_id = %(w)s AND expires_at > clock_timestamp()
"""

RELEASE = "DELETE FROM {s}.workers WHERE worker_id = %(w)s"

EXPIRE = """
UPDATE {s}.workers SET expires_at = least(expires_at, clock_timestamp())
 WHERE worker_id = %(w)s
"""

# Several runs' creations and fenced appends in one statement (group
# commit). A creation whose writer's lease lapsed, or whose id is taken,
# inserts nothing; an append whose fence (worker, epoch, RUNNING, last_seq)
# or writer's lease fails matches no row: the other runs still commit. The
# final SELECT gives a verdict per request, with the run as it was, to say
# why one failed. A run is never both created and appended to in one batch.
# The requests travel as three JSON documents (bytes as hex): encoded by the
# json module's C code, where psycopg would dump 20 arrays element by element
# in Python (a third of a millisecond of CPU per statement).
WRITE_BATCH = """
WITH new AS (
  INSERT INTO {s}.runs (run_id, scene, status, worker_id, epoch, claims, state,
                        last_seq, created_at, updated_at)
  SELECT n.run_id, n.scene, 'running', n.worker_id, 1, 0, decode(n.state, 'hex'), -1,
         clock_timestamp(), clock_timestamp()
    FROM json_to_recordset(%(new)s::json)
         AS n(i int, run_id text, scene text, worker_id text, state text)
   WHERE EXISTS (SELECT 1 FROM {s}.workers w
                  WHERE w.worker_id = n.worker_id AND w.expires_at > clock_timestamp())
  ON CONFLICT (run_id) DO NOTHING
  RETURNING run_id
), req AS (
  SELECT * FROM json_to_recordset(%(req)s::json)
         AS req(i int, run_id text, worker_id text, epoch bigint, prev int, last int,
                state text, status text)
), fence AS (
  UPDATE {s}.runs r
     SET last_seq = coalesce(req.last, r.last_seq),
         state = coalesce(decode(req.state, 'hex'), r.state),
         status = coalesce(req.status, r.status),
         updated_at = clock_timestamp()
    FROM req
   WHERE r.run_id = req.run_id AND r.worker_id = req.worker_id
     AND r.epoch = req.epoch AND r.status = 'running'
     AND (req.prev IS NULL OR r.last_seq = req.prev)
     AND EXISTS (SELECT 1 FROM {s}.workers w
                  WHERE w.worker_id = req.worker_id AND w.expires_at > clock_timestamp())
  RETURNING r.run_id, r.epoch
), ins AS (
  INSERT INTO {s}.events (run_id, seq, epoch, kind, step, at, written_at, data, value)
  SELECT e.run_id, e.seq, fence.epoch, e.kind, e.step, e.at, clock_timestamp(),
         e.data, decode(e.value, 'hex')
    FROM json_to_recordset(%(ent)s::json)
         AS e(run_id text, seq int, kind text, step text, at float8, data text,
              value text)
    JOIN fence ON fence.run_id = e.run_id
  RETURNING 1
)
SELECT req.i, f.run_id IS NOT NULL, r.worker_id, r.epoch, r.status, r.last_seq,
       EXISTS (SELECT 1 FROM {s}.workers w
                WHERE w.worker_id = req.worker_id AND w.expires_at > clock_timestamp())
  FROM req LEFT JOIN fence f ON f.run_id = req.run_id
           LEFT JOIN {s}.runs r ON r.run_id = req.run_id
UNION ALL
SELECT n.i, c.run_id IS NOT NULL, NULL, NULL, NULL, NULL,
       EXISTS (SELECT 1 FROM {s}.workers w
                WHERE w.worker_id = n.worker_id AND w.expires_at > clock_timestamp())
  FROM json_to_recordset(%(new)s::json) AS n(i int, run_id text, worker_id text)
  LEFT JOIN new c ON c.run_id = n.run_id
"""

# What a run looks like now: to settle "did my commit land?" after the
# connection dropped with the COMMIT in flight.
FENCE_STATE = """
SELECT run_id, worker_id, epoch, status, last_seq FROM {s}.runs
 WHERE run_id = ANY(%(runs)s::text[])
"""

RUN_COLUMNS = """r.run_id, r.scene, r.status, r.state, r.worker_id, r.epoch, r.claims,
  extract(epoch FROM r.created_at)::float8, extract(epoch FROM r.updated_at)::float8,
  r.last_seq"""

# A claim bumps the epoch (fencing out the previous holder) and counts
# itself; a RUNNING run that used up max_claims goes to NEEDS_INTERVENTION
# (still with a new epoch, so a zombie cannot write to it). The claimer's
# own lease must be live. ``claim_token`` finds the claimed rows again when
# the connection drops with the COMMIT in flight.
_CLAIM_SET = """
UPDATE {s}.runs r SET
   epoch = r.epoch + 1,
   claims = CASE WHEN r.status = 'running' AND r.claims >= %(max)s
                 THEN r.claims ELSE r.claims + 1 END,
   status = CASE WHEN r.status = 'running' AND r.claims >= %(max)s
                 THEN 'needs_intervention' ELSE 'running' END,
   worker_id = CASE WHEN r.status = 'running' AND r.claims >= %(max)s
                    THEN r.worker_id ELSE %(me)s END,
   claim_token = %(token)s,
   updated_at = clock_timestamp()
  FROM target
 WHERE r.run_id = target.run_id
   AND EXISTS (SELECT 1 FROM {s}.workers me
                WHERE me.worker_id = %(me)s AND me.expires_at > clock_timestamp())
RETURNING """

# A subquery, not a join: when a concurrent claim committed first, READ
# COMMITTED rechecks this condition against the row's new version, and only
# a subquery is re-evaluated with the new worker_id (a joined workers row
# would stay the old, lapsed one, and the run would be claimed twice).
_LAPSED = """NOT EXISTS (SELECT 1 FROM {s}.workers w WHERE w.worker_id = r.worker_id
                       AND w.expires_at > clock_timestamp())
      AND r.updated_at <= clock_timestamp() - make_interval(secs => %(stale)s)"""

CLAIM_ONE = (
    """
WITH target AS (
  SELECT r.run_id FROM {s}.runs r
   WHERE r.run_id = %(run)s AND r.status = ANY(%(statuses)s::text[])
     AND (r.status <> 'running' OR ("""
    + _LAPSED
    + """))
   FOR UPDATE OF r SKIP LOCKED
)"""
    + _CLAIM_SET
    + RUN_COLUMNS
)

CLAIM_BATCH = (
    """
WITH target AS (
  SELECT r.run_id FROM {s}.runs r
   WHERE r.status = 'running' AND """
    + _LAPSED
    + """
   ORDER BY r.updated_at, r.run_id
   LIMIT %(limit)s
   FOR UPDATE OF r SKIP LOCKED
)"""
    + _CLAIM_SET
    + RUN_COLUMNS
)

CLAIMED_BY_TOKEN = (
    "SELECT " + RUN_COLUMNS + " FROM {s}.runs r WHERE r.claim_token = %(token)s"
)

GET_RUN = "SELECT " + RUN_COLUMNS + " FROM {s}.runs r WHERE r.run_id = %(run)s"

RUNS = "SELECT " + RUN_COLUMNS + " FROM {s}.runs r"
RUNS_WITH_STATUS = RUNS + " WHERE r.status = ANY(%(statuses)s::text[])"
RUNS_ORDER = " ORDER BY r.created_at, r.run_id"

EVENTS = """
SELECT seq, kind, step, at, extract(epoch FROM written_at)::float8, data, value
  FROM {s}.events WHERE run_id = %(run)s ORDER BY seq
"""

WORKERS = """
SELECT worker_id, host, pid, extract(epoch FROM started_at)::float8,
       extract(epoch FROM renewed_at)::float8, extract(epoch FROM expires_at)::float8
  FROM {s}.workers ORDER BY started_at, worker_id
"""

PRUNE = """
DELETE FROM {s}.runs
 WHERE status = ANY(%(statuses)s::text[])
   AND updated_at < clock_timestamp() - make_interval(secs => %(age)s)
"""

# Lapsed workers holding no RUNNING run are history: forget them.
PRUNE_WORKERS = """
DELETE FROM {s}.workers w
 WHERE w.expires_at < clock_timestamp() - make_interval(secs => %(age)s)
   AND NOT EXISTS (SELECT 1 FROM {s}.runs r
                    WHERE r.worker_id = w.worker_id AND r.status = 'running')
"""

_RECORD_FIELDS = frozenset(f.name for f in attrs.fields(RunRecord))


def run_record(row: tuple[Any, ...]) -> RunRecord:
    """A RunRecord from a row of :data:`RUN_COLUMNS`."""
    run_id, scene, status, state, worker, epoch, claims, created, updated, last = row
    running = status == RunStatus.RUNNING.value
    fields: dict[str, Any] = {
        "run_id": run_id,
        "scene": scene,
        "status": RunStatus(status),
        "state": None if state is None else bytes(state),
        "owner": worker if running else None,
        "worker": worker,
        "epoch": epoch,
        "claims": claims,
        "created_at": created,
        "updated_at": updated,
        "last_seq": last,
    }
    # The record gains worker/epoch/claims with the lease protocol; build
    # whichever shape this version of RunRecord has.
    return RunRecord(**{k: v for k, v in fields.items() if k in _RECORD_FIELDS})


def journal_entry(
    run_id: str, row: tuple[Any, ...], data: Mapping[str, Any]
) -> JournalEntry:
    """A JournalEntry from a row of :data:`EVENTS` (data already decoded)."""
    seq, kind, step, at, written_at, _, value = row
    return JournalEntry(
        run_id=run_id,
        seq=seq,
        kind=kind,
        step=step,
        at=at,
        data=data,
        value=None if value is None else bytes(value),
        written_at=written_at,
    )


def worker_record(row: tuple[Any, ...]) -> WorkerRecord:
    """A WorkerRecord from a row of :data:`WORKERS`."""
    worker_id, host, pid, started, renewed, expires = row
    return WorkerRecord(
        worker_id=worker_id,
        host=host,
        pid=pid,
        started_at=started,
        renewed_at=renewed,
        expires_at=expires,
    )
