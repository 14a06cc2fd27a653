"""The worker-lease keeper every journal backend shares (memory, SQLite,
PostgreSQL).

A backend supplies two calls on its own clock -- ``register() -> worker id``
and ``renew(worker_id) -> bool`` (False: the lease had lapsed or the row is
gone; a lapsed lease is never revived) -- and the keeper does the rest:
renews every lease/3 (lease/10 after a renewal that failed), keeps the *local* lease deadline (trio clock at the
renewal's send time + lease - lease/10) and holds it as the deadline of every
cancel scope handed out by :meth:`LeaseKeeper.hold`. A renewal that fails or
finds the lease lapsed moves no deadline, so the runs under it are cancelled
before another worker can claim them, even if the event loop was blocked.
When the local deadline passed, a renewal answered after it, or the backend
found the lease lapsed, the keeper *gives up* that id: it cancels the scopes held under it, expires it in the
backend (best effort, through ``expire(worker_id)`` when given) so that its
runs are claimable at once rather than when the row runs out, and registers
a new id for new runs. Scopes opened under the old id are never pushed again,
also not by a renewal of that id that was in flight when it was given up (a
write of the worker found the lease lapsed meanwhile).

A backend whose lease runs on a real clock (SQLite's host, PostgreSQL's server) passes
``host_clock=True``: under a virtual trio clock (:class:`trio.testing.MockClock`)
trio time says nothing about that clock -- an autojump clock leaps ahead while
a write waits for its thread -- so there the keeper arms no deadline and
sleeps between renewals in a thread; the journal's fenced writes still refuse
a lapsed writer.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing

from .._events import logger


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a nursery of one body wrapped (else the group)."""
    if len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if isinstance(inner, BaseExceptionGroup):
            return _unwrap(inner)
        return inner
    return group


class LeaseKeeper:
    """Registration, heartbeat and lease-deadline scopes of one worker."""

    def __init__(
        self,
        lease: float,
        register: Callable[[], Awaitable[str]],
        renew: Callable[[str], Awaitable[bool]],
        *,
        expire: Callable[[str], Awaitable[object]] | None = None,
        host_clock: bool = False,
    ) -> None:
        self.host_clock = host_clock
        self._expire = expire
        self.lease = lease
        self.margin = lease / 10
        self._register = register
        self._renew = renew
        self.worker_id: str | None = None
        self.deadline = -math.inf
        self._scopes: dict[trio.CancelScope, str] = {}
        self._lock = trio.Lock()
        self.beating = False  # a journal-owned heartbeat task is running
        self.last_error: Exception | None = None  # of the last renewal, if it failed
        self._beats: set[trio.CancelScope] = set()

    def _virtual(self) -> bool:
        """Whether trio time cannot stand for the journal's (host) clock."""
        return self.host_clock and isinstance(
            trio.lowlevel.current_clock(), trio.testing.MockClock
        )

    def _local_deadline(self, sent: float) -> float:
        if self._virtual():
            return math.inf
        return sent + self.lease - self.margin

    async def ensure(self) -> str:
        """This worker's id, registering it first if needed."""
        worker_id = self.worker_id
        if worker_id is not None:
            # Registered: no lock, whose FIFO hand-offs would cost one
            # scheduler round per waiting run when 1,000 runs start at once.
            await trio.lowlevel.checkpoint()
            return worker_id
        async with self._lock:
            if self.worker_id is None:
                sent = trio.current_time()
                self.worker_id = await self._register()
                self.deadline = self._local_deadline(sent)
            return self.worker_id

    async def fresh(self) -> str:
        """This worker's id; a new one if the local deadline passed (an idle
        journal's lease may have lapsed: create or claim nothing under it)."""
        worker_id = self.worker_id
        if worker_id is not None and trio.current_time() >= self.deadline:
            await self.abandon(worker_id, "its local deadline passed")
        return await self.ensure()

    async def abandon(self, worker_id: str, why: str) -> None:
        """Give *worker_id* up: cancel its scopes, expire it, forget it."""
        async with self._lock:
            if self.worker_id != worker_id:
                return
            self.worker_id = None
            self.deadline = -math.inf
        logger.warning("lease of worker %r given up: %s", worker_id, why)
        reason = f"lease lapsed: worker {worker_id!r}: {why}"
        for scope, owner in list(self._scopes.items()):
            if owner == worker_id:
                scope.cancel(reason=reason)
        if self._expire is not None:
            try:
                await self._expire(worker_id)
            except Exception as exc:  # its row runs out by itself
                logger.warning("expiring worker %r failed: %r", worker_id, exc)

    async def renew_once(self) -> None:
        """One renewal; on success push every scope of this registration.

        A renewal sent after the local deadline, answered after it, or
        refused (lapsed) gives the id up and registers a new one.
        """
        worker_id = await self.ensure()
        sent = trio.current_time()
        if sent >= self.deadline:
            why = "its local deadline passed before renewal"
        else:
            try:
                alive = await self._renew(worker_id)
            except Exception as exc:  # the deadline simply does not move
                self.last_error = exc
                logger.warning("lease renewal of worker %r failed: %r", worker_id, exc)
                return
            self.last_error = None
            if self.worker_id != worker_id:
                # Given up while the renewal was in flight: its answer is moot.
                return
            if not alive:
                why = "the journal found it lapsed"
            elif trio.current_time() >= self.deadline:
                why = "the renewal answered after the local deadline"
            else:
                self.deadline = self._local_deadline(sent)
                for scope, owner in self._scopes.items():
                    if owner == worker_id:
                        scope.deadline = self.deadline
                return
        await self.abandon(worker_id, why)
        await self.ensure()

    async def heartbeat(
        self,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Renew every lease/3 (lease/10 after a failed renewal) until stopped
        (:meth:`stop`, or the scope it reports as started).

        Shielded from outside cancellation once started: a run cancelled
        from outside still rolls back (shielded) and must keep its lease
        meanwhile; the block that started the heartbeat stops it when it
        ends. The registration before is not shielded: a ``nursery.start``
        cancelled meanwhile (or a Ctrl-C) ends here, as trio's ``started()``
        in a cancelled start would leave a shielded loop nobody stops.
        """
        await self.ensure()
        await trio.lowlevel.checkpoint_if_cancelled()
        scope = trio.CancelScope(shield=True)
        self._beats.add(scope)
        try:
            with scope:
                task_status.started(scope)
                while True:
                    pause = self.lease / (3 if self.last_error is None else 10)
                    if self._virtual():
                        await trio.to_thread.run_sync(
                            time.sleep, pause, abandon_on_cancel=True
                        )
                    else:
                        await trio.sleep(pause)
                    await self.renew_once()
        finally:
            self._beats.discard(scope)

    def stop(self) -> None:
        """Stop every heartbeat of this keeper (a journal's ``__aexit__``)."""
        self.beating = False
        for scope in list(self._beats):
            scope.cancel(reason="journal closed: heartbeat stops")

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[trio.CancelScope]:
        """A scope with the local lease deadline, renewed while the block runs."""
        worker_id = await self.fresh()
        scope = trio.CancelScope(deadline=self.deadline)
        self._scopes[scope] = worker_id
        try:
            if self.beating:
                yield scope
                return
            try:
                async with trio.open_nursery() as nursery:
                    beat = await nursery.start(self.heartbeat)
                    try:
                        yield scope
                    finally:
                        beat.cancel(reason="run ended: heartbeat stops")
            except BaseExceptionGroup as group:
                raise _unwrap(group) from None
        finally:
            del self._scopes[scope]
