"""A journal kept in memory, for tests on virtual time (no threads).

It implements the :class:`trio_sagas.Journal` protocol with the same
semantics as SQLiteJournal, and remembers every write so that a test can
build the journal as a crash after the n-th write would have left it
(:meth:`MemoryJournal.as_after`). ``fail_at`` makes the n-th write raise a
JournalError (a broken disk); ``gate`` makes writes wait for it (a slow
disk), without being cancellable once begun, as the protocol requires.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

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


class MemoryJournal:
    """The Journal protocol over dicts."""

    def __init__(self, codec: Codec | None = None) -> None:
        self._codec = codec or JSONCodec()
        self.records: dict[str, RunRecord] = {}
        self.entries: dict[str, list[JournalEntry]] = {}
        self.writes: list[Callable[[MemoryJournal], None]] = []
        self.fail_at: int | None = None
        self.gate: trio.Event | None = None

    @property
    def codec(self) -> Codec:
        return self._codec

    async def _write(self, op: Callable[[MemoryJournal], None]) -> None:
        if self.gate is not None:
            with trio.CancelScope(shield=True):  # a write in flight finishes
                await self.gate.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self.fail_at is not None and len(self.writes) + 1 >= self.fail_at:
            raise JournalError("disk full (test)")
        op(self)
        self.writes.append(op)

    def as_after(self, writes: int) -> MemoryJournal:
        """A new journal holding only the first *writes* writes."""
        copy = MemoryJournal(self._codec)
        for op in self.writes[:writes]:
            op(copy)
            copy.writes.append(op)
        return copy

    async def create_run(
        self, run_id: str, *, scene: str, owner: str, state: bytes
    ) -> None:
        if run_id in self.records:
            raise RunIdInUseError(f"run id {run_id!r} is in use")
        now = time.time()

        def op(j: MemoryJournal) -> None:
            j.records[run_id] = RunRecord(
                run_id, scene, RunStatus.RUNNING, state, owner, now, now, -1
            )
            j.entries[run_id] = []

        await self._write(op)

    async def append(
        self,
        run_id: str,
        entries: Sequence[JournalEntry],
        *,
        owner: str,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        record = self.records[run_id]
        if record.owner != owner or record.status is not RunStatus.RUNNING:
            raise RunClaimedError(f"run {run_id!r} is not owned by {owner!r}")
        batch = list(entries)

        def op(j: MemoryJournal) -> None:
            old = j.records[run_id]
            final = status is not None and status is not RunStatus.RUNNING
            j.records[run_id] = attrs.evolve(
                old,
                state=old.state if state is None else state,
                status=old.status if status is None else status,
                owner=None if final else old.owner,
                last_seq=batch[-1].seq if batch else old.last_seq,
            )
            j.entries[run_id].extend(batch)

        await self._write(op)

    async def claim(
        self,
        run_id: str,
        *,
        owner: str,
        stale_after: float = 0.0,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
    ) -> bool:
        await trio.lowlevel.checkpoint()
        record = self.records.get(run_id)
        if record is None or record.status not in set(statuses):
            return False
        self.records[run_id] = attrs.evolve(
            record, owner=owner, status=RunStatus.RUNNING
        )
        return True

    async def get_run(self, run_id: str) -> RunRecord | None:
        await trio.lowlevel.checkpoint()
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
        return tuple(self.entries.get(run_id, ()))
