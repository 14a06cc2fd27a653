"""The worker-lease keeper every journal backend shares.

A backend supplies two calls on its own clock -- ``register() -> worker id``
and ``renew(worker_id) -> bool`` (False: the lease had lapsed or the row is
gone; a lapsed lease is never revived) -- and the keeper does the rest:
renews every lease/3, keeps the *local* lease deadline (trio clock at the
renewal's send time + lease - lease/10) and holds it as the deadline of every
cancel scope handed out by :meth:`LeaseKeeper.hold`. A renewal that fails or
finds the lease lapsed moves no deadline, so the runs under it are cancelled
before another worker can claim them, even if the event loop was blocked.
After a lapse the keeper registers a new worker id for new runs; scopes
opened under the old id are never pushed again.

A backend whose lease runs on the host's clock (SQLite) passes
``host_clock=True``: under a virtual trio clock (:class:`trio.testing.MockClock`)
trio time says nothing about host time -- an autojump clock leaps ahead while
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
        host_clock: bool = False,
    ) -> None:
        self.host_clock = host_clock
        self.lease = lease
        self.margin = lease / 10
        self._register = register
        self._renew = renew
        self.worker_id: str | None = None
        self.deadline = -math.inf
        self._scopes: dict[trio.CancelScope, str] = {}
        self._lock = trio.Lock()
        self.beating = False  # a journal-owned heartbeat task is running
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
        """This worker's id, renewed first if the local deadline passed
        (an idle journal's lease may have lapsed: claim nothing under it)."""
        if self.worker_id is not None and trio.current_time() >= self.deadline:
            await self.renew_once()
        return await self.ensure()

    async def renew_once(self) -> None:
        """One renewal; on success push every scope of this registration."""
        worker_id = await self.ensure()
        sent = trio.current_time()
        try:
            alive = await self._renew(worker_id)
        except Exception as exc:  # the deadline simply does not move
            logger.warning("lease renewal of worker %r failed: %r", worker_id, exc)
            return
        if alive:
            self.deadline = self._local_deadline(sent)
            for scope, owner in self._scopes.items():
                if owner == worker_id:
                    scope.deadline = self.deadline
            return
        logger.warning("lease of worker %r lapsed; registering anew", worker_id)
        async with self._lock:
            if self.worker_id == worker_id:
                self.worker_id = None
        await self.ensure()

    async def heartbeat(
        self,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Renew every lease/3 until stopped (:meth:`stop`, or the scope it
        reports as started).

        Shielded from outside cancellation: a run cancelled from outside
        still rolls back (shielded) and must keep its lease meanwhile; the
        block that started the heartbeat stops it when it ends.
        """
        scope = trio.CancelScope(shield=True)
        self._beats.add(scope)
        try:
            with scope:
                await self.ensure()
                task_status.started(scope)
                while True:
                    if self._virtual():
                        await trio.to_thread.run_sync(
                            time.sleep, self.lease / 3, abandon_on_cancel=True
                        )
                    else:
                        await trio.sleep(self.lease / 3)
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
