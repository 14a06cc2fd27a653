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

import json
import math
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar, final

import trio

from .._saga._journal import (
    Codec,
    JournalEntry,
    JournalError,
    JournalSchemaError,
    JSONCodec,
    RunClaimedError,
    RunIdInUseError,
    RunRecord,
    RunStatus,
)
from .._validate import check_timeout

T = TypeVar("T")

SCHEMA_VERSION = 1
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
_MIGRATIONS: dict[int, tuple[str, ...]] = {0: _SCHEMA_V1}

_RUN_COLUMNS = "run_id, scene, status, state, owner, created_at, updated_at, last_seq"


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    run_id, scene, status, state, owner, created, updated, last_seq = row
    return RunRecord(
        run_id=run_id,
        scene=scene,
        status=RunStatus(status),
        state=None if state is None else bytes(state),
        owner=owner,
        created_at=created,
        updated_at=updated,
        last_seq=last_seq,
    )


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

    Raises:
        TypeError, ValueError: bad arguments (at construction).
        JournalError: on first use, a file that cannot be opened, is not a
            SQLite database, or is locked for longer than *busy_timeout*.
        JournalSchemaError: on first use, a file written by a newer version
            or another application.
    """

    __slots__ = (
        "_closed",
        "_codec",
        "_conn",
        "_create",
        "_limiter",
        "_lock",
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

    async def __aenter__(self) -> SQLiteJournal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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

    # -- the Journal protocol ---------------------------------------------------

    async def create_run(
        self, run_id: str, *, scene: str, owner: str, state: bytes
    ) -> None:
        """Create a RUNNING run owned by *owner*.

        Raises:
            RunIdInUseError: the id is taken (by a run of any status).
        """

        def create(conn: sqlite3.Connection) -> None:
            now = time.time()
            try:
                conn.execute(
                    "INSERT INTO runs (run_id, scene, status, owner, state, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, scene, RunStatus.RUNNING.value, owner, state, now, now),
                )
            except sqlite3.IntegrityError:
                raise RunIdInUseError(
                    f"run id {run_id!r} is already in journal {str(self._path)!r}; "
                    "run ids are never reused"
                ) from None

        await self._call(create)

    async def append(
        self,
        run_id: str,
        entries: Sequence[JournalEntry],
        *,
        owner: str,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        """Atomically add *entries*, replace the state, set the status.

        Raises:
            RunClaimedError: *owner* does not own the RUNNING run.
        """
        # Encoded here, on the trio thread: the entries are the caller's.
        rows = [
            (
                run_id,
                e.seq,
                e.kind,
                e.step,
                e.at,
                json.dumps(e.data, separators=(",", ":")),
                e.value,
            )
            for e in entries
        ]
        last_seq = entries[-1].seq if entries else None
        new_status = None if status is None else status.value

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            updated = conn.execute(
                "UPDATE runs SET updated_at = ?, last_seq = coalesce(?, last_seq), "
                "state = coalesce(?, state), status = coalesce(?, status), "
                "owner = CASE WHEN ? IS NULL OR ? = 'running' THEN owner ELSE NULL END "
                "WHERE run_id = ? AND owner = ? AND status = 'running'",
                (
                    now,
                    last_seq,
                    state,
                    new_status,
                    new_status,
                    new_status,
                    run_id,
                    owner,
                ),
            ).rowcount
            if updated != 1:
                conn.rollback()
                raise RunClaimedError(
                    f"run {run_id!r} in journal {str(self._path)!r} is no longer "
                    f"owned by {owner!r} (claimed by a recovery, or finished)"
                )
            if rows:
                conn.executemany(
                    "INSERT INTO events (run_id, seq, kind, step, at, written_at, "
                    "data, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*row[:5], now, *row[5:]) for row in rows],
                )
            conn.execute("COMMIT")

        await self._call(write)

    async def claim(
        self,
        run_id: str,
        *,
        owner: str,
        stale_after: float = 0.0,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
    ) -> bool:
        """Make *owner* the owner of the run and set it RUNNING, atomically.

        Succeeds only if the run's status is in *statuses* and, if it is
        RUNNING, its latest write is *stale_after* seconds old or older.
        """
        wanted = [RunStatus(s).value for s in statuses]
        check_timeout(stale_after, "stale_after", allow_none=False)

        def claim(conn: sqlite3.Connection) -> bool:
            now = time.time()
            marks = ", ".join("?" * len(wanted))
            return bool(
                conn.execute(
                    f"UPDATE runs SET owner = ?, status = 'running', updated_at = ? "
                    f"WHERE run_id = ? AND status IN ({marks}) "
                    f"AND (status != 'running' OR updated_at <= ?)",
                    (owner, now, run_id, *wanted, now - stale_after),
                ).rowcount
            )

        if not wanted:
            return False
        return await self._call(claim)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None."""

        def get(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _run_record(row)

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
                f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at, run_id",
                params,
            ).fetchall()
            return tuple(_run_record(r) for r in rows)

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
