"""The helper tasks of an Ignition run, each told what to call back.

None of them knows the run: the soft-timeout heap, the watcher that ends
waiting signals when their scope is cancelled, and the wrapper that runs a
service and stops it only after the services that depend on it stopped.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from .._cancel import CancellationScope
from .._util import lone_cancelled
from ._signal import Signal


async def host_nursery(
    opened: Callable[[trio.Nursery], None],
    *,
    task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open a nursery for other tasks to run in; it lasts until cancelled."""
    async with trio.open_nursery() as nursery:
        opened(nursery)
        task_status.started(nursery)
        await trio.sleep(math.inf)


def _nobody(sig: Signal, at: float) -> None:
    raise AssertionError("SoftTimer.expired was never set")


class SoftTimer:
    """One timer task for every soft per-signal deadline: a heap, not a task each."""

    __slots__ = ("expired", "heap", "wakeup")

    def __init__(self) -> None:
        self.expired: Callable[[Signal, float], None] = _nobody
        self.heap: list[tuple[float, int, Signal]] = []
        self.wakeup = trio.Event()

    def push(self, deadline: float, sig: Signal) -> None:
        heapq.heappush(self.heap, (deadline, sig.index, sig))
        if self.heap[0][2] is sig:
            self.wakeup.set()

    async def run(self) -> None:
        while True:
            self.wakeup = wakeup = trio.Event()
            deadline = self.heap[0][0] if self.heap else math.inf
            with trio.move_on_at(deadline):
                await wakeup.wait()
            now = trio.current_time()
            while self.heap and self.heap[0][0] <= now:
                at, _, sig = heapq.heappop(self.heap)
                if sig.outcome is None:
                    self.expired(sig, at)


async def watch_scope(
    node: CancellationScope,
    sigs: list[Signal],
    cancelled: Callable[[Signal, CancellationScope], None],
) -> None:
    """Call ``cancelled(sig, node)`` for each waiting signal once *node* is cancelled."""
    with node.open():
        # Not sleep_forever(): that is typed NoReturn, but the node's
        # scope swallowing its own cancel is exactly how we get past it.
        await trio.sleep(math.inf)
    # Only a cancel of the node (or an ancestor) gets here; the end of
    # the run cancels this task from outside the node instead.
    for sig in sigs:
        if sig.outcome is None and sig.task_scope is None and sig.started_at is None:
            cancelled(sig, node)


async def run_service(
    sig: Signal,
    kwargs: dict[str, Any],
    stop_first: Callable[[], Iterable[Signal]],
    *,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the service *sig*; stop it only after ``stop_first()`` stopped.

    The service runs shielded from the cancellation around it. A guard task
    takes that cancellation instead (the caller's nursery shutting down, or
    the start timing out), waits until every signal in ``stop_first()`` has
    stopped, then cancels the service with the same reason. So a journal
    outlives the services that write to it, as a dependency-injection
    container disposes of services in reverse dependency order. A cancel of
    the signal's own scope still reaches it at once.
    """
    stopping = trio.CancelScope(shield=True)
    finished = False

    async def guard() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            if not finished:
                with trio.CancelScope(shield=True):
                    for other in stop_first():
                        if other.stopped is not None:
                            await other.stopped.wait()
                stopping.cancel(reason=str(exc.reason or "service stopped"))
            raise

    error: Exception | None = None
    try:
        async with trio.open_nursery() as guarded:
            guarded.start_soon(guard, name=f"ignition:{sig.name}:stop-order")
            try:
                with stopping:
                    if sig.scope is None:
                        await sig.fn(*sig.args, task_status=task_status, **kwargs)
                    else:
                        with sig.scope.open():
                            await sig.fn(*sig.args, task_status=task_status, **kwargs)
            except Exception as exc:
                # Raised outside the guard's nursery below, so the caller sees
                # the service's own exception, as from nursery.start().
                error = exc
            finished = True
            guarded.cancel_scope.cancel(reason=f"service {sig.name!r} ended")
    except BaseException as exc:
        if error is None or lone_cancelled(exc) is None:
            raise
        # The service failed while it was being stopped: that failure, not
        # the cancellation it was answering, is what the caller must see.
        raise error from None
    finally:
        assert sig.stopped is not None
        sig.stopped.set()
    if error is not None:
        raise error


async def enter_context(
    factory: Callable[..., AbstractAsyncContextManager[object]],
    *args: object,
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
    **kwargs: object,
) -> None:
    """Run an async context manager as a service: ready once entered.

    It stays entered until the service is stopped; its ``__aexit__`` is the
    service's cleanup.
    """
    manager = factory(*args, **kwargs)
    if not hasattr(manager, "__aenter__") or not hasattr(manager, "__aexit__"):
        raise TypeError(
            f"the context factory must return an async context manager, got {manager!r}"
        )
    async with manager as value:
        task_status.started(value)
        await trio.sleep_forever()
