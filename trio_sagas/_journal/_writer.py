"""Group commit: one thread owns the write connection and drains a queue.

Every write of a :class:`~trio_sagas.SQLiteJournal` (create a run, append,
claim, ...) is a *job*: a function of the connection that raises to refuse.
Callers queue jobs; one writer thread takes everything queued (up to
:data:`MAX_BATCH` jobs) and runs it as ONE transaction, each job inside its
own ``SAVEPOINT`` so that a job that fails rolls back only itself. While that
transaction commits (the ``fsync`` that dominates the cost), new jobs queue
up for the next one: under load, one sync carries the writes of many runs
(group commit), and a lone writer pays one commit per write as before.

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


@attrs.define(eq=False)
class _Request:
    job: Job
    task: trio.lowlevel.Task
    token: trio.lowlevel.TrioToken
    state: int = _QUEUED


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
        request = _Request(
            job, trio.lowlevel.current_task(), trio.lowlevel.current_trio_token()
        )
        with self._cond:
            if self._stopping:
                raise self._closed_error()
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=self._name, daemon=True
                )
                self._thread.start()
            self._cond.notify()

        def abort(_: object) -> trio.lowlevel.Abort:
            with self._cond:
                if request.state == _QUEUED:
                    request.state = _WITHDRAWN  # never started: nothing written
                    return trio.lowlevel.Abort.SUCCEEDED
            # Begun: the writer reschedules us with the verdict.
            return trio.lowlevel.Abort.FAILED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
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
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return  # stopping, and everything queued is done
                batch: list[_Request] = []
                while self._queue and len(batch) < MAX_BATCH:
                    request = self._queue.popleft()
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
        by_token: dict[trio.lowlevel.TrioToken, list[tuple[Any, Any]]] = {}
        for request, result in zip(batch, results, strict=True):
            by_token.setdefault(request.token, []).append((request.task, result))
        for token, verdicts in by_token.items():
            # RunFinishedError: the waiting tasks' run is gone, nobody to tell.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_reschedule_all, verdicts)


def _reschedule_all(verdicts: list[tuple[Any, Any]]) -> None:
    for task, result in verdicts:
        trio.lowlevel.reschedule(task, result)
