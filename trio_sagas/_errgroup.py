"""Error groups: the first failure cancels peers, then compensation runs once.

Layer 3. A group is a trio nursery whose tasks run in wrappers that never let
an :exc:`Exception` escape into the nursery: the wrapper records the task's
:class:`Outcome`, and on the first failure records it *before* cancelling the
group's :class:`CancellationScope`, so a failure racing in the same turn can
never take its place. Peers see :exc:`trio.Cancelled` in that same scheduling
turn. Compensation runs after the nursery has drained (so every step's undo
actions, cancelled steps' included, have been absorbed), shielded, once.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVarTuple, final

import attrs
import trio

from ._cancel import CancellationScope
from ._compensation import (
    CompensationPolicy,
    CompensationReport,
    CompensationScope,
    SagaError,
    StepContext,
    _check_retry,
)
from ._events import Event, Observer, notify
from ._outcome import CancelCause, CancelReason, Outcome, OutcomeError, Status
from ._retry import RetryPolicy
from ._util import is_cancellation, lone_cancelled
from ._validate import (
    check_async,
    check_int,
    check_label,
    check_name,
    check_sync_observer,
    check_timeout,
    describe_callable,
)

PosArgsT = TypeVarTuple("PosArgsT")
logger = logging.getLogger("trio_sagas")

BODY = "<body>"
"""The name under which a failure of the ``async with`` body is recorded."""


@final
@attrs.frozen(kw_only=True)
class GroupTaskFinished(Event):
    """A task of an error group ended (any status); FAILED is a step failure."""

    group: str
    outcome: Outcome[Any]


@final
@attrs.frozen(kw_only=True)
class GroupCancelled(Event):
    """The group cancelled its tasks (first failure, or a manual ``cancel()``)."""

    group: str
    cause: CancelCause


@final
@attrs.frozen(kw_only=True)
class GroupCompensationStarted(Event):
    """Compensation began, after every task had ended."""

    group: str
    actions: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class GroupCompensationCompleted(Event):
    """Compensation ended; ``report`` says how each action went."""

    group: str
    report: CompensationReport


@final
@attrs.frozen
class ErrGroupStatistics:
    """A snapshot of a group's tasks.

    Attributes:
        running: Tasks whose function is running.
        waiting: Tasks queued for a slot under ``limit``.
        finished: Tasks with an outcome.
        failed: Tasks that FAILED.
    """

    running: int
    waiting: int
    finished: int
    failed: int


_Queued = tuple[
    "_Slot", Callable[..., Awaitable[object]], tuple[object, ...], StepContext | None
]


class _Slot:
    """One task's record. Its Outcome is built lazily: constructing a frozen
    attrs record costs ~2 us, as much as spawning the task itself."""

    __slots__ = (
        "_outcome",
        "cause",
        "error",
        "finished",
        "name",
        "started",
        "status",
        "value",
    )

    name: str
    status: Status | None
    value: object
    error: BaseException | None
    cause: CancelCause | None
    started: float | None
    finished: float
    _outcome: Outcome[Any] | None

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = None
        self._outcome = None

    @property
    def outcome(self) -> Outcome[Any] | None:
        if self._outcome is None and self.status is not None:
            self._outcome = Outcome(
                self.name,
                self.status,
                value=self.value,
                error=self.error,
                cause=self.cause,
                started_at=self.started,
                finished_at=self.finished,
            )
        return self._outcome


@final
class ErrGroup:
    """A running error group; get one from :func:`open_err_group`."""

    __slots__ = (
        "_active",
        "_clock",
        "_closed",
        "_compensation_policy",
        "_compensation_retry",
        "_compensation_timeout",
        "_failed",
        "_failure",
        "_limit",
        "_name",
        "_node",
        "_nursery",
        "_observer",
        "_queue",
        "_root",
        "_running",
        "_slots",
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
        observer: Observer | None,
    ) -> None:
        check_name(name)
        if limit is not None:
            check_int(limit, "limit", minimum=1)
        if not isinstance(compensation, CompensationPolicy):
            raise TypeError(
                f"compensation must be a CompensationPolicy, got {compensation!r}"
            )
        _check_retry(compensation_retry)
        check_timeout(compensation_timeout, "compensation_timeout")
        check_sync_observer(observer)
        self._name = name
        self._limit = limit
        self._queue: deque[_Queued] = deque()
        self._compensation_policy = compensation
        self._compensation_retry = compensation_retry
        self._compensation_timeout = compensation_timeout
        self._observer = observer
        self._node = CancellationScope(name)
        self._root = StepContext(name, cancellation=self._node)
        self._nursery: trio.Nursery | None = None
        self._clock: trio.abc.Clock | None = None
        self._slots: list[_Slot] = []
        self._failure: Exception | None = None
        self._closed = False
        self._active = 0  # started tasks that have not ended (<= limit)
        self._running = 0  # of which: inside the user's function
        self._failed = 0
        self.compensation_report: CompensationReport | None = None
        """The report of the compensation run, once one ran."""

    def __repr__(self) -> str:
        return f"<trio_sagas.ErrGroup {self._name!r} tasks={len(self._slots)}>"

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
        return tuple(s.outcome for s in self._slots if s.outcome is not None)

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
            running=self._running,
            waiting=len(self._queue),
            finished=sum(1 for s in self._slots if s.status is not None),
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

        Raises:
            TypeError: *fn* is not an async function.
            RuntimeError: the group's block has exited.
        """
        check_async(fn, "fn")
        label = describe_callable(fn) if name is None else check_label(name, "name")
        self._spawn(label, fn, args, None)

    def start_step(
        self,
        fn: Callable[[StepContext, *PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: str | None = None,
    ) -> None:
        """Start ``fn(ctx, *args)`` with a child :class:`StepContext`.

        The step's registered compensations are absorbed into the group's
        scope when it ends, however it ends.
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
        if not isinstance(reason, CancelReason):
            raise TypeError(f"reason must be a CancelReason, got {reason!r}")
        self._cancel(reason, triggered_by, message or f"group {self._name!r} cancelled")

    def _spawn(
        self,
        label: str,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        ctx: StepContext | None,
    ) -> None:
        if self._closed or self._nursery is None:
            raise RuntimeError(f"error group {self._name!r} is not running")
        slot = _Slot(label)
        self._slots.append(slot)
        if self._limit is not None and self._active >= self._limit:
            # FIFO: queued work holds no trio task, and starts in the order
            # it was submitted as running tasks end.
            self._queue.append((slot, fn, args, ctx))
            return
        self._active += 1
        self._nursery.start_soon(self._run_task, slot, fn, args, ctx, name=label)

    def _start_next(self) -> None:
        if not self._queue:
            return
        if trio.current_effective_deadline() == -math.inf:
            # Cancelled from outside: nothing queued may start any more.
            self._skip_queued(self._cancelled_cause())
            return
        slot, fn, args, ctx = self._queue.popleft()
        self._active += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._run_task, slot, fn, args, ctx, name=slot.name)

    def _skip_queued(self, cause: CancelCause) -> None:
        while self._queue:
            slot = self._queue.popleft()[0]
            self._finish(slot, Status.SKIPPED, None, cause=cause)

    # -- the task wrapper -------------------------------------------------------

    def _finish(
        self,
        slot: _Slot,
        status: Status,
        started: float | None,
        *,
        value: object = None,
        error: BaseException | None = None,
        cause: CancelCause | None = None,
    ) -> None:
        assert self._clock is not None
        now = self._clock.current_time()
        slot.status = status
        slot.value = value
        slot.error = error
        slot.cause = cause
        slot.started = started
        slot.finished = now
        if self._observer is not None:
            outcome = slot.outcome
            assert outcome is not None
            notify(
                self._observer,
                GroupTaskFinished(at=now, group=self._name, outcome=outcome),
            )

    def _cancelled_cause(self) -> CancelCause:
        # Known by construction: if our node was cancelled it says why;
        # otherwise the Cancelled came from an enclosing scope.
        return self._node.cause or CancelCause.external()

    async def _run_task(
        self,
        slot: _Slot,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        ctx: StepContext | None,
    ) -> None:
        try:
            if self._node.cancelled:
                # Started once the group was cancelled: never run it. (An
                # outside cancel is not checked here: that walks the whole
                # scope chain on every spawn, 13% of a trivial task's cost;
                # the task then meets it at its first checkpoint, as in trio.)
                self._finish(slot, Status.SKIPPED, None, cause=self._node.cause)
                return
            assert self._clock is not None
            started = self._clock.current_time()
            self._running += 1
            try:
                value = await (fn(*args) if ctx is None else fn(ctx, *args))
            except Exception as exc:
                self._finish(slot, Status.FAILED, started, error=exc)
                self._fail(slot.name, exc)
            except BaseException as exc:
                if is_cancellation(exc):
                    cause = self._cancelled_cause()
                    self._finish(slot, Status.CANCELLED, started, cause=cause)
                    raise
                if isinstance(exc, BaseExceptionGroup):
                    cancelled, rest = exc.split(trio.Cancelled)
                    # split() derives an ExceptionGroup when the rest are
                    # all Exceptions; typeshed only knows the base type.
                    failed: BaseException | None = rest
                    if cancelled is not None and isinstance(failed, Exception):
                        # A failure that raced with a cancel: it is the task's
                        # failure; the Cancelled part goes on to its scope.
                        self._finish(slot, Status.FAILED, started, error=failed)
                        self._fail(slot.name, failed)
                        raise cancelled from None
                self._finish(slot, Status.FAILED, started, error=exc)
                raise
            else:
                self._finish(slot, Status.SUCCEEDED, started, value=value)
            finally:
                self._running -= 1
                if ctx is not None and ctx.compensation.has_actions:
                    self._root.compensation.absorb(ctx.compensation)
        finally:
            self._active -= 1
            self._start_next()

    def _fail(self, name: str, error: Exception) -> None:
        self._failed += 1
        if self._failure is None:
            # Record first, then cancel: a failure racing in this same turn
            # finds _failure set and cannot take its place.
            self._failure = error
            self._cancel(
                CancelReason.STEP_FAILED,
                name,
                f"{type(error).__name__}: {error}"
                if str(error)
                else type(error).__name__,
            )

    def _cancel(
        self, reason: CancelReason, triggered_by: str | None, message: str
    ) -> None:
        if not self._node.cancel(reason, triggered_by=triggered_by, message=message):
            return  # the first cancel wins
        cause = self._node.cause
        assert cause is not None
        notify(
            self._observer,
            GroupCancelled(at=trio.current_time(), group=self._name, cause=cause),
        )

    # -- exit ---------------------------------------------------------------------

    async def _compensate(self) -> CompensationReport:
        scope = self._root.compensation
        notify(
            self._observer,
            GroupCompensationStarted(
                at=trio.current_time(), group=self._name, actions=scope.names
            ),
        )
        report = await scope.run(
            self._compensation_policy,
            retry=self._compensation_retry,
            timeout=self._compensation_timeout,
        )
        self.compensation_report = report
        notify(
            self._observer,
            GroupCompensationCompleted(
                at=trio.current_time(), group=self._name, report=report
            ),
        )
        return report

    async def _exit_normally(self) -> None:
        if self._failure is None and not self._node.cancelled:
            self._root.compensation.clear()
            return
        report = await self._compensate()
        if self._failure is not None:
            if report.ok:
                raise self._failure
            raise SagaError(self._failure, _exceptions(report), report=report)
        if not report.ok:
            aborted = OutcomeError(
                Outcome(self._name, Status.CANCELLED, cause=self._node.cause)
            )
            raise SagaError(aborted, _exceptions(report), report=report)

    async def _exit_on_base_exception(self) -> None:
        report = await self._compensate()
        if not report.ok:
            logger.error(
                "error group %r: compensation failed while unwinding (%s); "
                "see group.compensation_report",
                self._name,
                "; ".join(f"{o.name}: {o.error!r}" for o in report.failed),
            )


def _exceptions(report: CompensationReport) -> list[Exception]:
    return [
        e if isinstance(e, Exception) else RuntimeError(repr(e)) for e in report.errors
    ]


@asynccontextmanager
async def open_err_group(
    *,
    name: str = "group",
    limit: int | None = None,
    compensation: CompensationPolicy = CompensationPolicy.SEQUENTIAL_REVERSE,
    compensation_retry: RetryPolicy | None = None,
    compensation_timeout: float | None = None,
    observer: Observer | None = None,
) -> AsyncIterator[ErrGroup]:
    """Open an error group: a nursery where the first failure cancels peers.

    On the first failure (a task's, or the ``async with`` body's) the failure
    is recorded, every other task is cancelled in the same scheduling turn
    (``STEP_FAILED``, internal, ``triggered_by`` the failed task), and once
    every task has ended the group's compensation runs, once, shielded.

    Exit:
        * no failure: returns; compensations are discarded (committed);
        * failure, compensation ok: raises the first failure itself (later
          failures are in ``outcomes``);
        * failure, compensation failed: raises :exc:`SagaError`;
        * ``group.cancel()``: tasks end CANCELLED (``MANUAL``), compensation
          runs, the block exits normally (``SagaError`` if compensation failed);
        * cancelled from outside: compensation runs, then
          :exc:`trio.Cancelled` propagates (compensation failures are logged
          and kept in ``compensation_report``).

    Args:
        name: The group's name and cancellation-node path (no ``/``).
        limit: At most this many tasks run at once; more wait, in order.
        compensation: Sequential reverse (default) or parallel.
        compensation_retry: Retry policy for each compensation action.
        compensation_timeout: Seconds per compensation try (default 30).
        observer: Receives :class:`GroupTaskFinished`,
            :class:`GroupCancelled`, :class:`GroupCompensationStarted` and
            :class:`GroupCompensationCompleted` events.
    """
    group = ErrGroup(
        name=name,
        limit=limit,
        compensation=compensation,
        compensation_retry=compensation_retry,
        compensation_timeout=compensation_timeout,
        observer=observer,
    )
    try:
        with group._node.open():
            async with trio.open_nursery() as nursery:
                group._nursery = nursery
                # The clock's own method: trio.current_time() goes through a
                # KI-protection wrapper that costs as much again, per call.
                group._clock = trio.lowlevel.current_clock()
                try:
                    yield group
                except Exception as exc:
                    body = _Slot(BODY)
                    group._slots.append(body)
                    group._finish(body, Status.FAILED, None, error=exc)
                    group._fail(BODY, exc)
    except BaseException as exc:
        group._closed = True
        await group._exit_on_base_exception()
        cancelled = lone_cancelled(exc)
        if cancelled is not None and cancelled is not exc:
            # trio's strict nursery wraps an outside cancel in a group of
            # Cancelled; callers get the plain trio.Cancelled, as from
            # run_scene and Executor.run.
            raise cancelled from None
        raise
    group._closed = True
    await group._exit_normally()
