"""Group commit: one thread owns the write connection and drains a queue.

Every write of a :class:`~trio_sagas.SQLiteJournal` (create a run, append,
claim, ...) is a *job*: a function of the connection that raises to refuse.
Callers queue jobs; one writer thread takes everything queued (up to
:data:`MAX_BATCH` jobs) and runs it as ONE transaction in which a job that
fails rolls back only itself (how: :meth:`._store.Store._execute`). While
that transaction commits (the ``fsync`` that dominates the cost), new jobs
queue up for the next one: under load, one sync carries the writes of many
runs (group commit), and a lone writer pays one commit per write as before.
The writer is woken only when it waits for work, and a batch's verdicts
reach each trio run in one ``run_sync_soon``: a hand-off per batch, not per
write.

Each caller learns its own verdict only after the COMMIT returned (or
failed: then every job of the batch fails with that error, and none of them
was written). A caller cancelled while its job is still queued withdraws it
(nothing is written; :exc:`trio.Cancelled` is raised); once the writer has
taken the job, cancellation waits for the verdict, as
``trio.to_thread.run_sync`` does by default, so a caller always knows
whether its write happened.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import attrs
import outcome
import trio

T = TypeVar("T")

MAX_BATCH: Final = 1024
"""Jobs per transaction at most (bounds one batch's latency and memory)."""

_QUEUED, _TAKEN, _WITHDRAWN = range(3)

Job = Callable[[Any], Any]
Executor = Callable[[Sequence[Job]], list[outcome.Outcome[Any]]]


class _Request:
    """One queued job; also its own ``abort_fn`` (no closure per write)."""

    __slots__ = ("cond", "job", "result", "state", "task", "token")

    def __init__(
        self,
        cond: threading.Condition,
        job: Job,
        task: trio.lowlevel.Task,
        token: trio.lowlevel.TrioToken,
    ) -> None:
        self.cond = cond
        self.job = job
        self.task = task
        self.token = token
        self.state = _QUEUED
        self.result: outcome.Outcome[Any] | None = None

    def __call__(self, _: object) -> trio.lowlevel.Abort:
        """The caller is cancelled: withdraw the job if it was not begun."""
        with self.cond:
            if self.state == _QUEUED:
                self.state = _WITHDRAWN  # never started: nothing written
                return trio.lowlevel.Abort.SUCCEEDED
        # Begun: the writer reschedules the caller with the verdict.
        return trio.lowlevel.Abort.FAILED


@attrs.frozen
class WriterStatistics:
    """What the writer has done: ``jobs / batches`` is the mean group size.

    Attributes:
        batches: Transactions run (committed or failed).
        jobs: Writes in them.
        queued: Writes waiting for the next transaction.
        in_flight: Writes in the transaction running now (0: idle).
        largest_batch: The most writes one transaction held.
    """

    batches: int
    jobs: int
    queued: int
    in_flight: int
    largest_batch: int


class GroupWriter:
    """The queue and the thread; *execute* runs one batch (never raises).

    *execute* gets the jobs of one batch and returns one outcome per job; it
    runs in the writer thread only, so it may own a connection.
    """

    def __init__(
        self, execute: Executor, *, name: str, closed: Callable[[], Exception]
    ) -> None:
        self._execute = execute
        self._name = name
        self._closed_error = closed
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Request] = collections.deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._idle = False  # the thread waits for work (only then notify it)
        self._batches = 0
        self._jobs = 0
        self._largest = 0
        self._in_flight = 0

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (new jobs are refused)."""
        return self._stopping

    def statistics(self) -> WriterStatistics:
        with self._cond:
            queued = sum(r.state == _QUEUED for r in self._queue)
            return WriterStatistics(
                self._batches, self._jobs, queued, self._in_flight, self._largest
            )

    async def run(self, job: Callable[[Any], T]) -> T:
        """Queue *job*, wait until its batch committed, return its result."""
        cond = self._cond
        request = _Request(
            cond, job, trio.lowlevel.current_task(), trio.lowlevel.current_trio_token()
        )
        with cond:
            if self._stopping:
                raise self._closed_error()
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=self._name, daemon=True
                )
                self._thread.start()
            elif self._idle:
                # One wake-up per batch: a busy writer takes the queue when
                # its transaction ends, without being told.
                cond.notify()
        result: T = await trio.lowlevel.wait_task_rescheduled(request)
        return result

    def stop(self) -> None:
        """Refuse new jobs, finish the queued ones, end the thread (blocking)."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        cond, queue = self._cond, self._queue
        while True:
            with cond:
                while not queue and not self._stopping:
                    self._idle = True
                    cond.wait()
                self._idle = False
                if not queue:
                    return  # stopping, and everything queued is done
                batch: list[_Request] = []
                while queue and len(batch) < MAX_BATCH:
                    request = queue.popleft()
                    if request.state == _QUEUED:
                        request.state = _TAKEN
                        batch.append(request)
                self._in_flight = len(batch)
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Request]) -> None:
        try:
            results = self._execute([r.job for r in batch])
        except BaseException as exc:
            # A bug in the executor: every caller re-raises it (nothing committed).
            results = [outcome.Error(exc) for _ in batch]
        with self._cond:
            self._batches += 1
            self._jobs += len(batch)
            self._largest = max(self._largest, len(batch))
            self._in_flight = 0
        token: trio.lowlevel.TrioToken | None = batch[0].token
        for request, result in zip(batch, results, strict=True):
            request.result = result
            if request.token is not token:
                token = None  # callers from several trio runs (rare)
        groups: dict[trio.lowlevel.TrioToken, list[_Request]] = {}
        if token is not None:
            groups[token] = batch
        else:
            for request in batch:
                groups.setdefault(request.token, []).append(request)
        for token, requests in groups.items():
            # RunFinishedError: the waiting tasks' run is gone, nobody to tell.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_reschedule_all, requests)


def _reschedule_all(requests: list[_Request]) -> None:
    """In the callers' trio run: one wake-up delivers a whole batch's verdicts."""
    for request in requests:
        result, request.result = request.result, None
        assert result is not None
        trio.lowlevel.reschedule(request.task, result)
