"""The worker lease of a PostgresJournal: registration, renewal, self-fencing.

The server's clock decides whether a lease lapsed; this process keeps a
*local* deadline on the trio clock, measured from each renewal's SEND time
(so it falls before the server's whatever the clock offset), minus a tenth
of the lease as margin. Work run under :meth:`LeaseKeeper.hold` is cancelled
at that local deadline unless a renewal pushes it on: a worker that was
paused, partitioned or whose event loop was blocked stops its own runs
before another worker can claim them.

A lapsed lease is never revived. When the local deadline passed, a renewal
answered too late, or the server found the row lapsed or gone, the worker
id is abandoned (best effort: expired on the server at once, so its runs are
claimable now) and a fresh id is registered for new runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from .._saga._journal import JournalError

if TYPE_CHECKING:
    from ._postgres import PostgresJournal


class LeaseKeeper:
    """Registers the worker, renews its lease and fences its holds."""

    def __init__(self, journal: PostgresJournal, lease: float) -> None:
        self._journal = journal
        self._lease = lease
        self.worker_id: str | None = None
        self.valid_until = -math.inf
        self.nursery: trio.Nursery | None = None
        self.last_error: JournalError | None = None
        self._held: dict[trio.CancelScope, str] = {}
        self._beats: set[trio.CancelScope] = set()
        self._lock = trio.Lock()

    def _deadline(self, sent: float) -> float:
        # Under a virtual clock (trio.testing.MockClock) trio time says
        # nothing about the server's: an autojump clock leaps ahead while a
        # statement waits for its thread. Arm no local deadline there; the
        # database still refuses a lapsed writer.
        if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            return math.inf
        return sent + self._lease * 0.9

    async def _pause(self, seconds: float) -> None:
        if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            await trio.to_thread.run_sync(time.sleep, seconds, abandon_on_cancel=True)
        else:
            await trio.sleep(seconds)

    def _live(self) -> bool:
        return self.worker_id is not None and trio.current_time() < self.valid_until

    async def ensure(self) -> str:
        """The current worker id, registering a new one if there is none or
        its local deadline passed."""
        if self._live():
            assert self.worker_id is not None
            return self.worker_id
        async with self._lock:
            if self._live():
                assert self.worker_id is not None
                return self.worker_id
            if self.worker_id is not None:
                await self.abandon(self.worker_id, "it was not renewed in time")
            await self._journal._ready()
            worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
            params = {
                "w": worker,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "lease": self._lease,
            }
            sent = trio.current_time()
            sql = self._journal._sql["REGISTER"]
            await self._journal._heartbeat.run(lambda c: c.execute(sql, params))
            self.worker_id = worker
            self.valid_until = self._deadline(sent)
            return worker

    async def abandon(self, worker: str, why: str) -> None:
        if worker != self.worker_id:
            return
        self.worker_id = None
        self.valid_until = -math.inf
        reason = f"lease lapsed: worker {worker!r}: {why}"
        for scope, holder in list(self._held.items()):
            if holder == worker:
                scope.cancel(reason=reason)
        # Let others claim its runs now rather than when the row expires.
        sql = self._journal._sql["EXPIRE"]
        with contextlib.suppress(JournalError):
            await self._journal._heartbeat.run(lambda c: c.execute(sql, {"w": worker}))

    async def renew(self) -> None:
        """One renewal; on any failure the local deadline simply stays."""
        worker = self.worker_id
        if worker is None:
            await self.ensure()
            return
        if trio.current_time() >= self.valid_until:
            await self.abandon(worker, "its local deadline passed before renewal")
            await self.ensure()
            return
        sql = self._journal._sql["RENEW"]
        params = {"w": worker, "lease": self._lease}
        sent = trio.current_time()
        renewed = await self._journal._heartbeat.run(
            lambda c: c.execute(sql, params).rowcount
        )
        if worker != self.worker_id:
            return
        if not renewed:
            await self.abandon(worker, "the server found it expired or gone")
            await self.ensure()
        elif trio.current_time() >= self.valid_until:
            await self.abandon(worker, "the renewal answered after the local deadline")
            await self.ensure()
        else:
            self.valid_until = self._deadline(sent)
            for scope, holder in self._held.items():
                if holder == worker:
                    scope.deadline = self.valid_until

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The heartbeat task: renew every lease/3 (a tenth after a failure).

        Shielded from outside cancellation: a run cancelled from outside
        still rolls back (shielded), and its undos need the lease; only the
        block that started the heartbeat stops it (:meth:`stop`).
        """
        with trio.CancelScope(shield=True) as scope:
            self._beats.add(scope)
            try:
                task_status.started(scope)
                await self._beat()
            finally:
                self._beats.discard(scope)

    def stop(self, beat: trio.CancelScope | None = None) -> None:
        """Stop one heartbeat (by the scope :meth:`run` started with), or all."""
        for scope in [beat] if beat is not None else list(self._beats):
            scope.cancel(reason="heartbeat stopped: its block ended")

    async def _beat(self) -> None:
        failed = False
        while True:
            await self._pause(self._lease / (10 if failed else 3))
            try:
                await self.renew()
            except JournalError as exc:
                self.last_error, failed = exc, True
            else:
                self.last_error, failed = None, False

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[trio.CancelScope]:
        """See :meth:`PostgresJournal.hold`: yields a scope (not entered)
        whose deadline follows this registration's local lease deadline."""
        worker = await self.ensure()
        scope = trio.CancelScope(deadline=self.valid_until)
        self._held[scope] = worker
        try:
            if self.nursery is not None:
                yield scope
                return
            try:
                async with trio.open_nursery() as nursery:
                    beat = await nursery.start(self.run)
                    try:
                        yield scope
                    finally:
                        self.stop(beat)
            except BaseExceptionGroup as group:
                # The heartbeat never raises: the group holds the block's own
                # exception, which the caller must see as it was raised.
                raise _unwrap(group) from None
        finally:
            del self._held[scope]


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    if len(group.exceptions) == 1:
        inner = group.exceptions[0]
        return _unwrap(inner) if isinstance(inner, BaseExceptionGroup) else inner
    return group
