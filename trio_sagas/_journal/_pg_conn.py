"""One psycopg connection per role, driven from trio through a worker thread.

psycopg 3's async API runs on asyncio only, so PostgresJournal uses the sync
API in :func:`trio.to_thread.run_sync` behind a capacity-1 limiter per
connection. A thread call is not abandoned when its caller is cancelled: a
statement that was sent finishes (or fails) first, so the caller always
learns whether it happened. A connection that broke (server restart,
``pg_terminate_backend``, a network partition cut short by the keepalive
and ``tcp_user_timeout`` settings) is dropped and reopened on next use.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from .._saga._journal import JournalError

T = TypeVar("T")


def connect_kwargs(
    dsn: str, *, role: str, statement_timeout: float, lease: float
) -> dict[str, Any]:
    """libpq parameters that make a dead peer an error instead of a hang.

    The DSN's own ``options`` are kept (ours are appended) and its own
    ``application_name``, if any, wins.
    """
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(dsn)
    ms = max(1, math.ceil(statement_timeout * 1000))
    options = (
        f"-c statement_timeout={ms} -c lock_timeout={ms} "
        f"-c idle_in_transaction_session_timeout={ms}"
    )
    if given.get("options"):
        options = f"{given['options']} {options}"
    probe = max(1, math.ceil(lease / 3))
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "options": options,
        # Text is UTF-8 whatever the database's encoding (SQL_ASCII would
        # otherwise hand back bytes).
        "client_encoding": "utf8",
        "connect_timeout": max(2, math.ceil(lease / 2)),
        # TCP only (ignored on a unix socket): notice a silent peer within
        # about a lease, not the kernel's two hours.
        "keepalives": 1,
        "keepalives_idle": probe,
        "keepalives_interval": probe,
        "keepalives_count": 3,
        "tcp_user_timeout": max(1000, math.ceil(lease * 1000)),
    }
    if not given.get("application_name"):
        kwargs["application_name"] = f"trio-sagas {role}"
    return kwargs


def describe_dsn(dsn: str) -> str:
    """``host/dbname`` for messages (never the password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable dsn>"
    host = given.get("host") or given.get("hostaddr") or "localhost"
    return f"{host}/{given.get('dbname') or given.get('user') or ''}"


def is_connection_error(exc: BaseException) -> bool:
    """Whether *exc* means the connection is gone (outcome of a write unknown)."""
    import psycopg

    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


class Connection:
    """A lazily opened connection and the limiter that serializes its use."""

    __slots__ = ("_closed", "_conn", "_kwargs", "_lock", "_where", "dsn", "limiter")

    def __init__(self, dsn: str, kwargs: dict[str, Any], where: str) -> None:
        self.dsn = dsn
        self._kwargs = kwargs
        self._where = where
        self._conn: Any = None
        self._closed = False
        self._lock = threading.Lock()
        self.limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[[Any], T], *, retry: bool = False) -> T:
        """Run ``fn(connection)`` in a thread; *retry*: once more on a new
        connection if this one broke (only for idempotent calls)."""
        try:
            return await trio.to_thread.run_sync(self.call, fn, limiter=self.limiter)
        except JournalError as exc:
            if not (retry and exc.__cause__ and is_connection_error(exc.__cause__)):
                raise
        return await trio.to_thread.run_sync(self.call, fn, limiter=self.limiter)

    def call(self, fn: Callable[[Any], T]) -> T:
        """In a worker thread: run ``fn(connection)``; psycopg errors become
        :exc:`JournalError` (the psycopg error is its ``__cause__``)."""
        import psycopg

        with self._lock:
            if self._closed:
                raise JournalError(f"{self._where} is closed")
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.dsn, **self._kwargs)
                return fn(self._conn)
            except psycopg.Error as exc:
                if is_connection_error(exc) and self._conn is not None:
                    self._drop()
                raise JournalError(f"{self._where}: {_first_line(exc)}") from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        with contextlib.suppress(Exception):  # broken: nothing more to release
            conn.close()

    def close(self) -> None:
        """Close for good (from any thread; waits for a call in progress)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._drop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
