"""The reads and operator calls of PostgresJournal, on its *control* connection.

What a recovery, a dashboard or an operator asks of the journal -- a run, the
runs, a run's entries, the workers -- and what an operator does to it
(expire a worker, prune old runs). None of it takes part in the lease and
fencing protocol of the writes (:mod:`._postgres`): every call here is one
idempotent statement, retried once on a new connection if the old one broke.
The base class also migrates the schema on first use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .._saga._journal import (
    JournalEntry,
    JournalError,
    RunRecord,
    RunStatus,
    WorkerRecord,
)
from .._validate import check_duration, check_str
from . import _pg_sql as q
from ._pg_conn import Connection
from ._pg_schema import migrate

_NEVER_PRUNED = frozenset({RunStatus.RUNNING, RunStatus.NEEDS_INTERVENTION})


class PostgresReads:
    """Reads and operator calls; :class:`PostgresJournal` adds the rest."""

    __slots__ = ("_control", "_migrated", "_schema", "_sql", "_where")

    _control: Connection
    _migrated: bool
    _schema: str
    _sql: dict[str, str]
    _where: str

    async def _ready(self) -> None:
        if not self._migrated:
            await self._control.run(lambda c: migrate(c, self._schema), retry=True)
            self._migrated = True

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None."""
        await self._ready()
        row = await self._control.run(
            lambda c: c.execute(self._sql["GET_RUN"], {"run": run_id}).fetchone(),
            retry=True,
        )
        return None if row is None else q.run_record(row)

    async def runs(
        self, *, status: RunStatus | Iterable[RunStatus] | None = None
    ) -> tuple[RunRecord, ...]:
        """Every run, or those with the given status(es), oldest first."""
        await self._ready()
        if status is None:
            sql, params = self._sql["RUNS"] + q.RUNS_ORDER, {}
        else:
            statuses = [status] if isinstance(status, RunStatus) else status
            wanted = check_statuses(statuses, "status")
            sql = self._sql["RUNS_WITH_STATUS"] + q.RUNS_ORDER
            params = {"statuses": wanted}
        rows = await self._control.run(
            lambda c: c.execute(sql, params).fetchall(), retry=True
        )
        return tuple(q.run_record(r) for r in rows)

    async def events(self, run_id: str) -> tuple[JournalEntry, ...]:
        """The run's entries in ``seq`` order (empty if there is no such run)."""
        await self._ready()
        rows = await self._control.run(
            lambda c: c.execute(self._sql["EVENTS"], {"run": run_id}).fetchall(),
            retry=True,
        )
        out = []
        for row in rows:
            try:
                data = json.loads(row[5])
            except ValueError as exc:
                raise JournalError(
                    f"{self._where}: run {run_id!r} entry {row[0]} has "
                    f"undecodable data: {exc}"
                ) from None
            out.append(q.journal_entry(run_id, row, data))
        return tuple(out)

    async def workers(self) -> tuple[WorkerRecord, ...]:
        """Every registered worker, live and lapsed, oldest first."""
        await self._ready()
        rows = await self._control.run(
            lambda c: c.execute(self._sql["WORKERS"]).fetchall(), retry=True
        )
        return tuple(q.worker_record(r) for r in rows)

    async def expire_worker(self, worker_id: str) -> bool:
        """Operator: that worker is dead; its lease lapses now (its runs
        become claimable). Returns whether such a worker was registered."""
        check_str(worker_id, "worker_id")
        await self._ready()
        count = await self._control.run(
            lambda c: c.execute(self._sql["EXPIRE"], {"w": worker_id}).rowcount,
            retry=True,
        )
        return bool(count)

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
        """Delete finished runs (and their entries) last written more than
        *older_than* seconds ago, and lapsed worker rows that old holding no
        RUNNING run. Returns how many runs were deleted.

        Raises:
            ValueError: *statuses* names RUNNING or NEEDS_INTERVENTION.
        """
        age = check_duration(older_than, "older_than")
        wanted = check_statuses(statuses, "statuses")
        kept = sorted(s.value for s in _NEVER_PRUNED if s.value in wanted)
        if kept:
            raise ValueError(
                f"statuses must not include {', '.join(kept)} (never pruned), "
                f"got {wanted!r}"
            )
        await self._ready()
        params = {"statuses": wanted, "age": age}

        def prune(conn: Any) -> int:
            deleted = int(conn.execute(self._sql["PRUNE"], params).rowcount)
            conn.execute(self._sql["PRUNE_WORKERS"], params)
            return deleted

        return await self._control.run(prune, retry=True)


def check_statuses(statuses: object, argument: str) -> list[str]:
    """The values of *statuses* (RunStatus members); TypeError naming *argument*."""
    if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Iterable):
        raise TypeError(f"{argument} must be RunStatus values, got {statuses!r}")
    out = []
    for status in statuses:
        if not isinstance(status, RunStatus):
            raise TypeError(f"{argument} must be RunStatus values, got {status!r}")
        out.append(status.value)
    return out
