"""Opening an error group: entry, exit, and the compensation that runs at exit.

The exit is where the group's promise is kept: once every task has ended
(so every step's undo actions, cancelled steps' included, have been
absorbed), compensation runs, shielded, once; then the caller sees the
first failure, a :exc:`SagaError`, a bare :exc:`trio.Cancelled`, or nothing.
"""

# The exit functions below are the group's exit half, kept with the manager
# that calls them so each module has one job (and stays under ~450 lines).

from __future__ import annotations

import logging
import types
from collections.abc import Sequence
from typing import Any, final

import trio

from .._compensation import CompensationPolicy, CompensationReport
from .._errors import SagaError
from .._events import Observer
from .._outcome import Outcome, OutcomeError, Status, describe_error
from .._retry import RetryPolicy
from .._util import lone_cancelled
from .._validate import (
    check_enum,
    check_name,
    check_optional_int,
    check_optional_type,
    check_sync_observer,
    check_timeout,
)
from ._events import GroupCompensationCompleted, GroupCompensationStarted
from ._group import ErrGroup

logger = logging.getLogger("trio_sagas")


async def _compensate(group: ErrGroup) -> CompensationReport:
    scope = group._root.compensation
    if group._emit.enabled:
        group._emit(
            GroupCompensationStarted(
                at=group._now(), group=group._name, actions=scope.names
            )
        )
    report = await scope.run(
        group._compensation_policy,
        retry=group._compensation_retry,
        timeout=group._compensation_timeout,
    )
    group.compensation_report = report
    if group._emit.enabled:
        group._emit(
            GroupCompensationCompleted(
                at=group._now(), group=group._name, report=report
            )
        )
    return report


async def _exit_normally(group: ErrGroup) -> None:
    if group._failure is None and not group._node.cancelled:
        group._root.compensation.clear()
        return
    report = await _compensate(group)
    if group._failure is not None:
        if report.ok:
            raise group._failure
        raise SagaError.from_report(group._failure, report)
    if not report.ok:
        aborted = OutcomeError(
            Outcome(group._name, Status.CANCELLED, cause=group._node.cause)
        )
        raise SagaError.from_report(aborted, report)


async def _exit_on_base_exception(group: ErrGroup) -> None:
    report = await _compensate(group)
    if not report.ok:
        logger.error(
            "error group %r: compensation failed while unwinding (%s); "
            "see group.compensation_report",
            group._name,
            "; ".join(
                f"{o.name}: {describe_error(o.error)}"
                for o in report.failed
                if o.error is not None
            ),
        )


@final
class _ErrGroupManager:
    """The ``async with`` of :func:`open_err_group`: owns the group's entry and exit.

    A class rather than ``@asynccontextmanager`` (as trio's ``NurseryManager``):
    the exit path decides what the caller sees — the first failure, a
    :exc:`SagaError`, or a bare :exc:`trio.Cancelled` unwrapped from trio's
    strict group — and a generator would add a frame and a ``yield`` between
    the nursery and that decision, plus its own rules for re-raising. Here
    every step of the exit is explicit. One manager opens one group: entering
    it twice is a :exc:`RuntimeError` (as anyio's ``TaskGroup`` does).
    """

    __slots__ = ("_cancel_scope", "_entered", "_group", "_nursery_manager")

    def __init__(self, group: ErrGroup) -> None:
        self._group = group
        self._entered = False
        self._cancel_scope: trio.CancelScope | None = None
        self._nursery_manager: Any = None

    async def __aenter__(self) -> ErrGroup:
        if self._entered:
            raise RuntimeError(
                f"this open_err_group(name={self._group.name!r}) was already "
                "entered; call open_err_group() again for a new group"
            )
        self._entered = True
        group = self._group
        # The group's node owns a trio scope around the nursery, so that a
        # cancel of the node (a failure, group.cancel()) reaches the body too.
        cancel_scope = trio.CancelScope()
        group._node._attach(cancel_scope)
        cancel_scope.__enter__()
        self._cancel_scope = cancel_scope
        try:
            self._nursery_manager = trio.open_nursery()
            group._nursery = await self._nursery_manager.__aenter__()
        except BaseException as exc:  # pragma: no cover - trio does not checkpoint here
            group._closed = True
            group._node._detach(cancel_scope)
            cancel_scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        group._now = trio.lowlevel.current_clock().current_time
        return group

    async def __aexit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool:
        group = self._group
        cancel_scope = self._cancel_scope
        assert cancel_scope is not None
        try:
            try:
                if isinstance(exc, Exception):
                    # The body's failure is the group's, recorded as a task's
                    # would be; the nursery then only sees the peers unwind.
                    group._body_failed(exc)
                    exc = None
                try:
                    await self._nursery_manager.__aexit__(
                        type(exc) if exc is not None else None,
                        exc,
                        exc.__traceback__ if exc is not None else None,
                    )
                except BaseException as inner:
                    if not cancel_scope.__exit__(
                        type(inner), inner, inner.__traceback__
                    ):
                        raise
                else:
                    cancel_scope.__exit__(None, None, None)
            finally:
                group._node._detach(cancel_scope)
        except BaseException as error:
            group._closed = True
            await _exit_on_base_exception(group)
            cancelled = lone_cancelled(error)
            if cancelled is not None and cancelled is not error:
                # trio's strict nursery wraps an outside cancel in a group of
                # Cancelled; callers get the plain trio.Cancelled, as from
                # run_scene and Executor.run.
                raise cancelled from None
            raise
        group._closed = True
        await _exit_normally(group)
        # Whatever the body raised was recorded (an Exception) or absorbed
        # by our own cancel scope (the group's Cancelled).
        return True


def open_err_group(
    *,
    name: str = "group",
    limit: int | None = None,
    compensation: CompensationPolicy = CompensationPolicy.SEQUENTIAL_REVERSE,
    compensation_retry: RetryPolicy | None = None,
    compensation_timeout: float | None = None,
    observer: Observer | Sequence[Observer] | None = None,
) -> _ErrGroupManager:
    """Open an error group: a nursery where the first failure cancels peers.

    Use it as ``async with open_err_group(...) as group:``. On the first
    failure (a task's, or the ``async with`` body's) the failure is recorded,
    every other task is cancelled in the same scheduling turn
    (``STEP_FAILED``, internal, ``triggered_by`` the failed task), and once
    every task has ended the group's compensation runs, once, shielded.

    Exit:
        * no failure: returns; compensations are discarded (committed);
        * failure, compensation ok: raises the first failure itself (later
          failures are in ``outcomes``);
        * failure, compensation failed: raises :exc:`SagaError`;
        * ``group.cancel()``: tasks end CANCELLED (``MANUAL``), compensation
          runs, the block exits normally (``SagaError`` if compensation failed);
        * cancelled from outside: compensation runs, then a bare
          :exc:`trio.Cancelled` propagates (compensation failures are logged
          and kept in ``compensation_report``).

    Args:
        name: The group's name and cancellation-node path (no ``/``).
        limit: At most this many tasks run at once; more wait, in order.
        compensation: Sequential reverse (default) or parallel.
        compensation_retry: Retry policy for each compensation action.
        compensation_timeout: Seconds per compensation try (default
            :data:`DEFAULT_COMPENSATION_TIMEOUT`, 30); ``math.inf`` is no
            limit; zero is refused (the undo could never run).
        observer: Receives :class:`GroupTaskFinished`,
            :class:`GroupCancelled`, :class:`GroupCompensationStarted` and
            :class:`GroupCompensationCompleted` events (a callable or a
            sequence of them).

    Raises:
        TypeError, ValueError: a bad argument, before anything starts.
    """
    check_name(name)
    check_optional_int(limit, "limit", minimum=1)
    check_enum(compensation, CompensationPolicy, "compensation")
    check_optional_type(compensation_retry, RetryPolicy, "compensation_retry")
    check_timeout(compensation_timeout, "compensation_timeout", allow_zero=False)
    check_sync_observer(observer)
    return _ErrGroupManager(
        ErrGroup._create(
            name=name,
            limit=limit,
            compensation=compensation,
            compensation_retry=compensation_retry,
            compensation_timeout=compensation_timeout,
            observer=observer,
        )
    )
