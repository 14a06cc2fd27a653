"""This process as a worker of one SQLite journal file.

A worker registers a row in ``workers`` (its id, host, pid and lease), renews
the lease while ``async with journal`` or one of its runs holds it (the
:class:`~trio_sagas._saga._lease.LeaseKeeper` decides when), and gives it up
at the end of ``async with``. The writes are jobs of the journal's group
commit, like any other (:mod:`._sqlite_leases` holds their SQL).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import trio

from .._events import logger
from .._saga._journal import JournalError
from .._saga._lease import LeaseKeeper
from . import _sqlite_leases as leases
from ._store import Store


class Worker:
    """The lease of this process on one journal file, and its heartbeat."""

    __slots__ = ("_cm", "_lease", "_nursery", "_store", "keeper")

    def __init__(self, store: Store, lease: float) -> None:
        self._store = store
        self._lease = lease
        self._nursery: trio.Nursery | None = None
        self._cm: Any = None
        self.keeper = LeaseKeeper(
            lease, self._register, self._renew, expire=self._expire, host_clock=True
        )

    async def _register(self) -> str:
        worker_id, host, pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        return await self._store.write(
            lambda conn: leases.register(conn, worker_id, host, pid, self._lease)
        )

    async def _renew(self, worker_id: str) -> bool:
        return await self._store.write(
            lambda conn: leases.renew(conn, worker_id, self._lease)
        )

    async def _expire(self, worker_id: str) -> bool:
        return await self._store.write(lambda conn: leases.expire(conn, worker_id))

    async def start(self) -> None:
        """Register, and renew the lease until :meth:`stop`."""
        self._cm = trio.open_nursery()
        self._nursery = await self._cm.__aenter__()
        try:
            await self._nursery.start(self.keeper.heartbeat)
        except BaseException:
            # Cancelled or failed while registering: give up a lease the
            # registration may have taken (stop() is shielded).
            await self.stop()
            raise
        self.keeper.beating = True

    async def stop(self) -> None:
        """Stop the heartbeat and give the lease up (shielded: it is one write;
        if it fails, the row runs out by itself: logged, not raised)."""
        self.keeper.stop()
        if self._nursery is not None:
            await self._cm.__aexit__(None, None, None)
            self._nursery = None
        worker_id = self.keeper.worker_id
        if worker_id is not None and not self._store.closed:
            with trio.CancelScope(shield=True):
                try:
                    await self._store.write(
                        lambda conn: leases.unregister(conn, worker_id)
                    )
                except JournalError as exc:
                    # The row runs out by itself; the block's own outcome
                    # (or the error every other call reports) stands.
                    logger.warning("giving up worker %r failed: %s", worker_id, exc)
