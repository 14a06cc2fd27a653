"""The work of each signal's task: call it, time it, retry it, report how it ended.

:class:`SignalWork` runs inside the tasks the :class:`~._run.Run` spawns and
reports every ending back to the run's decisions (``resolve``/``record``),
so what a signal did and what the run decides about it stay apart.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import trio

from .._outcome import CancelCause, CancelReason, Status, describe_error
from .._retry import run_attempts
from ._records import ExecutionMode
from ._run import Run
from ._signal import Signal
from ._tasks import run_service


class SignalWork:
    """What the task of each signal of one run does."""

    __slots__ = ("run",)

    def __init__(self, run: Run) -> None:
        self.run = run

    def timed_out_at(self, sig: Signal, at: float) -> None:
        assert sig.timeout is not None
        cause = CancelCause.of(
            CancelReason.STEP_TIMEOUT,
            triggered_by=sig.name,
            message=f"no outcome within its {sig.timeout:g}s timeout",
        )
        if sig.cancel_scope_on_failure and sig.scope is not None:
            sig.scope.cancel(
                CancelReason.STEP_TIMEOUT, triggered_by=sig.name, message=cause.message
            )
        self.run.resolve(
            sig,
            sig.ended(
                Status.TIMED_OUT, cause=cause, at=at, attributes=sig.attributes()
            ),
        )

    def _failed(self, sig: Signal, error: Exception) -> None:
        if sig.outcome is not None:
            return  # a soft-timed-out signal failing late changes nothing
        if sig.cancel_scope_on_failure and sig.scope is not None:
            # Cancel the scope first, so the bundle sees it in this same turn.
            sig.scope.cancel(
                CancelReason.STEP_FAILED,
                triggered_by=sig.name,
                message=describe_error(error),
            )
        self.run.resolve(
            sig,
            sig.ended(Status.FAILED, error=error, attributes=sig.attributes()),
        )

    async def signal_task(self, sig: Signal) -> None:
        try:
            if sig.task_scope is None:
                await self._guarded(sig)
            else:
                with sig.task_scope:
                    await self._guarded(sig)
        finally:
            if sig.task_scope is not None:
                self.run.live.pop(sig, None)
                if sig.stopped is not None and not sig.serving:
                    # Its work is over: it ran here, or it is a service that
                    # never got ready (then its own task has ended too).
                    sig.stopped.set()
            if sig.holds_slot:
                self.run.release_slot(sig)

    async def _guarded(self, sig: Signal) -> None:
        # A task spawned into a cancelled context must not run any of fn.
        await trio.lowlevel.checkpoint_if_cancelled()
        if sig.outcome is not None:
            return
        node = sig.scope
        node_scope: trio.CancelScope | None = None
        try:
            if node is None:
                await self._timed(sig)
            else:
                with node.open() as node_scope:
                    await self._timed(sig)
        except trio.Cancelled as exc:
            if sig.outcome is None:
                # None of our scopes did it: the outside world is tearing
                # down. Record it and stop the run, so that nothing new
                # starts (dependents of this signal would otherwise run).
                cause = CancelCause.from_cancelled(exc)
                self.run.record(sig, sig.ended(Status.CANCELLED, cause=cause))
                if self.run.stopped is None and not self.run.closed:
                    self.run.stop(cause)
            raise
        except Exception as exc:
            if node is not None and node_scope is not None and node_scope.cancel_called:
                # Whatever it raised on the way out, its scope stopped it.
                self.run.scope_cancelled(sig, node)
            else:
                self._failed(sig, exc)
            return
        if node is not None and node_scope is not None and node_scope.cancelled_caught:
            self.run.scope_cancelled(sig, node)

    async def _timed(self, sig: Signal) -> None:
        timeout, started_at = sig.timeout, sig.started_at
        if timeout is None or started_at is None:
            value = await self._work(sig)
        elif not self.run.settings.cancel_individual_on_timeout:
            self.run.soft.push(started_at + timeout, sig)
            value = await self._work(sig)
        else:
            deadline = started_at + timeout
            with trio.move_on_at(deadline) as timeout_scope:
                value = await self._work(sig)
            if timeout_scope.cancelled_caught:
                if sig.outcome is None:
                    self.timed_out_at(sig, deadline)
                return
        self.run.resolve(
            sig,
            sig.ended(Status.SUCCEEDED, value=value, attributes=sig.attributes()),
        )

    def _values(self, sig: Signal) -> Mapping[str, object]:
        """The values *sig*'s dependencies succeeded with, by name."""
        return types.MappingProxyType(
            {dep: self.run.by_name[dep].value() for dep in sig.depends_on}
        )

    def _work(self, sig: Signal) -> Awaitable[object]:
        kwargs: dict[str, Any] = {"deps": self._values(sig)} if sig.wants_deps else {}
        if sig.service:
            return self._start_service(sig, kwargs)
        if sig.retry is not None:
            return self._retry(sig, kwargs)
        return sig.fn(*sig.args, **kwargs)

    async def _start_service(self, sig: Signal, kwargs: dict[str, Any]) -> object:
        assert self.run.caller is not None
        value = await self.run.caller.start(
            run_service, sig, kwargs, lambda: self._stop_first(sig)
        )
        # Ready: it runs in the caller's nursery now, stopped in order, and
        # no longer counts against max_parallelism.
        sig.serving = True
        self.run.release_slot(sig)
        return value

    async def _retry(self, sig: Signal, kwargs: dict[str, Any]) -> object:
        outcome = await run_attempts(
            functools.partial(sig.fn, **kwargs),
            sig.args,
            name=sig.name,
            retry=sig.retry,
            timeout=math.inf,  # the signal's own timeout bounds every try
            what="signal",
        )
        sig.retry_attributes = outcome.attributes
        if outcome.error is not None:
            assert isinstance(outcome.error, Exception)
            raise outcome.error
        return outcome.value

    def _stop_first(self, sig: Signal) -> Iterable[Signal]:
        """The signals a service outlives on shutdown: those that come after it.

        With a graph, every transitive dependent: a service behind a plain
        signal that has finished (api -> migrations -> journal) still needs
        the journal.
        """
        if self.run.mode is ExecutionMode.DEPENDENCY_AWARE:
            seen: dict[Signal, None] = {}
            stack = list(sig.dependents)
            while stack:
                other = stack.pop()
                if other not in seen:
                    seen[other] = None
                    stack.extend(other.dependents)
            return seen
        if self.run.mode is ExecutionMode.SEQUENTIAL:
            return self.run.signals[sig.index + 1 :]
        if self.run.mode is ExecutionMode.STAGED:
            assert sig.stage_state is not None
            later = self.run.stages[sig.stage_state.position + 1 :]
            return [other for stage in later for other in stage.signals]
        return ()
