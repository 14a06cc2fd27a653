"""The reads of SQLiteJournal, on its read connection (never behind writes).

What a recovery, a dashboard or an operator asks of the journal -- a run,
the runs (damaged ones apart), a run's entries, several runs' entries, the
workers, a whole-file check. Every read checks that the path still names the
files opened and validates every row it returns (:mod:`._rows`).
:class:`~trio_sagas.SQLiteJournal` adds the writes, claims and leases.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from .._saga._journal import (
    JournalEntry,
    RunDamagedError,
    RunRecord,
    RunStatus,
    WorkerRecord,
)
from .._validate import check_label, check_labels
from . import _sqlite_leases as leases
from ._rows import (
    DamagedRun,
    JournalCheck,
    check_rows,
    damaged_error,
    runs_where,
    select_events,
    select_run,
    select_runs,
)
from ._sqlite_config import Settings
from ._store import Store

T = TypeVar("T")


class SQLiteReads:
    """Reads; :class:`~trio_sagas.SQLiteJournal` adds the rest."""

    __slots__ = ()

    _settings: Settings
    _store: Store

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run *query* on the read connection (never behind queued writes)."""
        return await self._store.read(query)

    async def workers(self) -> tuple[WorkerRecord, ...]:
        """Every worker row, live and lapsed."""
        return await self._read(leases.workers)

    async def read_events(
        self, run_ids: Sequence[str]
    ) -> tuple[tuple[JournalEntry, ...] | RunDamagedError, ...]:
        """Several runs' entries (or each one's damage) in one read."""
        ids = check_labels(run_ids, "run_ids")
        where = self._settings.where()
        return await self._read(lambda conn: leases.read_events(conn, ids, where))

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None.

        Raises:
            JournalError: the run's record is damaged (the message names it).
        """
        check_label(run_id, "run_id")

        query = f"SELECT {leases.RUN_COLUMNS} FROM runs WHERE run_id = ?"
        return await self._read(
            lambda conn: select_run(
                conn, query, run_id, leases.run_record, self._settings.where()
            )
        )

    async def runs(
        self, *, status: RunStatus | Iterable[RunStatus] | None = None
    ) -> tuple[RunRecord, ...]:
        """Every run, or those with the given status(es), oldest first.

        Raises:
            JournalError: a run's record is damaged (the message names it;
                :meth:`scan_runs` lists the others and the damaged apart).
        """
        records, damaged = await self.scan_runs(status=status)
        if damaged:
            raise damaged_error(damaged)
        return records

    async def scan_runs(
        self, *, status: RunStatus | Iterable[RunStatus] | None = None
    ) -> tuple[tuple[RunRecord, ...], tuple[DamagedRun, ...]]:
        """Like runs(), but damaged runs are listed apart, not raised.

        Returns ``(records, damaged)``: the readable runs with one of the
        given statuses, oldest first, and a :class:`DamagedRun` (run id,
        scene if readable, reason) for every run whose record cannot be read
        — including runs whose status is not one this version knows, since
        such a run may be one that should be recovered.
        """
        where, params = runs_where(status)
        query = (
            f"SELECT {leases.RUN_COLUMNS} FROM runs {where} ORDER BY created_at, run_id"
        )
        return await self._read(
            lambda conn: select_runs(
                conn, query, params, leases.run_record, self._settings.where()
            )
        )

    async def check(self) -> JournalCheck:
        """Check the whole journal: SQLite's ``integrity_check`` (whatever the
        file's size) and every run and event decoded.

        Reads every row once (for the ``check`` command of the command line,
        or a health check); the journal stays usable meanwhile.

        Returns:
            A :class:`JournalCheck`: SQLite's findings, the damaged runs
            (run id, scene, reason), and how many runs and events were read.
        """
        query = f"SELECT {leases.RUN_COLUMNS} FROM runs ORDER BY created_at, run_id"
        return await self._read(
            lambda conn: check_rows(
                conn, query, leases.run_record, self._settings.where()
            )
        )

    async def events(self, run_id: str) -> tuple[JournalEntry, ...]:
        """The run's entries in ``seq`` order.

        Raises:
            JournalError: an entry is damaged (the message names the run).
        """
        check_label(run_id, "run_id")

        return await self._read(
            lambda conn: select_events(conn, run_id, self._settings.where())
        )
