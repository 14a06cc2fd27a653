"""How :class:`~trio_sagas.SQLiteJournal` talks to its file: open, write, read.

The journal's methods describe *what* to read or write as functions of a
connection; this module decides *how* they run:

* writes are jobs for the :class:`~._writer.GroupWriter` (one thread, one
  connection, one transaction per batch). A batch runs its jobs without
  savepoints while none needs one: a job that refuses without changing a
  row (a stale fence, a taken run id) leaves the transaction as it found
  it. Consecutive appends of distinct runs go in a few multi-row
  statements (:func:`~._jobs.append_many`). A job that refused after
  changing rows sends the batch back to one ``SAVEPOINT`` per job. A job
  may therefore run twice, the first time rolled back: jobs change
  nothing but rows of this connection's database;
* reads run on a second connection in :func:`trio.to_thread.run_sync`, so
  they never queue behind writes;
* opening refuses an empty file (even with ``create=True``), creates a new
  journal atomically, and runs an integrity check on small files;
* before every write batch and every read, the path must still name the
  files that were opened (:class:`~._files.FileWatch`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import outcome
import trio

from .._saga._journal import JournalError
from ._files import FileWatch, create_atomically, refuse_empty, refuse_lost_wal
from ._jobs import BATCHED, Append, append_many
from ._rows import decode_text
from ._sqlite_config import Settings
from ._writer import GroupWriter, Job, WriterStatistics

T = TypeVar("T")

CHECK_ON_OPEN_LIMIT: Final = 16 * 1024 * 1024
"""Files up to this size get ``PRAGMA integrity_check`` on open by default.

About 7 ms per MiB measured here (so at most ~0.1 s). ``integrity_check``
rather than ``quick_check``: at the same cost on journal files, it also
checks that every index matches its table, and a damaged ``runs_by_status``
index could hide RUNNING runs from recovery.
"""

_MAX_CHECK_MESSAGES = 5

# sqlite3 decodes error messages and TEXT values as UTF-8: from a damaged
# file, what SQLite reports can itself arrive as a UnicodeDecodeError.
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


class _TransactionLost(Exception):
    """A job failed and SQLite rolled the whole transaction back."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


class Store:
    """The connections of one journal file (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.path = path = settings.path
        self._create = settings.create
        self._synchronous = settings.synchronous
        self._timeout = settings.timeout
        self._check_on_open = settings.check_on_open
        self._prepare = settings.prepare
        self._error = settings.error
        self._watch = FileWatch(path)
        self._open_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._read_limiter = trio.CapacityLimiter(1)
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._closed = False
        self._writer = GroupWriter(
            self._execute,
            name=f"trio-sagas journal writer {path.name}",
            closed=self.closed_error,
        )
        self.write = self._writer.run  # type: ignore[method-assign]

    def _map(self, exc: sqlite3.Error | UnicodeDecodeError) -> JournalError:
        if isinstance(exc, UnicodeDecodeError):
            return JournalError(
                f"journal {str(self.path)!r} is corrupt or not a SQLite database: "
                f"what it holds is not valid UTF-8 ({exc})"
            )
        return self._error(exc)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed or self._writer.stopping

    def closed_error(self) -> JournalError:
        return JournalError(f"journal {str(self.path)!r} is closed")

    def statistics(self) -> WriterStatistics:
        return self._writer.statistics()

    # -- the two paths ------------------------------------------------------

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run *job* in the next write transaction (see the module docstring)."""
        # (__init__ binds the writer's own method over this one: one
        # coroutine less per write on the hot path.)
        return await self._writer.run(job)  # pragma: no cover

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run *query* on the read connection, off the event loop."""
        return await trio.to_thread.run_sync(
            self._read, query, limiter=self._read_limiter
        )

    def close(self) -> None:
        """Finish the queued writes, then close both connections."""
        self._writer.stop()
        with self._open_lock, self._read_lock:
            self._closed = True
            for conn in (self._rconn, self._wconn):
                if conn is not None:
                    conn.close()
            self._rconn = self._wconn = None

    # -- reading --------------------------------------------------------------

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with self._read_lock:
            if self._closed:
                raise self.closed_error()
            try:
                self._writer_connection()  # opens both connections once
                assert self._rconn is not None
                self._watch.check()
                return query(self._rconn)
            except _DB_ERRORS as exc:
                raise self._map(exc) from exc

    # -- writing (in the writer thread) --------------------------------------

    def _execute(self, jobs: Sequence[Job]) -> list[outcome.Outcome[Any]]:
        try:
            conn = self._writer_connection()
            conn.execute("BEGIN IMMEDIATE")
        except (*_DB_ERRORS, JournalError) as exc:
            return self._fail_all(jobs, exc)
        try:
            self._watch.check()
            results = self._run_plain(conn, jobs)
            if results is None:
                # A job refused after changing rows: only a savepoint can
                # take back its changes alone. Again, one savepoint per job.
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                results = self._run_in_savepoints(conn, jobs)
            conn.execute("COMMIT")
        except _TransactionLost as lost:
            # SQLite rolled the whole transaction back (I/O error, disk
            # full): the batch's earlier jobs are gone too.
            return self._fail_all(jobs, lost.cause)
        except (*_DB_ERRORS, JournalError) as exc:
            return self._fail_all(jobs, exc)
        return results

    def _run_plain(
        self, conn: sqlite3.Connection, jobs: Sequence[Job]
    ) -> list[outcome.Outcome[Any]] | None:
        """The jobs without savepoints (two statements less per write).

        A job that refuses without having changed a row (a stale fence, a
        taken run id: SQLite undid the failing statement itself) leaves the
        transaction as it found it, and the batch goes on. None: a job
        refused after changing rows.

        Raises:
            _TransactionLost: a job failed and SQLite ended the transaction.
        """
        results: list[outcome.Outcome[Any]] = []
        index, count = 0, len(jobs)
        while index < count:
            job = jobs[index]
            end = index + 1
            accepted: set[str] = set()
            if BATCHED and type(job) is Append:
                # Consecutive appends of distinct runs: a few statements.
                appends = [job]
                runs = {job.fence.run_id}
                while end < count:
                    after = jobs[end]
                    if type(after) is not Append or after.fence.run_id in runs:
                        break
                    appends.append(after)
                    runs.add(after.fence.run_id)
                    end += 1
                if len(appends) > 1:
                    accepted = self._append_many(conn, appends) or set()
            for job in jobs[index:end]:
                if (
                    accepted
                    and isinstance(job, Append)
                    and job.fence.run_id in accepted
                ):
                    results.append(outcome.Value(None))
                elif not self._run_one(conn, job, results):
                    return None
            index = end
        return results

    def _append_many(
        self, conn: sqlite3.Connection, group: Sequence[Append]
    ) -> set[str] | None:
        try:
            return append_many(conn, group)
        except BaseException as exc:
            if not conn.in_transaction:
                raise _TransactionLost(exc) from exc
            raise

    def _run_one(
        self,
        conn: sqlite3.Connection,
        job: Job,
        results: list[outcome.Outcome[Any]],
    ) -> bool:
        """Run *job* without a savepoint; False: it refused after changing rows."""
        changes = conn.total_changes
        try:
            value = job(conn)
        except BaseException as exc:
            if not conn.in_transaction:
                raise _TransactionLost(exc) from exc
            if conn.total_changes != changes:
                return False
            if isinstance(exc, _DB_ERRORS):
                exc = self._map(exc)
            results.append(outcome.Error(exc))
        else:
            results.append(outcome.Value(value))
        return True

    def _run_in_savepoints(
        self, conn: sqlite3.Connection, jobs: Sequence[Job]
    ) -> list[outcome.Outcome[Any]]:
        """The jobs, each in its own savepoint: a refusal rolls back only its own.

        Raises:
            _TransactionLost: a job failed and SQLite ended the transaction.
        """
        results: list[outcome.Outcome[Any]] = []
        for job in jobs:
            conn.execute("SAVEPOINT job")
            try:
                value = job(conn)
            except BaseException as exc:
                if not conn.in_transaction:
                    raise _TransactionLost(exc) from exc
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if isinstance(exc, _DB_ERRORS):
                    exc = self._map(exc)
                results.append(outcome.Error(exc))
            else:
                conn.execute("RELEASE job")
                results.append(outcome.Value(value))
        return results

    def _fail_all(
        self, jobs: Sequence[Job], exc: BaseException
    ) -> list[outcome.Outcome[Any]]:
        """Nothing of this batch is written: each caller gets its own error."""
        conn = self._wconn
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # gone either way
                conn.rollback()
        errors: list[outcome.Outcome[Any]] = []
        for _ in jobs:
            if isinstance(exc, _DB_ERRORS):
                error: BaseException = self._map(exc)
                error.__cause__ = exc
            elif isinstance(exc, JournalError):
                error = JournalError(*exc.args)
                error.__cause__ = exc.__cause__
            else:
                error = exc
            errors.append(outcome.Error(error))
        return errors

    # -- opening --------------------------------------------------------------

    def _writer_connection(self) -> sqlite3.Connection:
        with self._open_lock:
            if self._closed:
                raise self.closed_error()
            if self._wconn is None:
                self._wconn = self._open()
                try:
                    self._rconn = self._connect()
                    self._rconn.execute("PRAGMA query_only = ON")
                except _DB_ERRORS as exc:
                    self._wconn.close()
                    self._wconn = None
                    raise self._map(exc) from exc
            return self._wconn

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if not path.exists():
            if not self._create:
                raise JournalError(
                    f"journal {str(path)!r} does not exist (create=False); "
                    "is the path right?"
                )
            if not path.parent.is_dir():
                raise JournalError(
                    f"journal {str(path)!r}: directory {str(path.parent)!r} "
                    "does not exist"
                )
            try:
                create_atomically(path, self._prepare)
            except _DB_ERRORS as exc:
                raise self._map(exc) from exc
        refuse_empty(path)
        refuse_lost_wal(path)
        try:
            conn = self._connect()
        except _DB_ERRORS as exc:
            raise self._map(exc) from exc
        try:
            self._prepare(conn)
            self._integrity_check(conn)
            self._watch.record()
        except UnicodeDecodeError as exc:
            conn.close()
            raise self._map(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: never create a file here (it exists, fully formed, by now);
        # a path whose file vanished meanwhile must fail, not start afresh.
        conn = sqlite3.connect(
            self.path.absolute().as_uri() + "?mode=rw",
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=True,
        )
        conn.text_factory = decode_text
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _integrity_check(self, conn: sqlite3.Connection) -> None:
        check = self._check_on_open
        if check is None:
            check = self.path.stat().st_size <= CHECK_ON_OPEN_LIMIT
        if not check:
            return
        try:
            rows = conn.execute(
                f"PRAGMA integrity_check({_MAX_CHECK_MESSAGES})"
            ).fetchall()
        except _DB_ERRORS as exc:
            raise self._map(exc) from exc
        problems = [str(r[0]) for r in rows]
        if problems != ["ok"]:
            raise JournalError(
                f"journal {str(self.path)!r} is corrupt (PRAGMA integrity_check on open): "
                + "; ".join(problems)
                + ". Restore it from a backup; the runs it held need checking"
            )
