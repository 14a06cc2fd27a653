"""PostgresJournal's schema and its versioned migrations.

Every table lives in one PostgreSQL schema (``trio_sagas`` by default), so
several journals can share a database and a test can use a schema of its
own. ``meta`` holds the schema version; :func:`migrate` brings a schema up
to :data:`SCHEMA_VERSION`, one transaction per step, under a transaction
advisory lock keyed by the schema name, so that workers starting at the same
moment migrate once and the others wait, then see the new version.

Times are ``timestamptz`` on the server's clock (``clock_timestamp()``), which
alone decides whether a lease lapsed; the journal reads them back as Unix
seconds. Event ``data`` is the runner's JSON *text*: exact, and castable to
``jsonb`` for queries (``jsonb`` would reorder keys and refuses ``\\u0000``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .._saga._journal import JournalSchemaError

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 1
"""The schema version this trio-sagas writes."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_V1 = (
    """CREATE TABLE {s}.workers (
        worker_id text PRIMARY KEY,
        host text NOT NULL,
        pid integer NOT NULL,
        started_at timestamptz NOT NULL,
        renewed_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    )""",
    """CREATE TABLE {s}.runs (
        run_id text PRIMARY KEY,
        scene text NOT NULL,
        status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed',
            'compensated', 'needs_intervention')),
        worker_id text,
        claim_token text,
        epoch bigint NOT NULL DEFAULT 1,
        claims integer NOT NULL DEFAULT 0,
        state bytea,
        last_seq integer NOT NULL DEFAULT -1,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
    )""",
    # The takeover poll reads only RUNNING rows, oldest write first.
    "CREATE INDEX runs_running ON {s}.runs (updated_at) WHERE status = 'running'",
    "CREATE INDEX runs_by_worker ON {s}.runs (worker_id) WHERE status = 'running'",
    "CREATE INDEX runs_by_status ON {s}.runs (status, created_at)",
    """CREATE TABLE {s}.events (
        run_id text NOT NULL REFERENCES {s}.runs ON DELETE CASCADE,
        seq integer NOT NULL,
        epoch bigint NOT NULL,
        kind text NOT NULL,
        step text NOT NULL,
        at double precision NOT NULL,
        written_at timestamptz NOT NULL,
        data text NOT NULL,
        value bytea,
        PRIMARY KEY (run_id, seq)
    )""",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {0: _V1}
"""Statements taking a schema from version N to N + 1 (``{s}``: the schema)."""


def check_schema_name(schema: object) -> str:
    """A plain lower-case SQL identifier (no quoting games in DDL)."""
    if not isinstance(schema, str):
        raise TypeError(f"schema must be a str, got {schema!r}")
    if not _IDENTIFIER.fullmatch(schema) or schema.startswith("pg_"):
        raise ValueError(
            "schema must be a lower-case SQL identifier (letters, digits, '_', "
            f"at most 63, not starting with a digit or 'pg_'), got {schema!r}"
        )
    return schema


def migrate(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> int:
    """Bring *schema* up to :data:`SCHEMA_VERSION`; return the version found.

    Runs on an autocommit connection; each step is its own transaction that
    first takes ``pg_advisory_xact_lock`` for the schema, then re-reads the
    version (another worker may have migrated while this one waited).
    """
    s = f'"{schema}"'
    found: int | None = None
    while True:
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"trio_sagas.migrate.{schema}",),
            )
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            version = _version(conn, schema)
            if found is None:
                found = version
            if version > SCHEMA_VERSION:
                raise JournalSchemaError(
                    f"PostgreSQL schema {schema!r} has trio-sagas schema version "
                    f"{version}, newer than this trio-sagas understands "
                    f"({SCHEMA_VERSION}); upgrade trio-sagas"
                )
            if version == SCHEMA_VERSION:
                return found
            if version == 0:
                conn.execute(
                    f"CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL)"
                )
                conn.execute(f"INSERT INTO {s}.meta VALUES ('schema_version', '0')")
            for statement in MIGRATIONS[version]:
                conn.execute(statement.format(s=s))
            conn.execute(
                f"UPDATE {s}.meta SET value = %s WHERE key = 'schema_version'",
                (str(version + 1),),
            )


def _version(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> int:
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    ]
    if not tables:
        return 0
    if "meta" not in tables:
        raise JournalSchemaError(
            f"PostgreSQL schema {schema!r} holds tables trio-sagas did not make "
            f"({', '.join(sorted(map(str, tables)))}); refusing to use it"
        )
    row = conn.execute(
        f"""SELECT value FROM "{schema}".meta WHERE key = 'schema_version'"""
    ).fetchone()
    try:
        if row is not None:
            return int(str(row[0]))
    except ValueError:
        pass
    raise JournalSchemaError(
        f"PostgreSQL schema {schema!r}: unreadable schema version {row!r}"
    )
