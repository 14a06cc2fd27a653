"""SQLiteJournal: the embedded default journal (stdlib :mod:`sqlite3`).

Two connections per journal. Writes go through one writer thread that owns
the write connection and commits whatever is queued as one transaction,
where each write succeeds or fails alone (group commit, see :mod:`._writer`
and :mod:`._store`; the append, the hot path, in :mod:`._jobs`); reads use
their own connection in :func:`trio.to_thread.run_sync` and never wait
behind queued writes (WAL mode: readers see the last commit). The event
loop never waits on the disk, and a write that began is never abandoned
when its caller is cancelled: the caller always knows whether it happened.
The constructor's arguments are checked into one record
(:mod:`._sqlite_config`); the worker's lease is :mod:`._sqlite_worker`'s.

Durability: WAL mode with ``synchronous=FULL`` by default, so a committed
write survives a power cut. ``synchronous="NORMAL"`` keeps every write that
committed before a *process* crash (``kill -9``) but may lose the last
writes on power loss or an OS crash, for fewer syncs.

Faults SQLite cannot see are checked here: before every write batch and
every read, the path must still name the files opened (:mod:`._files`);
every row read back is validated (:mod:`._rows`); an integrity check runs
on open for files up to :data:`CHECK_ON_OPEN_LIMIT` bytes.
"""

from __future__ import annotations

import functools
import os
import pathlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Literal, TypeVar, final

import trio

from .._saga._journal import (
    DEFAULT_LEASE,
    DEFAULT_MAX_CLAIMS,
    ClaimedRun,
    Codec,
    Fence,
    JournalEntry,
    LeaseLostError,
    RunRecord,
    RunStatus,
)
from .._validate import (
    check_duration,
    check_enum,
    check_int,
    check_label,
    check_labels,
    check_timeout,
)
from . import _sqlite_leases as leases
from ._jobs import Append as _Append
from ._jobs import encode_rows as _encode_rows
from ._rows import (
    DamagedRun,
    JournalCheck,
)

# Re-exported: tools and tests build old-version journals from these.
from ._schema import _SCHEMA_V1 as _SCHEMA_V1
from ._schema import APPLICATION_ID as APPLICATION_ID
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._sqlite_config import MAX_BUSY_TIMEOUT as MAX_BUSY_TIMEOUT
from ._sqlite_config import Settings
from ._sqlite_reads import SQLiteReads
from ._sqlite_worker import Worker
from ._store import CHECK_ON_OPEN_LIMIT, Store
from ._writer import WriterStatistics

T = TypeVar("T")

PRUNE_CHUNK = 500
"""Runs :meth:`SQLiteJournal.prune` deletes per transaction."""

__all__ = [
    "CHECK_ON_OPEN_LIMIT",
    "MAX_BUSY_TIMEOUT",
    "DamagedRun",
    "JournalCheck",
    "SQLiteJournal",
]


@final
class SQLiteJournal(SQLiteReads):
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
            a write fails with :exc:`JournalError` (at most
            :data:`MAX_BUSY_TIMEOUT`, about 24.8 days).
        check_on_open: Run ``PRAGMA integrity_check`` when the file is
            opened; None (default): for files up to
            :data:`CHECK_ON_OPEN_LIMIT` bytes (16 MiB; it reads the whole
            file once, about 7 ms per MiB).
        lease: Seconds this worker's lease lasts (renewed every third of
            that while a run or ``async with journal`` holds it). Leases run
            on the host's clock: every process sharing the file is on it.
        max_claims: A run claimed (taken over) this many times goes to
            NEEDS_INTERVENTION instead of being claimed again.

    Raises:
        TypeError, ValueError: bad arguments (at construction).
        JournalError: on first use, a file that cannot be opened, is empty
            (0 bytes, refused even with ``create=True``), is not a SQLite
            database, fails its integrity check, or is locked for longer
            than *busy_timeout*; at any later call, a file deleted, replaced
            or emptied since it was opened.
        JournalSchemaError: on first use, a file written by a newer version
            or another application.
    """

    __slots__ = ("_keeper", "_settings", "_store", "_worker")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: Codec | None = None,
        create: bool = True,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
        check_on_open: bool | None = None,
        lease: float = DEFAULT_LEASE,
        max_claims: int = DEFAULT_MAX_CLAIMS,
    ) -> None:
        self._settings = settings = Settings.check(
            path,
            codec=codec,
            create=create,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            check_on_open=check_on_open,
            lease=lease,
            max_claims=max_claims,
        )
        self._store = Store(settings)
        self._worker = Worker(self._store, settings.lease)
        self._keeper = self._worker.keeper

    def __repr__(self) -> str:
        return f"trio_sagas.SQLiteJournal({str(self._settings.path)!r})"

    @property
    def path(self) -> pathlib.Path:
        """The database file."""
        return self._settings.path

    @property
    def codec(self) -> Codec:
        """Encodes states and act results."""
        return self._settings.codec

    def __enter__(self) -> SQLiteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def lease(self) -> float:
        """Seconds this worker's lease lasts."""
        return self._settings.lease

    @property
    def worker_id(self) -> str:
        """This worker's current registration; empty until its first use."""
        return self._keeper.worker_id or ""

    def hold(self) -> AbstractAsyncContextManager[trio.CancelScope]:
        """Keep this worker's lease renewed while the block runs, as Journal.hold."""
        return self._keeper.hold()

    async def __aenter__(self) -> SQLiteJournal:
        """Register this worker and renew its lease until the block ends."""
        try:
            await self._worker.start()
        except BaseException:
            self.close()  # nothing is left open by an entry that failed
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self._worker.stop()
        finally:
            self.close()

    def close(self) -> None:
        """Finish the writes already queued, then close the connections.

        Later calls raise :exc:`JournalError`.
        """
        self._store.close()

    def statistics(self) -> WriterStatistics:
        """The writer's counters (batches committed, writes, queue length)."""
        return self._store.statistics()

    # -- plumbing ---------------------------------------------------------------

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run *job* in the next group commit.

        The job must not begin, commit or roll back, and changes nothing but
        rows: it raises to refuse, and only its own changes are rolled back
        (it may run twice, the first time rolled back; see :mod:`._store`).
        """
        return await self._store.write(job)

    # -- leases -----------------------------------------------------------------

    async def expire_worker(self, worker_id: str) -> bool:
        """Operator: that worker is dead; its lease lapses now."""
        check_label(worker_id, "worker_id")
        return await self._write(lambda conn: leases.expire(conn, worker_id))

    # -- the Journal protocol ---------------------------------------------------

    async def create_run(self, run_id: str, *, scene: str, state: bytes) -> Fence:
        """Create a RUNNING run held by this worker (epoch 1).

        Raises:
            RunIdInUseError: the id is taken (by a run of any status).
            TypeError, ValueError: *run_id* or *scene* is not a non-empty
                str of valid text; *state* is not bytes (the codec's fault:
                nothing was written).
            LeaseLostError: this worker's lease lapsed, twice, before the insert.
        """
        check_label(run_id, "run_id")
        check_label(scene, "scene")
        self._settings.check_encoded(state, f"run {run_id!r}: the state")
        where = self._settings.quoted
        for attempt in range(2):
            worker = await self._keeper.fresh()
            if await self._write(
                functools.partial(
                    leases.create_run,
                    where=where,
                    run_id=run_id,
                    scene=scene,
                    worker=worker,
                    state=state,
                )
            ):
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
        given: object = state  # typed bytes, but the codec is the caller's
        if given is not None and not isinstance(given, bytes):
            self._settings.check_encoded(state, f"run {fence.run_id!r}: the state")
        rows = _encode_rows(self._settings, fence, entries)
        del entries  # not kept alive while the write waits for its batch
        await self._store.write(
            _Append(self._settings.quoted, fence, rows, state, status)
        )

    async def claim(
        self,
        run_id: str,
        *,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
        stale_after: float = 0.0,
    ) -> Fence | None:
        """Take a run over for this worker, as Journal.claim does."""
        check_label(run_id, "run_id")
        wanted = [check_enum(s, RunStatus, "statuses").value for s in statuses]
        check_timeout(stale_after, "stale_after", allow_none=False)
        worker = await self._keeper.fresh()
        return await self._write(
            lambda conn: leases.claim(
                conn, run_id, worker, wanted, stale_after, self._settings.max_claims
            )
        )

    async def claim_batch(
        self, *, limit: int, stale_after: float = 0.0
    ) -> tuple[tuple[RunRecord, Fence], ...]:
        """Claim up to *limit* claimable RUNNING runs, oldest first."""
        check_int(limit, "limit", minimum=1)
        check_timeout(stale_after, "stale_after", allow_none=False)
        worker = await self._keeper.fresh()
        where = self._settings.where()
        return await self._write(
            lambda conn: leases.claim_batch(
                conn, worker, limit, stale_after, self._settings.max_claims, where
            )
        )

    async def claim_and_load(
        self,
        run_ids: Sequence[str] | None = None,
        *,
        limit: int,
        stale_after: float = 0.0,
    ) -> tuple[ClaimedRun, ...]:
        """Claim a batch of runs and read their entries, in one write job
        (as BatchedJournal.claim_and_load)."""
        check_int(limit, "limit", minimum=1)
        check_timeout(stale_after, "stale_after", allow_none=False)
        ids = None if run_ids is None else check_labels(run_ids, "run_ids")
        worker = await self._keeper.fresh()
        where = self._settings.where()
        return await self._write(
            lambda conn: leases.claim_and_load(
                conn, worker, ids, limit, stale_after, self._settings.max_claims, where
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
        seconds ago or more; RUNNING and NEEDS_INTERVENTION never.

        The runs go in transactions of at most :data:`PRUNE_CHUNK` runs, each
        its own write job, so the runs' own writes interleave with a long
        prune instead of waiting for all of it; the cut-off is fixed when the
        call starts. Cancelling the call stops it between chunks (what was
        deleted stays deleted). Returns how many runs were deleted.
        """
        check_duration(older_than, "older_than")
        wanted = [check_enum(s, RunStatus, "statuses") for s in statuses]
        kept = {RunStatus.RUNNING, RunStatus.NEEDS_INTERVENTION} & set(wanted)
        if kept:
            raise ValueError(
                f"statuses: {sorted(s.name for s in kept)} are never pruned, "
                f"got {sorted(s.name for s in wanted)}"
            )
        values = [s.value for s in wanted]
        cutoff = time.time() - older_than
        total = 0
        while True:
            deleted = await self._write(
                lambda conn: leases.prune(conn, values, cutoff, PRUNE_CHUNK)
            )
            total += deleted
            if deleted < PRUNE_CHUNK:
                return total
