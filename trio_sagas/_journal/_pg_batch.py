"""Group commit for PostgresJournal: concurrent runs' appends (and the
creations of new runs) share a statement.

No background task: the first caller that finds no write in flight becomes
the *leader*, takes every queued append (one per run, at most
``max_batch``) and writes them in one statement (one round trip, one WAL
flush); appends that arrive meanwhile queue up for the next leader. Each
caller gets its own verdict: committed, or the error of its own run (a stale
fence or lapsed lease fails that run only).

Cancellation: an append still in the queue when its caller is cancelled is
withdrawn (it never started). Once a leader has taken it, its caller waits
for the verdict shielded and returns it (the cancellation is delivered at
the caller's next checkpoint, as for :func:`trio.to_thread.run_sync`), so
every caller knows whether its write committed before its saga moves on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from .._saga._journal import Fence, JournalError


@attrs.define(eq=False)
class AppendRequest:
    """One caller's fenced append (or, with *scene*, its run's creation:
    *fence* is the one it will hold and *state* the initial state), waiting
    for its verdict."""

    fence: Fence
    prev: int | None
    last: int | None
    state: bytes | None
    status: str | None
    entries: Sequence[tuple[Any, ...]]
    scene: str | None = None
    taken: bool = False
    committed: bool = False
    error: BaseException | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    scope: trio.CancelScope | None = None


Execute = Callable[[list[AppendRequest]], Awaitable[None]]


class AppendBatcher:
    """Turns concurrent :meth:`submit` calls into batched executions.

    Args:
        execute: Writes a batch and sets ``committed`` or ``error`` on each
            request; raising fails every request of the batch.
        max_batch: Most requests per statement.
    """

    __slots__ = ("_busy", "_changed", "_execute", "_max_batch", "_queue", "batches")

    def __init__(self, execute: Execute, *, max_batch: int) -> None:
        self._execute = execute
        self._max_batch = max_batch
        self._queue: list[AppendRequest] = []
        self._busy = False
        self._changed = trio.Event()
        self.batches = 0

    async def submit(self, request: AppendRequest) -> None:
        """Queue *request*, lead or wait, and raise its error if it failed."""
        self._queue.append(request)
        while not request.done.is_set():
            if not self._busy:
                self._busy = True
                # Let the runs woken by the previous verdicts queue their
                # next appends first: they then share this statement
                # (without it, batches alternate between 1 and n - 1). Tasks
                # woken with this one may run after it in the next scheduling
                # round, so yield two rounds, and more while the queue grows.
                queued = -1
                for _ in range(2 + 2):
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    if len(self._queue) == queued:
                        break
                    queued = len(self._queue)
                await self._lead()
                continue
            changed = self._changed
            try:
                with trio.CancelScope() as request.scope:
                    await changed.wait()
            except trio.Cancelled:
                if not request.taken:
                    self._queue.remove(request)
                    raise
                # Taken by a leader in the instant the cancel arrived: the
                # write is under way, so its verdict is what the caller
                # needs. The scope stays cancelled; the caller's next
                # checkpoint raises again.
                with trio.CancelScope(shield=True):
                    await request.done.wait()
            finally:
                request.scope = None
        if request.error is not None:
            raise request.error

    def _take(self) -> list[AppendRequest]:
        batch: list[AppendRequest] = []
        runs: set[str] = set()
        rest: list[AppendRequest] = []
        for request in self._queue:
            run_id = request.fence.run_id
            if len(batch) < self._max_batch and run_id not in runs:
                runs.add(run_id)
                request.taken = True
                if request.scope is not None:
                    request.scope.shield = True
                batch.append(request)
            else:
                rest.append(request)
        self._queue = rest
        return batch

    async def _lead(self) -> None:
        batch = self._take()
        try:
            # Bounded by the connection's timeouts; a batch in flight is
            # never abandoned, whoever leads it is cancelled.
            with trio.CancelScope(shield=True):
                self.batches += 1
                await self._execute(batch)
        except Exception as exc:
            for request in batch:
                if not request.committed and request.error is None:
                    request.error = exc
        finally:
            self._busy = False
            for request in batch:
                if not request.committed and request.error is None:
                    request.error = JournalError(
                        f"the append to run {request.fence.run_id!r} was "
                        "interrupted: whether it committed is unknown"
                    )
                request.done.set()
            changed, self._changed = self._changed, trio.Event()
            changed.set()
