"""The journal file's identity: noticing a file deleted, replaced or emptied.

SQLite keeps writing through its open file descriptors when the file is
unlinked or renamed over: every commit "succeeds" into a file nobody will
ever open again. So the journal records the identity (device and inode) of
the database file and of its write-ahead log when it opens them, and
compares it with what the *path* names now before every write batch and
every read: one :func:`os.stat` per file, a few microseconds.

A new journal is created next to its path and linked into place only when
its schema is complete, so no process ever sees a half-made journal — which
lets an empty (zero-byte) file always be refused: SQLite would silently
turn it into a new, empty database.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
import struct
import uuid
from collections.abc import Callable

import attrs

from .._saga._journal import JournalError


@attrs.frozen
class FileIdentity:
    """Which file a path named when the journal opened it."""

    device: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileIdentity:
        return cls(stat.st_dev, stat.st_ino)


def wal_path(path: pathlib.Path) -> pathlib.Path:
    """The write-ahead log SQLite keeps next to *path* in WAL mode."""
    return path.with_name(path.name + "-wal")


def shm_path(path: pathlib.Path) -> pathlib.Path:
    """The WAL index SQLite keeps next to *path* in WAL mode."""
    return path.with_name(path.name + "-shm")


# The WAL index header (SQLite's wal.c, WalIndexHdr, native byte order):
# iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame, nPage, ...
# stored twice (bytes 0-47 and 48-95), then WalCkptInfo.nBackfill at 96.
_HEADER = struct.Struct("=IIIBBHII")
_WAL_HEADER_SIZE = 32
_FRAME_HEADER_SIZE = 24


def refuse_lost_wal(path: pathlib.Path) -> None:
    """Raise :exc:`JournalError` if commits the WAL index knows of are gone.

    After a crash the ``-shm`` file still says how many WAL frames were
    committed (``mxFrame``) and how many of them were already copied into
    the database file (``nBackfill``). If the ``-wal`` file is now missing or
    shorter than those frames, committed transactions were lost with it —
    SQLite itself would silently open the database without them. Only
    detectable while the ``-shm`` file survives (it is not when the WAL was
    removed together with it, or when the files were copied without it).
    """
    try:
        with open(shm_path(path), "rb") as file:
            index = file.read(100)
    except OSError:
        return
    if len(index) < 100 or index[:48] != index[48:96]:
        return  # no index, or one being written right now: nothing to compare
    _, _, _, is_init, _, page_size, frames, _ = _HEADER.unpack_from(index)
    (backfilled,) = struct.unpack_from("=I", index, 96)
    if not is_init or frames <= backfilled:
        return  # everything committed is in the database file already
    if page_size == 1:
        page_size = 65536
    needed = _WAL_HEADER_SIZE + frames * (_FRAME_HEADER_SIZE + page_size)
    try:
        size = os.stat(wal_path(path)).st_size
    except FileNotFoundError:
        size = -1
    if size < needed:
        what = "is missing" if size < 0 else f"was truncated ({size} of {needed} bytes)"
        raise JournalError(
            f"journal {str(path)!r}: its write-ahead log (the -wal file) {what}; "
            f"it held {frames - backfilled} committed page writes not yet in the "
            "database file, so committed runs or events would be lost. Restore the "
            "-wal file (it belongs with the database file), or move the -shm file "
            "away to accept the loss"
        )


def refuse_empty(path: pathlib.Path) -> None:
    """Raise :exc:`JournalError` if *path* is an existing zero-byte file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        raise JournalError(
            f"journal {str(path)!r} is an empty (0-byte) file, not a journal: it "
            "was truncated or created by something else; restore it from a backup, "
            "or remove it to start a new, empty journal"
        )


def create_atomically(
    path: pathlib.Path, build: Callable[[sqlite3.Connection], None]
) -> None:
    """Create the journal at *path* (if nobody did yet) fully formed.

    The schema is written to a temporary file in the same directory, which
    is then hard-linked to *path*; if another process won the race its
    journal is kept. No process can observe a zero-byte or schema-less
    journal at *path*.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")
    try:
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            build(conn)
        finally:
            conn.close()  # the last connection: checkpoints and removes its WAL
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it meanwhile: use theirs
        except OSError as exc:
            raise JournalError(
                f"journal {str(path)!r}: cannot create it: {exc}"
            ) from exc
        else:
            _sync_directory(path.parent)
    finally:
        for leftover in (temporary, wal_path(temporary)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _sync_directory(directory: pathlib.Path) -> None:
    # The new name must survive a power cut like the journal's commits do.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; nothing better to do
    finally:
        os.close(fd)


@attrs.define
class FileWatch:
    """The identities of a journal's database file and WAL, checked on demand.

    :meth:`check` runs before every write batch: two ``stat`` calls on
    paths spelled once (no :class:`pathlib.Path` work per call).
    """

    path: pathlib.Path
    database: FileIdentity | None = None
    wal: FileIdentity | None = None
    _db_name: str = attrs.field(init=False)
    _wal_name: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._db_name = os.fspath(self.path)
        self._wal_name = os.fspath(wal_path(self.path))

    def record(self) -> None:
        """Remember the files the path names now (right after opening them)."""
        self.database = FileIdentity.of(self._stat(self._db_name, "database file"))
        try:
            self.wal = FileIdentity.of(os.stat(self._wal_name))
        except FileNotFoundError:
            self.wal = None  # created by SQLite with the first write transaction

    def check(self) -> None:
        """Raise :exc:`JournalError` unless the path still names the same files."""
        stat = self._stat(self._db_name, "database file")
        if not self._same(stat, self.database):
            raise self._error("was replaced by another file")
        if stat.st_size == 0:
            raise self._error("was emptied (it is now 0 bytes)")
        try:
            wal = os.stat(self._wal_name)
        except FileNotFoundError:
            if self.wal is not None:
                raise self._error(
                    "lost its write-ahead log (the -wal file was deleted)"
                ) from None
            return
        if self.wal is None:
            self.wal = FileIdentity.of(wal)
        elif not self._same(wal, self.wal):
            raise self._error("had its write-ahead log (the -wal file) replaced")

    @staticmethod
    def _same(stat: os.stat_result, identity: FileIdentity | None) -> bool:
        return (
            identity is not None
            and stat.st_dev == identity.device
            and stat.st_ino == identity.inode
        )

    def _stat(self, path: str, what: str) -> os.stat_result:
        try:
            return os.stat(path)
        except FileNotFoundError:
            raise self._error(f"was deleted (its {what} is gone)") from None
        except OSError as exc:
            raise self._error(f"cannot be checked: {exc}") from exc

    def _error(self, what: str) -> JournalError:
        return JournalError(
            f"journal {str(self.path)!r} {what} while this process had it open; "
            "nothing more is written to it. Writes since then may be lost: restore "
            "the file, then recover() the runs"
        )
