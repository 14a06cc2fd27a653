"""A journal kept in memory, for tests on virtual time (no threads).

It implements the :class:`trio_sagas.Journal` protocol with the same
semantics as SQLiteJournal -- worker leases on the *trio* clock, epoch
fencing -- and remembers every write so that a test can build the journal as
a crash after the n-th write would have left it (:meth:`MemoryJournal.as_after`).
``fail_at`` makes the n-th write raise a JournalError (a broken disk); ``gate``
makes writes wait for it (a slow disk), without being cancellable once begun,
as the protocol requires. ``stall_renewals`` makes heartbeats hang (a paused
or partitioned worker). Several MemoryJournal objects may share one store
(:meth:`MemoryJournal.worker`): each is a worker of its own, as several
processes opening one SQLite file are.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import attrs
import trio

from trio_sagas import (
    Codec,
    JournalEntry,
    JournalError,
    JSONCodec,
    RunClaimedError,
    RunIdInUseError,
    RunRecord,
    RunStatus,
)
from trio_sagas._saga._journal import (
    DEFAULT_LEASE,
    DEFAULT_MAX_CLAIMS,
    ClaimedRun,
    Fence,
    LeaseLostError,
    WorkerRecord,
)
from trio_sagas._saga._lease import LeaseKeeper

_ids = itertools.count(1)


class _Store:
    """What several workers of one journal share."""

    def __init__(self) -> None:
        self.records: dict[str, RunRecord] = {}
        self.entries: dict[str, list[JournalEntry]] = {}
        self.workers: dict[str, WorkerRecord] = {}


class MemoryJournal:
    """The Journal protocol over dicts."""

    def __init__(
        self,
        codec: Codec | None = None,
        *,
        lease: float = DEFAULT_LEASE,
        max_claims: int = DEFAULT_MAX_CLAIMS,
        store: _Store | None = None,
    ) -> None:
        self._codec = codec or JSONCodec()
        self._lease = lease
        self.max_claims = max_claims
        self.store = store or _Store()
        self.writes: list[Callable[[MemoryJournal], None]] = []
        self.fail_at: int | None = None
        self.gate: trio.Event | None = None
        self.stall_renewals: trio.Event | None = None
        # Journal calls by name (get_run, events, ...): what recovery costs.
        self.calls: collections.Counter[str] = collections.Counter()
        self.keeper = LeaseKeeper(
            lease, self._register, self._renew, expire=self.expire_worker
        )
        self._nursery: trio.Nursery | None = None
        self._cm: Any = None

    def worker(self) -> MemoryJournal:
        """Another worker (another process) on the same store."""
        return MemoryJournal(
            self._codec, lease=self._lease, max_claims=self.max_claims, store=self.store
        )

    @property
    def records(self) -> dict[str, RunRecord]:
        return self.store.records

    @property
    def entries(self) -> dict[str, list[JournalEntry]]:
        return self.store.entries

    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def lease(self) -> float:
        return self._lease

    @property
    def worker_id(self) -> str:
        return self.keeper.worker_id or ""

    # -- leases ------------------------------------------------------------------

    async def _register(self) -> str:
        await trio.lowlevel.checkpoint()
        worker_id = f"w{next(_ids)}"
        now = trio.current_time()
        self.store.workers[worker_id] = WorkerRecord(
            worker_id, "memory", 0, now, now, now + self._lease
        )
        return worker_id

    async def _renew(self, worker_id: str) -> bool:
        if self.stall_renewals is not None:
            await self.stall_renewals.wait()
        await trio.lowlevel.checkpoint()
        row = self.store.workers.get(worker_id)
        now = trio.current_time()
        if row is None or row.expires_at <= now:
            return False
        self.store.workers[worker_id] = attrs.evolve(
            row, renewed_at=now, expires_at=now + self._lease
        )
        return True

    def _live(self, worker_id: str | None) -> bool:
        row = self.store.workers.get(worker_id or "")
        return row is not None and row.expires_at > trio.current_time()

    def hold(self) -> AbstractAsyncContextManager[trio.CancelScope]:
        return self.keeper.hold()

    async def __aenter__(self) -> Self:
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        try:
            await self._nursery.start(self.keeper.heartbeat)
        except BaseException:
            # Cancelled while registering: close the nursery, give the row up.
            await self.__aexit__(None, None, None)
            raise
        self.keeper.beating = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._nursery is not None
        self.keeper.stop()
        await self._cm.__aexit__(None, None, None)
        if self.keeper.worker_id is not None:
            self.store.workers.pop(self.keeper.worker_id, None)

    async def workers(self) -> tuple[WorkerRecord, ...]:
        await trio.lowlevel.checkpoint()
        return tuple(self.store.workers.values())

    async def expire_worker(self, worker_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        row = self.store.workers.get(worker_id)
        if row is None:
            return False
        self.store.workers[worker_id] = attrs.evolve(
            row, expires_at=trio.current_time()
        )
        return True

    # -- writes ------------------------------------------------------------------

    async def _write(
        self, op: Callable[[MemoryJournal], None], check: Callable[[], None]
    ) -> None:
        if self.gate is not None:
            with trio.CancelScope(shield=True):  # a write in flight finishes
                await self.gate.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self.fail_at is not None and len(self.writes) + 1 >= self.fail_at:
            raise JournalError("disk full (test)")
        check()  # at commit time, as the one SQL statement does
        op(self)
        self.writes.append(op)

    def as_after(self, writes: int) -> MemoryJournal:
        """A new journal (no workers) holding only the first *writes* writes."""
        copy = MemoryJournal(self._codec, lease=self._lease, max_claims=self.max_claims)
        for op in self.writes[:writes]:
            op(copy)
            copy.writes.append(op)
        return copy

    async def create_run(self, run_id: str, *, scene: str, state: bytes) -> Fence:
        for attempt in range(2):
            worker = await self.keeper.fresh()
            try:
                await self._create(run_id, scene, state, worker)
            except LeaseLostError:
                if attempt:
                    raise
                # Never revive a lapsed lease: create under a new id.
                await self.keeper.abandon(worker, "the journal refused create_run")
            else:
                return Fence(run_id, worker, 1)
        raise AssertionError("unreachable")

    async def _create(self, run_id: str, scene: str, state: bytes, worker: str) -> None:
        now = time.time()

        def check() -> None:
            if run_id in self.records:
                raise RunIdInUseError(f"run id {run_id!r} is in use")
            if not self._live(worker):
                raise LeaseLostError(
                    f"worker {worker!r} lost its lease before creating run {run_id!r}"
                )

        def op(j: MemoryJournal) -> None:
            j.records[run_id] = RunRecord(
                run_id, scene, RunStatus.RUNNING, state, worker, now, now, -1, 1, 0
            )
            j.entries[run_id] = []

        await self._write(op, check)

    async def append(
        self,
        fence: Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        run_id = fence.run_id
        batch = list(entries)

        def check() -> None:
            if not self._live(fence.worker):
                raise LeaseLostError(f"worker {fence.worker!r}: lease lapsed")
            record = self.records[run_id]
            if (
                record.owner != fence.worker
                or record.epoch != fence.epoch
                or record.status is not RunStatus.RUNNING
            ):
                raise RunClaimedError(f"run {run_id!r}: fence {fence} is stale")
            if batch and batch[0].seq != record.last_seq + 1:
                raise JournalError(
                    f"entries for run {run_id!r} do not continue it: its last seq "
                    f"is {record.last_seq}, the first new seq is {batch[0].seq}"
                )

        now = time.time()

        def op(j: MemoryJournal) -> None:
            old = j.records[run_id]
            final = status is not None and status is not RunStatus.RUNNING
            j.records[run_id] = attrs.evolve(
                old,
                state=old.state if state is None else state,
                status=old.status if status is None else status,
                owner=None if final else old.owner,
                last_seq=batch[-1].seq if batch else old.last_seq,
                updated_at=now,
            )
            j.entries[run_id].extend(batch)

        await self._write(op, check)

    def _claimable(
        self, record: RunRecord, statuses: set[RunStatus], stale_after: float
    ) -> bool:
        if record.status not in statuses:
            return False
        if record.status is RunStatus.RUNNING:
            return (
                not self._live(record.owner)
                and record.updated_at <= time.time() - stale_after
            )
        return True

    def _take(self, record: RunRecord, worker: str) -> Fence | None:
        run_id = record.run_id
        if record.status is RunStatus.RUNNING and record.claims + 1 > self.max_claims:
            self.records[run_id] = attrs.evolve(
                record,
                status=RunStatus.NEEDS_INTERVENTION,
                owner=None,
                epoch=record.epoch + 1,  # a zombie cannot write to it
            )
            return None
        epoch = record.epoch + 1
        self.records[run_id] = attrs.evolve(
            record,
            owner=worker,
            status=RunStatus.RUNNING,
            epoch=epoch,
            claims=record.claims + 1,
        )
        return Fence(run_id, worker, epoch)

    async def claim(
        self,
        run_id: str,
        *,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
        stale_after: float = 0.0,
    ) -> Fence | None:
        worker = await self.keeper.fresh()
        await trio.lowlevel.checkpoint()
        self.calls["claim"] += 1
        record = self.records.get(run_id)
        if record is None or not self._claimable(record, set(statuses), stale_after):
            return None
        return self._take(record, worker)

    async def claim_batch(
        self, *, limit: int, stale_after: float = 0.0
    ) -> tuple[tuple[RunRecord, Fence], ...]:
        worker = await self.keeper.fresh()
        await trio.lowlevel.checkpoint()
        out: list[tuple[RunRecord, Fence]] = []
        for record in list(self.records.values()):
            if len(out) >= limit:
                break
            if self._claimable(record, {RunStatus.RUNNING}, stale_after):
                fence = self._take(record, worker)
                if fence is not None:
                    out.append((self.records[record.run_id], fence))
        return tuple(out)

    async def claim_and_load(
        self,
        run_ids: Sequence[str] | None = None,
        *,
        limit: int,
        stale_after: float = 0.0,
    ) -> tuple[ClaimedRun, ...]:
        self.calls["claim_and_load"] += 1
        if run_ids is None:
            # Through claim_batch, so that a test journal overriding it (a
            # failing or counting claim) sees run_worker's claims.
            claimed = await self.claim_batch(limit=limit, stale_after=stale_after)
            return tuple(
                ClaimedRun(record, fence, tuple(self.entries[record.run_id]))
                for record, fence in claimed
            )
        worker = await self.keeper.fresh()
        await trio.lowlevel.checkpoint()
        candidates = [self.records[r] for r in run_ids if r in self.records]
        out: list[ClaimedRun] = []
        for record in candidates:
            if len(out) >= limit:
                break
            if self._claimable(record, {RunStatus.RUNNING}, stale_after):
                fence = self._take(record, worker)
                if fence is not None:
                    run_id = record.run_id
                    entries = tuple(self.entries[run_id])
                    out.append(ClaimedRun(self.records[run_id], fence, entries))
        return tuple(out)

    async def read_events(
        self, run_ids: Sequence[str]
    ) -> tuple[tuple[JournalEntry, ...], ...]:
        await trio.lowlevel.checkpoint()
        self.calls["read_events"] += 1
        return tuple(tuple(self.entries.get(r, ())) for r in run_ids)

    async def get_run(self, run_id: str) -> RunRecord | None:
        await trio.lowlevel.checkpoint()
        self.calls["get_run"] += 1
        return self.records.get(run_id)

    async def runs(
        self, *, status: RunStatus | Iterable[RunStatus] | None = None
    ) -> tuple[RunRecord, ...]:
        await trio.lowlevel.checkpoint()
        wanted = (
            None
            if status is None
            else {status}
            if isinstance(status, RunStatus)
            else set(status)
        )
        return tuple(
            r for r in self.records.values() if wanted is None or r.status in wanted
        )

    async def events(self, run_id: str) -> tuple[JournalEntry, ...]:
        await trio.lowlevel.checkpoint()
        self.calls["events"] += 1
        return tuple(self.entries.get(run_id, ()))

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
        wanted = set(statuses)
        if wanted & {RunStatus.RUNNING, RunStatus.NEEDS_INTERVENTION}:
            raise ValueError(
                f"statuses: never pruned: {sorted(s.name for s in wanted)}"
            )
        await trio.lowlevel.checkpoint()
        cutoff = time.time() - older_than
        gone = [
            r.run_id
            for r in self.records.values()
            if r.status in wanted and r.updated_at <= cutoff
        ]
        for run_id in gone:
            del self.records[run_id]
            del self.entries[run_id]
        return len(gone)
