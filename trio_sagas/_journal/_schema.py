"""The SQLite journal's schema: versions, migrations, and opening checks.

``PRAGMA user_version`` holds a file's schema version and ``PRAGMA
application_id`` marks it as a trio-sagas journal; :func:`prepare` refuses
another application's database or a newer schema, switches to WAL mode and
migrates an older file, one version per transaction (under the write lock,
so two processes opening an old file migrate it once).
"""

from __future__ import annotations

import pathlib
import sqlite3

from .._saga._journal import JournalError, JournalSchemaError
from ._sqlite_leases import SCHEMA_V2

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
MIGRATIONS: dict[int, tuple[str, ...]] = {0: _SCHEMA_V1, 1: SCHEMA_V2}


def sqlite_error(
    exc: sqlite3.Error, path: pathlib.Path, timeout: float
) -> JournalError:
    """The JournalError for a sqlite3 error: locked, corrupt, or as SQLite says."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return JournalError(
            f"journal {str(path)!r} is locked by another connection "
            f"(waited {timeout} s): {text}"
        )
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text
    ):
        return JournalError(
            f"journal {str(path)!r} is corrupt or not a SQLite database: {text}"
        )
    return JournalError(f"journal {str(path)!r}: {text}")


def prepare(
    conn: sqlite3.Connection, path: pathlib.Path, synchronous: str, timeout: float
) -> None:
    """Check the file is ours and not newer, set WAL mode, migrate to the latest."""
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()[0]
    except sqlite3.Error as exc:
        raise sqlite_error(exc, path, timeout) from exc
    where = f"journal {str(path)!r}"
    if application_id not in (0, APPLICATION_ID) or (application_id == 0 and tables):
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
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        while version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            # Re-read under the write lock: another process may have migrated.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.rollback()
        raise sqlite_error(exc, path, timeout) from exc
