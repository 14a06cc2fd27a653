"""What a :class:`~trio_sagas.SQLiteJournal` is opened with, checked once.

The constructor's arguments become one frozen :class:`Settings` record (every
check on the way in: a wrong type is a :exc:`TypeError`, a wrong value a
:exc:`ValueError`, each naming the argument), with what the journal derives
from them: how it names its file in messages, how it maps a ``sqlite3``
error, how it prepares a connection, and the check that a codec returned
bytes.
"""

from __future__ import annotations

import math
import os
import pathlib
import sqlite3
from typing import Final, Literal

import attrs

from .._saga._journal import Codec, JournalError, JSONCodec
from .._validate import check_bool, check_duration, check_int, check_timeout
from ._schema import prepare, sqlite_error

MAX_BUSY_TIMEOUT: Final = 2_147_483.0
"""Seconds: sqlite3 keeps the busy timeout in a C int of milliseconds."""


@attrs.frozen
class Settings:
    """A SQLiteJournal's checked arguments (see :class:`SQLiteJournal`)."""

    path: pathlib.Path
    codec: Codec
    create: bool
    synchronous: Literal["FULL", "NORMAL"]
    timeout: float
    check_on_open: bool | None
    lease: float
    max_claims: int
    quoted: str = attrs.field(init=False)
    """``repr`` of the path, for messages (computed once)."""

    @quoted.default
    def _quoted(self) -> str:
        return repr(str(self.path))

    @classmethod
    def check(
        cls,
        path: object,
        *,
        codec: object,
        create: object,
        synchronous: object,
        busy_timeout: object,
        check_on_open: object,
        lease: object,
        max_claims: object,
    ) -> Settings:
        """The settings, or TypeError/ValueError naming the bad argument."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
        if codec is None:
            codec = JSONCodec()
        elif not isinstance(codec, Codec):
            raise TypeError(
                f"codec must have encode(value) -> bytes and decode(bytes), got {codec!r}"
            )
        check_bool(create, "create")
        check = (
            None
            if check_on_open is None
            else check_bool(check_on_open, "check_on_open")
        )
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(
                f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            )
        timeout = check_timeout(busy_timeout, "busy_timeout", allow_none=False)
        assert timeout is not None
        if math.isinf(timeout):
            raise ValueError(f"busy_timeout must be finite, got {busy_timeout!r}")
        if timeout > MAX_BUSY_TIMEOUT:
            raise ValueError(
                f"busy_timeout must be at most {MAX_BUSY_TIMEOUT:.0f} seconds "
                f"(sqlite3's limit), got {busy_timeout!r}"
            )
        return cls(
            pathlib.Path(path),
            codec,
            bool(create),
            synchronous,  # one of the two, checked above
            timeout,
            check,
            check_duration(lease, "lease", allow_zero=False),
            check_int(max_claims, "max_claims", minimum=1),
        )

    def where(self) -> str:
        """``journal '<path>'``, for messages."""
        return f"journal {self.quoted}"

    def check_encoded(self, value: object, what: str) -> None:
        """Refuse what a codec returned if it is not bytes (or None)."""
        if value is not None and not isinstance(value, bytes):
            raise TypeError(
                f"{what}: the codec {self.codec!r} returned "
                f"{type(value).__name__}, not bytes; a codec's encode() must "
                "return bytes (nothing was written)"
            )

    def error(self, exc: sqlite3.Error) -> JournalError:
        """The :exc:`JournalError` for a ``sqlite3`` error on this file."""
        return sqlite_error(exc, self.path, self.timeout)

    def prepare(self, conn: sqlite3.Connection) -> None:
        """Check the file is a journal, set WAL mode, migrate (see :mod:`._schema`)."""
        prepare(conn, self.path, self.synchronous, self.timeout)
