"""SQLiteJournal: the embedded default journal (stdlib :mod:`sqlite3`).

One connection per journal, used by one worker thread at a time: every call
runs in :func:`trio.to_thread.run_sync` through a capacity-1 limiter, so the
event loop never waits on the disk and calls never interleave inside SQLite.
A thread call is not abandoned when its caller is cancelled: a write that
began finishes (or fails) before the cancellation is delivered, so the
caller always knows whether it happened.

Durability: WAL mode with ``synchronous=FULL`` by default, so a committed
write survives a power cut. ``synchronous="NORMAL"`` keeps every write that
committed before a *process* crash (``kill -9``) but may lose the last
writes on power loss or an OS crash, for fewer syncs.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, TypeVar, final

import trio

from .._saga._journal import (
    DEFAULT_LEASE,
    DEFAULT_MAX_CLAIMS,
    Codec,
    Fence,
    JournalEntry,
    JournalError,
    JournalSchemaError,
    JSONCodec,
    LeaseLostError,
    RunRecord,
    RunStatus,
    WorkerRecord,
)
from .._saga._lease import LeaseKeeper
from .._validate import (
    check_duration,
    check_enum,
    check_int,
    check_label,
    check_timeout,
)
from . import _sqlite_leases as leases

T = TypeVar("T")

SCHEMA_VERSION = 2
"""The schema this version writes; ``PRAGMA user_version`` holds a file's."""

APPLICATION_ID = 0x74534A31  # "tSJ1": marks the file as a trio-sagas journal

_SCHEMA_V1 = (
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        scene TEXT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT,
        state BLOB,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT -1
    )""",
    "CREATE INDEX runs_by_status ON runs (status, created_at)",
    """CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        step TEXT NOT NULL,
        at REAL NOT NULL,
        written_at REAL NOT NULL,
        data TEXT NOT NULL,
        value BLOB,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID""",
)

# Migrations from version N to N + 1, applied in one transaction each.
_MIGRATIONS: dict[int, tuple[str, ...]] = {0: _SCHEMA_V1, 1: leases.SCHEMA_V2}


@final
class SQLiteJournal:
    """A saga journal in one SQLite file.

    The file is opened (and created, with its schema) on first use, in a
    worker thread. ``with``/``async with`` or :meth:`close` closes it.

    Args:
        path: The database file (``str`` or :class:`os.PathLike`).
        codec: Encodes states and act results; default :class:`JSONCodec`.
        create: Create the file if it does not exist (default). With False a
            missing file is a :exc:`JournalError` — use it for recovery tools,
            so that a wrong path is not silently a fresh, empty journal.
        synchronous: ``"FULL"`` (default: every commit synced) or
            ``"NORMAL"`` (WAL: safe against process crashes, not power loss).
        busy_timeout: Seconds to wait for another connection's lock before
            a write fails with :exc:`JournalError`.
        lease: Seconds this worker's lease lasts (renewed every third of
            that while a run or ``async with journal`` holds it). Leases run
            on the host's clock: every process sharing the file is on it.
        max_claims: A run claimed (taken over) this many times goes to
            NEEDS_INTERVENTION instead of being claimed again.

    Raises:
        TypeError, ValueError: bad arguments (at construction).
        JournalError: on first use, a file that cannot be opened, is not a
            SQLite database, or is locked for longer than *busy_timeout*.
        JournalSchemaError: on first use, a file written by a newer version
            or another application.
    """

    __slots__ = (
        "_closed",
        "_cm",
        "_codec",
        "_conn",
        "_create",
        "_keeper",
        "_lease",
        "_limiter",
        "_lock",
        "_max_claims",
        "_nursery",
        "_path",
        "_synchronous",
        "_timeout",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: Codec | None = None,
        create: bool = True,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
        lease: float = DEFAULT_LEASE,
        max_claims: int = DEFAULT_MAX_CLAIMS,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
        self._path = pathlib.Path(path)
        if codec is None:
            codec = JSONCodec()
        elif not isinstance(codec, Codec):
            raise TypeError(
                f"codec must have encode(value) -> bytes and decode(bytes), got {codec!r}"
            )
        self._codec = codec
        if not isinstance(create, bool):
            raise TypeError(f"create must be a bool, got {create!r}")
        self._create = create
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(
                f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            )
        self._synchronous = synchronous
        timeout = check_timeout(busy_timeout, "busy_timeout", allow_none=False)
        assert timeout is not None
        if math.isinf(timeout):
            raise ValueError(f"busy_timeout must be finite, got {busy_timeout!r}")
        self._timeout = timeout
        self._lease = check_duration(lease, "lease", allow_zero=False)
        self._max_claims = check_int(max_claims, "max_claims", minimum=1)
        self._keeper = LeaseKeeper(
            self._lease,
            self._register,
            self._renew,
            expire=self._expire,
            host_clock=True,
        )
        self._nursery: trio.Nursery | None = None
        self._cm: Any = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"trio_sagas.SQLiteJournal({str(self._path)!r})"

    @property
    def path(self) -> pathlib.Path:
        """The database file."""
        return self._path

    @property
    def codec(self) -> Codec:
        """Encodes states and act results."""
        return self._codec

    def __enter__(self) -> SQLiteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def lease(self) -> float:
        """Seconds this worker's lease lasts."""
        return self._lease

    @property
    def worker_id(self) -> str:
        """This worker's current registration; empty until its first use."""
        return self._keeper.worker_id or ""

    def hold(self) -> AbstractAsyncContextManager[trio.CancelScope]:
        """Keep this worker's lease renewed while the block runs (see
        :meth:`trio_sagas.Journal.hold`)."""
        return self._keeper.hold()

    async def __aenter__(self) -> SQLiteJournal:
        """Register this worker and renew its lease until the block ends."""
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        try:
            await self._nursery.start(self._keeper.heartbeat)
        except BaseException:
            self._keeper.stop()
            await self._cm.__aexit__(None, None, None)
            raise
        self._keeper.beating = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._keeper.stop()
        if self._nursery is not None:
            await self._cm.__aexit__(None, None, None)
            self._nursery = None
        worker_id = self._keeper.worker_id
        try:
            if worker_id is not None and not self._closed:
                with trio.CancelScope(shield=True):
                    await self._call(lambda conn: leases.unregister(conn, worker_id))
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection; later calls raise :exc:`JournalError`."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- plumbing ---------------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self._locked, fn, limiter=self._limiter)

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise JournalError(f"journal {str(self._path)!r} is closed")
            try:
                return fn(self._connection())
            except sqlite3.Error as exc:
                conn = self._conn
                if conn is not None and conn.in_transaction:
                    conn.rollback()
                raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> JournalError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return JournalError(
                f"journal {str(self._path)!r} is locked by another connection "
                f"(waited {self._timeout} s): {text}"
            )
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text
        ):
            return JournalError(
                f"journal {str(self._path)!r} is corrupt or not a SQLite database: {text}"
            )
        return JournalError(f"journal {str(self._path)!r}: {text}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        path = self._path
        if not self._create and not path.exists():
            raise JournalError(
                f"journal {str(path)!r} does not exist (create=False); is the path right?"
            )
        if not path.parent.is_dir():
            raise JournalError(
                f"journal {str(path)!r}: directory {str(path.parent)!r} does not exist"
            )
        try:
            conn = sqlite3.connect(
                path,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        where = f"journal {str(self._path)!r}"
        if application_id not in (0, APPLICATION_ID) or (
            application_id == 0 and tables
        ):
            raise JournalSchemaError(
                f"{where} is a SQLite database of another application "
                f"(application_id={application_id}, {tables} table(s)); refusing to use it"
            )
        if version > SCHEMA_VERSION:
            raise JournalSchemaError(
                f"{where} has schema version {version}, newer than this "
                f"trio-sagas understands ({SCHEMA_VERSION}); upgrade trio-sagas"
            )
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{where}: cannot switch to WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            while version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                # Re-read under the write lock: another process may have migrated.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    for statement in _MIGRATIONS[version]:
                        conn.execute(statement)
                    version += 1
                    conn.execute(f"PRAGMA user_version = {version}")
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise self._error(exc) from exc

    # -- leases -----------------------------------------------------------------

    async def _register(self) -> str:
        worker_id, host, pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        return await self._call(
            lambda conn: leases.register(conn, worker_id, host, pid, self._lease)
        )

    async def _renew(self, worker_id: str) -> bool:
        return await self._call(lambda conn: leases.renew(conn, worker_id, self._lease))

    async def _expire(self, worker_id: str) -> bool:
        return await self._call(lambda conn: leases.expire(conn, worker_id))

    async def workers(self) -> tuple[WorkerRecord, ...]:
        """Every worker row, live and lapsed."""
        return await self._call(leases.workers)

    async def expire_worker(self, worker_id: str) -> bool:
        """Operator: that worker is dead; its lease lapses now."""
        check_label(worker_id, "worker_id")
        return await self._call(lambda conn: leases.expire(conn, worker_id))

    # -- the Journal protocol ---------------------------------------------------

    async def create_run(self, run_id: str, *, scene: str, state: bytes) -> Fence:
        """Create a RUNNING run held by this worker (epoch 1).

        Raises:
            RunIdInUseError: the id is taken (by a run of any status).
            LeaseLostError: this worker's lease lapsed, twice, before the insert.
        """
        check_label(run_id, "run_id")
        check_label(scene, "scene")
        where = repr(str(self._path))
        for attempt in range(2):
            worker = await self._keeper.fresh()
            create = functools.partial(
                leases.create_run,
                where=where,
                run_id=run_id,
                scene=scene,
                worker=worker,
                state=state,
            )
            if await self._call(create):
                return Fence(run_id, worker, 1)
            if attempt == 0:
                # The journal says this worker's lease lapsed (an operator
                # expired it): never revive it; create under a new id.
                await self._keeper.abandon(worker, "the journal refused create_run")
        raise LeaseLostError(
            f"worker {worker!r} lost its lease before creating run {run_id!r}"
        )

    async def append(
        self,
        fence: Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        """Atomically add *entries*, replace the state, set the status.

        One UPDATE checks the fence (worker, epoch, RUNNING), that the
        entries continue ``last_seq``, and the writer's live lease.

        Raises:
            LeaseLostError: the writer's lease lapsed; nothing was written.
            RunClaimedError: the fence is stale; nothing was written.
        """
        rows = leases.entry_rows(entries)  # encoded here: the entries are the caller's
        where = repr(str(self._path))
        await self._call(
            lambda conn: leases.append(conn, where, fence, rows, state, status)
        )

    async def claim(
        self,
        run_id: str,
        *,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
        stale_after: float = 0.0,
    ) -> Fence | None:
        """Take a run over for this worker (see :meth:`trio_sagas.Journal.claim`)."""
        check_label(run_id, "run_id")
        wanted = [check_enum(s, RunStatus, "statuses").value for s in statuses]
        check_timeout(stale_after, "stale_after", allow_none=False)
        worker = await self._keeper.fresh()
        return await self._call(
            lambda conn: leases.claim(
                conn, run_id, worker, wanted, stale_after, self._max_claims
            )
        )

    async def claim_batch(
        self, *, limit: int, stale_after: float = 0.0
    ) -> tuple[tuple[RunRecord, Fence], ...]:
        """Claim up to *limit* claimable RUNNING runs, oldest first."""
        check_int(limit, "limit", minimum=1)
        check_timeout(stale_after, "stale_after", allow_none=False)
        worker = await self._keeper.fresh()
        return await self._call(
            lambda conn: leases.claim_batch(
                conn, worker, limit, stale_after, self._max_claims
            )
        )

    async def prune(
        self,
        *,
        older_than: float,
        statuses: Iterable[RunStatus] = (
            RunStatus.SUCCEEDED,
            RunStatus.COMPENSATED,
            RunStatus.FAILED,
        ),
    ) -> int:
        """Delete finished runs (and their entries) last written *older_than*
        seconds ago or more; RUNNING and NEEDS_INTERVENTION never."""
        check_duration(older_than, "older_than")
        wanted = [check_enum(s, RunStatus, "statuses") for s in statuses]
        kept = {RunStatus.RUNNING, RunStatus.NEEDS_INTERVENTION} & set(wanted)
        if kept:
            raise ValueError(
                f"statuses: {sorted(s.name for s in kept)} are never pruned, "
                f"got {sorted(s.name for s in wanted)}"
            )
        values = [s.value for s in wanted]
        return await self._call(lambda conn: leases.prune(conn, values, older_than))

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None."""

        def get(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {leases.RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else leases.run_record(row)

        return await self._call(get)

    async def runs(
        self, *, status: RunStatus | Iterable[RunStatus] | None = None
    ) -> tuple[RunRecord, ...]:
        """Every run, or those with the given status(es), oldest first."""
        if status is None:
            where, params = "", ()
        else:
            wanted = (
                [status.value]
                if isinstance(status, RunStatus)
                else [RunStatus(s).value for s in status]
            )
            where = f"WHERE status IN ({', '.join('?' * len(wanted))})"
            params = tuple(wanted)  # type: ignore[assignment]

        def select(conn: sqlite3.Connection) -> tuple[RunRecord, ...]:
            rows = conn.execute(
                f"SELECT {leases.RUN_COLUMNS} FROM runs {where} ORDER BY created_at, run_id",
                params,
            ).fetchall()
            return tuple(leases.run_record(r) for r in rows)

        return await self._call(select)

    async def events(self, run_id: str) -> tuple[JournalEntry, ...]:
        """The run's entries in ``seq`` order."""

        def select(conn: sqlite3.Connection) -> tuple[JournalEntry, ...]:
            rows = conn.execute(
                "SELECT seq, kind, step, at, written_at, data, value FROM events "
                "WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            return tuple(
                JournalEntry(
                    run_id=run_id,
                    seq=seq,
                    kind=kind,
                    step=step,
                    at=at,
                    data=json.loads(data),
                    value=None if value is None else bytes(value),
                    written_at=written_at,
                )
                for seq, kind, step, at, written_at, data, value in rows
            )

        return await self._call(select)
