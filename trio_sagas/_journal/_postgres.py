"""PostgresJournal: one journal shared by workers on many machines.

Liveness is a *worker lease* judged by the server's clock: one ``workers``
row per registration, renewed every lease/3 by a trio task the journal owns.
Every run carries an ``epoch`` that each takeover bumps, and every append is
one statement that checks worker, epoch, status, ``last_seq`` and the
writer's live lease, so a worker that was paused or partitioned past its
lease can never write again. Takeovers use ``FOR UPDATE SKIP LOCKED``, so
many workers split a backlog without waiting on each other.

Three connections per journal, one per role, so a slow append never delays a
renewal: *writes* (creations and appends, group-committed by
:mod:`._pg_batch`), *heartbeat* (registration and renewals for the lease
keeper every backend shares, :mod:`.._saga._lease`) and *control* (claims
here; reads and operator calls in :mod:`._pg_reads`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from typing import Any, final

import trio

from .._saga._journal import (
    DEFAULT_LEASE,
    DEFAULT_MAX_CLAIMS,
    Codec,
    Fence,
    JournalEntry,
    JournalError,
    JSONCodec,
    LeaseLostError,
    RunRecord,
    RunStatus,
)
from .._saga._lease import LeaseKeeper
from .._validate import check_duration, check_int, check_str
from . import _pg_sql as q
from ._pg_batch import AppendBatcher, AppendRequest
from ._pg_conn import Connection, connect_kwargs, describe_dsn
from ._pg_reads import PostgresReads, check_statuses
from ._pg_resolve import claim_settled, execute_batch
from ._pg_schema import check_schema_name


@final
class PostgresJournal(PostgresReads):
    """A saga journal in a PostgreSQL database, shared by many workers.

    Use it as an async context manager: entering registers this process as a
    worker and starts the task that renews its lease; leaving stops it,
    deletes the worker row (so any run still RUNNING under it can be taken
    over at once) and closes the connections. Without ``async with``, each
    :meth:`hold` block renews the lease while it runs.

    Args:
        dsn: A libpq connection string or ``postgresql://`` URL.
        codec: Encodes states and act results; default :class:`JSONCodec`.
        lease: Seconds a worker's lease lasts on the server's clock; renewed
            every lease/3. A worker cancels its own runs before it lapses.
        schema: The PostgreSQL schema holding the tables (created, and
            migrated under an advisory lock, on first use).
        max_claims: A RUNNING run taken over this many times goes to
            NEEDS_INTERVENTION instead of being claimed again.
        statement_timeout: Seconds any statement may run (also the lock and
            idle-in-transaction timeouts) before it fails.
        max_batch: Most concurrent appends written in one statement.

    Raises:
        TypeError, ValueError: bad arguments (at construction).
        JournalError: on use, a server that cannot be reached or refuses.
        JournalSchemaError: on first use, a schema of a newer trio-sagas or
            holding tables trio-sagas did not make.
    """

    __slots__ = (
        "_batcher",
        "_codec",
        "_entered",
        "_heartbeat",
        "_keeper",
        "_lease",
        "_max_claims",
        "_nursery_manager",
        "_writes",
    )

    def __init__(
        self,
        dsn: str,
        *,
        codec: Codec | None = None,
        lease: float = DEFAULT_LEASE,
        schema: str = "trio_sagas",
        max_claims: int = DEFAULT_MAX_CLAIMS,
        statement_timeout: float = 30.0,
        max_batch: int = 256,
    ) -> None:
        check_str(dsn, "dsn")
        if codec is None:
            codec = JSONCodec()
        elif not isinstance(codec, Codec):
            raise TypeError(
                f"codec must have encode(value) -> bytes and decode(bytes), got {codec!r}"
            )
        self._codec = codec
        self._lease = check_duration(lease, "lease", allow_zero=False)
        self._schema = check_schema_name(schema)
        self._max_claims = check_int(max_claims, "max_claims", minimum=1)
        timeout = check_duration(
            statement_timeout, "statement_timeout", allow_zero=False
        )
        batch = check_int(max_batch, "max_batch", minimum=1)
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ImportError(
                "PostgresJournal needs psycopg 3: pip install 'psycopg[binary]' (from a "
                "checkout: pip install '.[postgres]')"
            ) from None
        self._where = f"PostgreSQL journal {describe_dsn(dsn)} schema {schema!r}"

        def conn(role: str, seconds: float) -> Connection:
            kwargs = connect_kwargs(
                dsn, role=role, statement_timeout=seconds, lease=self._lease
            )
            return Connection(dsn, kwargs, self._where)

        self._writes = conn("writes", timeout)
        self._control = conn("control", timeout)
        # A renewal that takes longer than lease/3 has failed: try again.
        self._heartbeat = conn("heartbeat", max(0.1, self._lease / 3))
        self._sql = {
            name: text.replace("{s}", f'"{schema}"')
            for name, text in vars(q).items()
            if name.isupper() and isinstance(text, str)
        }
        self._migrated = False
        self._entered = False
        self._nursery_manager: Any = None
        # The server's clock decides a lease: under a virtual trio clock the
        # keeper arms no local deadline (host_clock), the fence still holds.
        self._keeper = LeaseKeeper(
            self._lease, self._register, self._renew, expire=self._expire,
            host_clock=True,
        )  # fmt: skip
        self._batcher = AppendBatcher(self._execute, max_batch=batch)

    def __repr__(self) -> str:
        return f"trio_sagas.PostgresJournal(<{self._where}>)"

    @property
    def codec(self) -> Codec:
        """Encodes states and act results."""
        return self._codec

    @property
    def lease(self) -> float:
        """Seconds a worker lease lasts."""
        return self._lease

    @property
    def max_claims(self) -> int:
        """Takeovers a RUNNING run may have before NEEDS_INTERVENTION."""
        return self._max_claims

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding the journal's tables."""
        return self._schema

    @property
    def worker_id(self) -> str:
        """This process's current worker registration ("" before the first)."""
        return self._keeper.worker_id or ""

    # -- lifetime ----------------------------------------------------------------

    async def __aenter__(self) -> PostgresJournal:
        if self._entered:
            raise RuntimeError(f"{self!r} was already entered; use it once")
        self._entered = True
        # The journal owns its heartbeat task: a nursery entered here and
        # exited in __aexit__, by the same task, around the caller's block.
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        try:
            await nursery.start(self._keeper.heartbeat)
        except BaseException:
            # Cancelled or failed while registering: give back whatever was
            # taken (a registered row, the connections), as __aexit__ does.
            await self.__aexit__(None, None, None)
            raise
        self._keeper.beating = True
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        manager, self._nursery_manager = self._nursery_manager, None
        try:
            if manager is not None:
                self._keeper.stop()
                # The heartbeat never raises; the block's own exception, if
                # any, propagates from here as it was (never in a group).
                await manager.__aexit__(None, None, None)
        finally:
            with trio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        """Delete this worker's row (its runs become claimable) and close."""
        worker = self._keeper.worker_id
        if worker is not None:
            self._keeper.worker_id = None
            with contextlib.suppress(JournalError):
                await self._heartbeat.run(
                    lambda c: c.execute(self._sql["RELEASE"], {"w": worker})
                )
        for conn in (self._writes, self._control, self._heartbeat):
            await trio.to_thread.run_sync(conn.close)

    def hold(self) -> contextlib.AbstractAsyncContextManager[trio.CancelScope]:
        """Keep this worker's lease renewed while the block runs.

        Yields a :class:`trio.CancelScope`, not entered, for the caller to
        run its work under (``with scope:``): its deadline is the local
        lease deadline (the renewal's send time + lease - a
        tenth), pushed forward by each renewal. When a renewal fails or
        finds the lease lapsed, the deadline stays, so the work is cancelled
        before another worker can claim its runs.
        """
        return self._keeper.hold()

    # -- the lease keeper's calls, on the heartbeat connection --------------------

    async def _register(self) -> str:
        await self._ready()
        host, pid = socket.gethostname(), os.getpid()
        worker = f"{host}:{pid}:{secrets.token_hex(4)}"
        params = {"w": worker, "host": host, "pid": pid, "lease": self._lease}
        await self._heartbeat.run(lambda c: c.execute(self._sql["REGISTER"], params))
        return worker

    async def _renew(self, worker: str) -> bool:
        params = {"w": worker, "lease": self._lease}
        sql = self._sql["RENEW"]
        return bool(
            await self._heartbeat.run(lambda c: c.execute(sql, params).rowcount)
        )

    async def _expire(self, worker: str) -> None:
        sql = self._sql["EXPIRE"]
        await self._heartbeat.run(lambda c: c.execute(sql, {"w": worker}))

    # -- runs ----------------------------------------------------------------------

    async def create_run(self, run_id: str, *, scene: str, state: bytes) -> Fence:
        """Create a RUNNING run held by this worker, epoch 1, claims 0.

        Raises:
            RunIdInUseError: the id is taken (by a run of any status).
            LeaseLostError: this worker's lease lapsed before the insert.
        """
        check_str(run_id, "run_id")
        check_str(scene, "scene")
        if not isinstance(state, bytes):
            raise TypeError(f"state must be bytes, got {type(state).__name__}")
        worker = await self._keeper.fresh()
        try:
            return await self._create(run_id, scene, state, worker)
        except LeaseLostError:
            # The server says this worker's lease lapsed (an operator
            # expired it, or this process was paused): never revive it; the
            # run was not created, so create it under a new id.
            await self._keeper.abandon(worker, "the server refused create_run")
        return await self._create(run_id, scene, state, await self._keeper.fresh())

    async def _create(
        self, run_id: str, scene: str, state: bytes, worker: str
    ) -> Fence:
        fence = Fence(run_id=run_id, worker=worker, epoch=1)
        request = AppendRequest(
            fence=fence, prev=None, last=None, state=state, status=None,
            entries=(), scene=scene,
        )  # fmt: skip
        # Shares a statement with concurrent runs' creations and appends.
        await self._batcher.submit(request)
        return fence

    async def append(
        self,
        fence: Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        """Atomically add *entries*, replace the state, set the status.

        Checked in the same statement: (worker, epoch) still hold the run,
        it is RUNNING, the entries continue ``last_seq`` and the writer's
        lease is live on the server's clock. Appends from concurrent runs
        share one statement (group commit); each learns its own verdict.

        Raises:
            LeaseLostError: the writer's lease lapsed (nothing written).
            RunClaimedError: the fence is stale (nothing written).
            JournalError: the entries do not continue the run, or the server
                could not be reached (the message says whether the write is
                known not to have happened).
        """
        if not isinstance(fence, Fence):
            raise TypeError(f"fence must be a Fence, got {fence!r}")
        if status is not None and not isinstance(status, RunStatus):
            raise TypeError(f"status must be a RunStatus or None, got {status!r}")
        if state is not None and not isinstance(state, bytes):
            raise TypeError(f"state must be bytes or None, got {type(state).__name__}")
        rows = []
        for offset, e in enumerate(entries):
            if e.run_id != fence.run_id:
                raise ValueError(
                    f"entries must belong to run {fence.run_id!r}, got {e.run_id!r}"
                )
            if offset and e.seq != entries[0].seq + offset:
                raise ValueError(
                    f"entries' seq must be consecutive, got {[x.seq for x in entries]}"
                )
            data = json.dumps(e.data, separators=(",", ":"), allow_nan=False)
            rows.append((e.run_id, e.seq, e.kind, e.step, e.at, data, e.value))
        request = AppendRequest(
            fence=fence,
            prev=entries[0].seq - 1 if entries else None,
            last=entries[-1].seq if entries else None,
            state=state,
            status=None if status is None else status.value,
            entries=rows,
        )
        await self._batcher.submit(request)

    async def _execute(self, batch: list[AppendRequest]) -> None:
        await execute_batch(self._writes, self._sql, batch, self._where)

    async def claim(
        self,
        run_id: str,
        *,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
        stale_after: float = 0.0,
    ) -> Fence | None:
        """Take one run over (epoch + 1, claims + 1, held by this worker).

        A RUNNING run is claimable when its worker's lease lapsed (or its
        row is gone) and its last write is *stale_after* seconds old; a run
        in another of *statuses* unless it is RUNNING under a live lease.
        Returns None when not claimable; a RUNNING run that used up
        ``max_claims`` goes to NEEDS_INTERVENTION and None is returned.
        """
        check_str(run_id, "run_id")
        wanted = check_statuses(statuses, "statuses")
        stale = check_duration(stale_after, "stale_after")
        if not wanted:
            return None
        claimed = await self._claim(
            "CLAIM_ONE", {"run": run_id, "statuses": wanted, "stale": stale}
        )
        return claimed[0][1] if claimed else None

    async def claim_batch(
        self, *, limit: int, stale_after: float = 0.0
    ) -> tuple[tuple[RunRecord, Fence], ...]:
        """Claim up to *limit* claimable RUNNING runs, oldest write first.

        One statement (``FOR UPDATE SKIP LOCKED``: concurrent claimers split
        the backlog); same rules as :meth:`claim`.
        """
        check_int(limit, "limit", minimum=1)
        stale = check_duration(stale_after, "stale_after")
        return await self._claim("CLAIM_BATCH", {"limit": limit, "stale": stale})

    async def _claim(
        self, name: str, params: dict[str, Any]
    ) -> tuple[tuple[RunRecord, Fence], ...]:
        worker = await self._keeper.fresh()
        token = secrets.token_hex(8)
        params = {**params, "me": worker, "token": token, "max": self._max_claims}
        rows = await claim_settled(self._control, self._sql, name, params)
        out = []
        for row in rows:
            record = q.run_record(row)
            if record.status is RunStatus.RUNNING and row[4] == worker:
                out.append((record, Fence(record.run_id, worker, row[5])))
        return tuple(out)
