"""The error group's tasks: spawning, recording outcomes, the first failure.

A group is a trio nursery whose tasks run in wrappers that never let
an :exc:`Exception` escape into the nursery: the wrapper records the task's
:class:`Outcome`, and on the first failure records it *before* cancelling the
group's :class:`CancellationScope`, so a failure racing in the same turn can
never take its place. Peers see :exc:`trio.Cancelled` in that same scheduling
turn. Entry, exit and compensation are :mod:`._open`'s job.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVarTuple, final

import trio

from .._cancel import CancellationScope
from .._compensation import (
    CompensationPolicy,
    CompensationReport,
    CompensationScope,
)
from .._context import StepContext
from .._events import Emitter, Observer
from .._outcome import CancelCause, CancelReason, Outcome, Status, describe_error
from .._retry import RetryPolicy
from .._util import NoPublicConstructor, lone_cancelled
from .._validate import CO_COROUTINE as _CO_COROUTINE
from .._validate import (
    check_async,
    check_enum,
    check_label,
    check_name,
    describe_callable,
)
from ._events import ErrGroupStatistics, GroupCancelled, GroupTaskFinished
from ._records import TaskRecords

PosArgsT = TypeVarTuple("PosArgsT")

BODY = "<body>"
"""The name under which a failure of the ``async with`` body is recorded."""


_Queued = tuple[
    int, Callable[..., Awaitable[object]], tuple[object, ...], "StepContext[Any] | None"
]


@final
class ErrGroup(TaskRecords, metaclass=NoPublicConstructor):
    """A running error group; get one from open_err_group().

    There is no public constructor: a group is only usable inside the
    ``async with`` block that owns its nursery, so ``ErrGroup(...)`` raises
    :exc:`TypeError` (as ``trio.Nursery(...)`` does).
    """

    __slots__ = (
        "_active",
        "_closed",
        "_compensation_policy",
        "_compensation_retry",
        "_compensation_timeout",
        "_emit",
        "_failed",
        "_failure",
        "_limit",
        "_name",
        "_node",
        "_now",
        "_nursery",
        "_queue",
        "_root",
        "compensation_report",
    )

    def __init__(
        self,
        *,
        name: str,
        limit: int | None,
        compensation: CompensationPolicy,
        compensation_retry: RetryPolicy | None,
        compensation_timeout: float | None,
        observer: Observer | Sequence[Observer] | None,
    ) -> None:
        # Arguments were checked by open_err_group (the only caller).
        super().__init__()
        self._name = name
        self._limit = limit
        self._queue: deque[_Queued] = deque()
        self._compensation_policy = compensation
        self._compensation_retry = compensation_retry
        self._compensation_timeout = compensation_timeout
        self._emit = Emitter(observer)
        self._node = CancellationScope(name)
        self._root: StepContext[Any] = StepContext(name, cancellation=self._node)
        self._nursery: trio.Nursery | None = None
        # The clock's own method, bound once: trio.current_time() goes through
        # a KI-protection wrapper that costs as much again, per call.
        self._now: Callable[[], float] = trio.current_time
        self._failure: Exception | None = None
        self._closed = False
        self._active = 0  # started tasks that have not ended (<= limit)
        self._failed = 0
        self.compensation_report: CompensationReport | None = None
        """The report of the compensation run, once one ran."""

    def __repr__(self) -> str:
        return f"<trio_sagas.ErrGroup {self._name!r} tasks={len(self._names)}>"

    @property
    def name(self) -> str:
        """The group's name (also the path of its cancellation node)."""
        return self._name

    @property
    def compensation(self) -> CompensationScope:
        """The group's undo actions; steps' actions are absorbed into it."""
        return self._root.compensation

    @property
    def cancellation(self) -> CancellationScope:
        """The cancellation node every task of the group runs under."""
        return self._node

    @property
    def outcomes(self) -> tuple[Outcome[Any], ...]:
        """One outcome per finished task, in the order the tasks were started."""
        return self._finished_outcomes()

    @property
    def failure(self) -> Exception | None:
        """The first failure, if any (the one the group raises)."""
        return self._failure

    @property
    def cause(self) -> CancelCause | None:
        """Why the group cancelled its tasks, if it did.

        The group's cancellation node is the one record of it: a cancel
        through ``group.cancel()``, a failure, or ``group.cancellation.cancel()``
        (which steps can reach as ``ctx.cancellation``) all count.
        """
        return self._node.cause

    def statistics(self) -> ErrGroupStatistics:
        """A snapshot of the group's tasks."""
        return ErrGroupStatistics(
            running=len(self._started) - len(self._finished),
            waiting=len(self._queue),
            finished=len(self._statuses),
            failed=self._failed,
        )

    # -- starting tasks ---------------------------------------------------------

    def start_soon(
        self,
        fn: Callable[[*PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: str | None = None,
    ) -> None:
        """Start ``fn(*args)`` in the group (queued while ``limit`` tasks run).

        As with :meth:`trio.Nursery.start_soon`, the task starts at the next
        scheduling turn, not before this call returns. With a ``limit``, a
        task beyond it waits in a queue (holding no trio task) and starts, in
        submission order, when a running task ends; once the group is
        cancelled, queued tasks end SKIPPED without running. Calling it after
        the ``async with`` block has exited is a :exc:`RuntimeError`: a task
        never outlives its group.

        Args:
            fn: An async function; a :exc:`Exception` it raises is the
                group's failure (the first one cancels the others).
            *args: Positional arguments for *fn*.
            name: The task's name in outcomes and events; defaults to the
                function's qualified name.

        Raises:
            TypeError: *fn* is not an async function.
            RuntimeError: the group's block has exited.
        """
        # The checks and _spawn() inlined for a plain async function (the
        # common case): spawn+join is timed against a bare trio nursery.
        code = getattr(fn, "__code__", None)
        if code is None or not code.co_flags & _CO_COROUTINE:
            check_async(fn, "fn")
            code = None
        if name is not None:
            label = check_label(name, "name")
        elif code is not None:
            label = fn.__qualname__
        else:
            label = describe_callable(fn)
        nursery = self._nursery
        if (
            nursery is None
            or self._closed
            or self._queue
            or (self._limit is not None and self._active >= self._limit)
        ):
            self._spawn(label, fn, args, None)
            return
        slot = len(self._names)
        self._names.append(label)
        self._active += 1
        # A str name spares trio from formatting one from the function.
        nursery.start_soon(self._run_task, slot, fn, args, None, name=label)

    def start_step(
        self,
        fn: Callable[[StepContext[Any], *PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: str | None = None,
    ) -> None:
        """Start ``fn(ctx, *args)`` with a child StepContext.

        Ordering and misuse as for :meth:`start_soon`. The step's registered
        compensations are absorbed into the group's scope when it ends,
        however it ends (a cancelled step's partial undo is kept).

        Raises:
            TypeError: *fn* is not an async function.
            ValueError: *name* is empty or contains ``/``.
            RuntimeError: the group's block has exited.
        """
        check_async(fn, "fn")
        label = check_name(describe_callable(fn) if name is None else name, "name")
        self._spawn(label, fn, args, self._root.child(label))

    def try_start_soon(
        self,
        fn: Callable[[*PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: str | None = None,
    ) -> bool:
        """Start ``fn(*args)`` unless ``limit`` tasks are running; say which."""
        if self._limit is not None and self._active >= self._limit:
            check_async(fn, "fn")
            return False
        self.start_soon(fn, *args, name=name)
        return True

    def cancel(
        self,
        reason: CancelReason = CancelReason.MANUAL,
        *,
        triggered_by: str | None = None,
        message: str | None = None,
    ) -> None:
        """Abort the group: running tasks end CANCELLED, compensation runs.

        With the default ``MANUAL`` reason the block then exits normally. Does
        nothing if the group was already cancelled (the first cause wins).

        Args:
            reason: Why (its origin follows from it, as for
                :meth:`CancellationScope.cancel`).
            triggered_by: What caused it, for the cause and trio's reason text.
            message: Extra text for humans.
        """
        check_enum(reason, CancelReason, "reason")
        self._cancel(reason, triggered_by, message or f"group {self._name!r} cancelled")

    def _spawn(
        self,
        label: str,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        ctx: StepContext[Any] | None,
    ) -> None:
        nursery = self._nursery
        if nursery is None or self._closed:
            raise RuntimeError(f"error group {self._name!r} is not running")
        slot = self._new_record(label)
        if self._limit is not None and self._active >= self._limit:
            # FIFO: queued work holds no trio task, and starts in the order
            # it was submitted as running tasks end.
            self._queue.append((slot, fn, args, ctx))
            return
        self._active += 1
        nursery.start_soon(self._run_task, slot, fn, args, ctx, name=label)

    def _start_next(self) -> None:
        if trio.current_effective_deadline() == -math.inf:
            # Cancelled from outside: nothing queued may start any more.
            self._skip_queued(self._node.cause or CancelCause.external())
            return
        slot, fn, args, ctx = self._queue.popleft()
        self._active += 1
        assert self._nursery is not None
        self._nursery.start_soon(
            self._run_task, slot, fn, args, ctx, name=self._names[slot]
        )

    def _skip_queued(self, cause: CancelCause) -> None:
        while self._queue:
            slot = self._queue.popleft()[0]
            self._finish(slot, Status.SKIPPED, None, cause=cause)

    # -- the task wrapper -------------------------------------------------------

    def _finish(
        self,
        slot: int,
        status: Status,
        started: float | None,
        *,
        value: object = None,
        error: BaseException | None = None,
        cause: CancelCause | None = None,
    ) -> None:
        now = self._now()
        self._statuses[slot] = status
        self._started[slot] = started
        self._finished[slot] = now
        if value is not None or error is not None or cause is not None:
            self._extras[slot] = (value, error, cause)
        if self._emit.enabled:
            outcome = self._outcome(slot)
            assert outcome is not None
            self._emit(GroupTaskFinished(at=now, group=self._name, outcome=outcome))

    async def _run_task(
        self,
        slot: int,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        ctx: StepContext[Any] | None,
    ) -> None:
        try:
            if self._node._cause is not None:
                # Started once the group was cancelled: never run it. (An
                # outside cancel is not checked here: that walks the whole
                # scope chain on every spawn, 13% of a trivial task's cost;
                # the task then meets it at its first checkpoint, as in trio.)
                self._finish(slot, Status.SKIPPED, None, cause=self._node.cause)
                return
            # Written now: started-but-unfinished tasks are the running ones.
            started = self._started[slot] = self._now()
            try:
                value = await (fn(*args) if ctx is None else fn(ctx, *args))
            except Exception as exc:
                self._finish(slot, Status.FAILED, started, error=exc)
                self._fail(self._names[slot], exc)
            except BaseException as exc:
                self._task_interrupted(slot, started, exc)
                raise
            else:
                # _finish() inlined for the common case: a success with
                # nobody listening (saves ~0.3 us per task, a tenth of the
                # group's overhead over a bare nursery).
                if self._emit.enabled:
                    self._finish(slot, Status.SUCCEEDED, started, value=value)
                else:
                    self._statuses[slot] = Status.SUCCEEDED
                    self._finished[slot] = self._now()
                    if value is not None:
                        self._extras[slot] = (value, None, None)
            finally:
                if ctx is not None:
                    pending = ctx._pending_compensation()
                    if pending is not None:
                        self._root.compensation.absorb(pending)
        finally:
            self._active -= 1
            if self._queue:
                self._start_next()

    def _task_interrupted(self, slot: int, started: float, exc: BaseException) -> None:
        """Record a task that ended in a BaseException (the caller re-raises it)."""
        cancelled = lone_cancelled(exc)
        if cancelled is not None:
            # Known by construction: if our node was cancelled it says why;
            # otherwise the Cancelled came from an enclosing scope.
            cause = self._node.cause or CancelCause.from_cancelled(cancelled)
            self._finish(slot, Status.CANCELLED, started, cause=cause)
            return
        if isinstance(exc, BaseExceptionGroup):
            split, rest = exc.split(trio.Cancelled)
            # split() derives an ExceptionGroup when the rest are all
            # Exceptions; typeshed only knows the base type.
            failed: BaseException | None = rest
            if split is not None and isinstance(failed, Exception):
                # A failure that raced with a cancel: it is the task's
                # failure, and the Cancelled part goes on to its scope.
                self._finish(slot, Status.FAILED, started, error=failed)
                self._fail(self._names[slot], failed)
                raise split from None
        self._finish(slot, Status.FAILED, started, error=exc)

    def _fail(self, name: str, error: Exception) -> None:
        self._failed += 1
        if self._failure is None:
            # Record first, then cancel: a failure racing in this same turn
            # finds _failure set and cannot take its place.
            self._failure = error
            self._cancel(CancelReason.STEP_FAILED, name, describe_error(error))

    def _cancel(
        self, reason: CancelReason, triggered_by: str | None, message: str
    ) -> None:
        if not self._node.cancel(reason, triggered_by=triggered_by, message=message):
            return  # the first cancel wins
        if self._emit.enabled:
            cause = self._node.cause
            assert cause is not None
            self._emit(GroupCancelled(at=self._now(), group=self._name, cause=cause))

    def _body_failed(self, error: Exception) -> None:
        """The ``async with`` body raised: a failure like a task's."""
        body = self._new_record(BODY)
        self._finish(body, Status.FAILED, None, error=error)
        self._fail(BODY, error)
