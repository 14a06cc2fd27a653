"""The state machine of one Ignition run: decisions and scheduling.

Every decision is made synchronously, in the task whose outcome caused it,
so a failure's consequences (scope cancelled, dependents skipped, the run
stopped, the next stage started) all happen in the same scheduling turn, and
the work per signal is proportional to its own edges: no scan of all signals
except once when the run stops or times out. What each signal's task does
is in :mod:`._work`; the stage rules in :mod:`._stages`.
"""

from __future__ import annotations

import collections
import math
import types
from collections.abc import Iterable, Mapping
from typing import Any

import trio

from .._cancel import CancellationScope
from .._outcome import CancelCause, CancelReason, Outcome, Status
from .._util import lone_cancelled
from ._records import (
    ExecutionMode,
    GlobalTimeoutReached,
    IgnitionCompleted,
    IgnitionPolicy,
    IgnitionResult,
    SignalCompleted,
    SignalStarted,
)
from ._settings import Settings, policy_name
from ._signal import Signal, Stage, Worker, build_result, root_of, stop_cause
from ._stages import build_stages, check_stage, start_stage
from ._tasks import SoftTimer, host_nursery, watch_scope


class Run:
    """The state of the one run of an :class:`Ignition`."""

    # What each signal's task does; given to execute().
    work: Worker

    def __init__(
        self,
        settings: Settings,
        signals: Mapping[str, Signal],
        caller: trio.Nursery | None,
    ) -> None:
        self.settings = settings
        self.emit = settings.emit
        self.mode = settings.mode
        self.by_name = signals
        self.signals = list(signals.values())
        self.caller = caller
        self.host: trio.Nursery | None = None
        self.internal: trio.Nursery | None = None
        # Without a caller's nursery every signal runs in one nursery of ours
        # and one cancel scope stops them all: a CancelScope per signal costs
        # about a fifth of a signal's whole run.
        self.bulk: trio.CancelScope | None = None
        self.limiter = (
            trio.CapacityLimiter(settings.max_parallelism)
            if settings.max_parallelism is not None
            else None
        )
        # Insertion-ordered sets: add order, O(1) removal.
        self.undecided: dict[Signal, None] = dict.fromkeys(self.signals)
        self.live: dict[Signal, None] = {}
        self.decided: dict[str, Outcome[Any]] = {}
        self.decided_view = types.MappingProxyType(self.decided)
        self.queue: collections.deque[Signal] = collections.deque()
        # Ready signals waiting for a max_parallelism slot, in readiness order.
        # They get a task only once they hold a slot, so the order is ours
        # (trio does not promise to run new tasks in spawn order).
        self.slot_queue: collections.deque[Signal] = collections.deque()
        self.pumping = False
        self.stopped: CancelCause | None = None
        self.closed = False
        self.timed_out = False
        self.policy_error: Exception | None = None
        self.all_decided = trio.Event()
        self.soft = SoftTimer()
        self.sequence_position = 0
        self.sequence_active: Signal | None = None
        self.started_at = 0.0
        # Only services wait for other signals to stop (ordered shutdown).
        self.has_services = any(sig.service for sig in self.signals)
        for sig in self.signals:
            for dep in sig.depends_on:
                signals[dep].dependents.append(sig)
        self.stages: list[Stage] = (
            build_stages(self.signals, settings.early_promotion_threshold)
            if self.mode is ExecutionMode.STAGED
            else []
        )

    # -- the run -----------------------------------------------------------

    async def execute(self, work: Worker) -> IgnitionResult:
        """Run every signal once; *work* is what each signal's task does."""
        self.work = work
        self.soft.expired = work.timed_out_at
        try:
            return await self._execute()
        except BaseException as exc:
            cancelled = lone_cancelled(exc)
            if cancelled is not None and cancelled is not exc:
                # trio's strict nursery wraps an outside cancel in a group of
                # Cancelled; callers get the plain trio.Cancelled, as from
                # every other component.
                raise cancelled from None
            raise

    async def _execute(self) -> IgnitionResult:
        self.started_at = trio.current_time()
        timeout = self.settings.global_timeout
        deadline = math.inf if timeout is None else self.started_at + timeout
        finished_at = self.started_at
        completed = False
        try:
            async with trio.open_nursery() as internal:
                self.internal = internal
                if self.caller is None:
                    self.host = await internal.start(host_nursery, self._hosting)
                else:
                    self.host = self.caller
                self._begin()
                try:
                    with trio.move_on_at(deadline):
                        await self.all_decided.wait()
                except BaseException:
                    # Cancelled from outside: from now on nothing may start,
                    # also in the caller's nursery, which is not cancelled.
                    self._abort("ignition run() was cancelled")
                    raise
                if self.undecided:
                    self._global_timeout()
                finished_at = trio.current_time()
                self._close()
                internal.cancel_scope.cancel(reason="ignition run finished")
            completed = True
        finally:
            if not completed:
                # Cancelled from outside (or a bug): stop everything we started,
                # including tasks living in the caller's nursery.
                self._abort("ignition run() was cancelled or failed")
        if self.policy_error is not None:
            raise self.policy_error
        result = build_result(
            self.signals,
            self.stages,
            timed_out=self.timed_out,
            started_at=self.started_at,
            finished_at=finished_at,
        )
        if self.emit.enabled:
            self.emit(IgnitionCompleted(at=trio.current_time(), result=result))
        return result

    def _begin(self) -> None:
        internal = self.internal
        assert internal is not None
        if not self.signals:
            self.all_decided.set()
            return
        if not self.settings.cancel_individual_on_timeout and any(
            s.timeout is not None for s in self.signals
        ):
            internal.start_soon(self.soft.run, name="ignition:soft-timeouts")
        if self.mode is not ExecutionMode.PARALLEL or self.limiter is not None:
            # Signals that wait (for dependencies, their turn, their stage or
            # a slot) have no task yet; a watcher per scope node ends them the moment
            # their scope is cancelled.
            waiting: dict[CancellationScope, list[Signal]] = {}
            for sig in self.signals:
                if sig.scope is not None:
                    waiting.setdefault(sig.scope, []).append(sig)
            for node, sigs in waiting.items():
                internal.start_soon(
                    watch_scope,
                    node,
                    sigs,
                    self.scope_cancelled,
                    name=f"ignition:watch:{node.path}",
                )
        if self.mode is ExecutionMode.PARALLEL:
            for sig in self.signals:
                self.spawn(sig)
        elif self.mode is ExecutionMode.DEPENDENCY_AWARE:
            for sig in self.signals:
                if not sig.depends_on:
                    self.spawn(sig)
        elif self.mode is ExecutionMode.SEQUENTIAL:
            self._advance_sequence()
        else:
            start_stage(self, self.stages[0])

    def _cancel_running(self, reason: str, which: Iterable[Signal] | None) -> None:
        """Cancel the running signals among *which* (None: every running one)."""
        if self.bulk is not None:
            # Our own nursery: what is decided but still running (after a
            # soft timeout) would be cancelled when run() returns anyway.
            self.bulk.cancel(reason=reason)
            return
        for sig in list(self.live) if which is None else which:
            if sig.task_scope is not None:
                sig.task_scope.cancel(reason=reason)

    def _close(self) -> None:
        """Every outcome is decided: release or cancel what still runs."""
        self.closed = True
        if self.bulk is not None:
            self.bulk.cancel(reason="ignition run finished")
            return
        for sig in list(self.live):
            assert sig.outcome is not None
            assert sig.task_scope is not None
            if sig.started_at is None or self.policy_error:
                sig.task_scope.cancel(
                    reason=f"ignition run finished while {sig.name!r} was still "
                    f"running after it was reported {sig.outcome.status.value}"
                )

    def _abort(self, reason: str) -> None:
        self.closed = True
        self._cancel_running(reason, None)

    # -- decisions ---------------------------------------------------------

    def record(self, sig: Signal, outcome: Outcome[Any]) -> bool:
        """Set *sig*'s outcome if it is still open; True if this call set it."""
        if sig.outcome is not None:
            return False
        sig.outcome = outcome
        del self.undecided[sig]
        self.decided[sig.name] = outcome
        stage = sig.stage_state
        if stage is not None:
            stage.decided += 1
            if outcome.ok:
                stage.succeeded += 1
            elif stage.first_bad is None:
                stage.first_bad = outcome
        if self.emit.enabled:
            self.emit(
                SignalCompleted(
                    at=trio.current_time(),
                    name=sig.name,
                    status=outcome.status,
                    cause=outcome.cause,
                    outcome=outcome,
                )
            )
        if not self.undecided:
            self.all_decided.set()
        return True

    def resolve(self, sig: Signal, outcome: Outcome[Any]) -> None:
        """Record *outcome* and act on it (unless the run is over)."""
        if self.record(sig, outcome) and not self.closed:
            self.queue.append(sig)
            self._pump()

    def _pump(self) -> None:
        # One loop drains every consequence, so chains of decisions (a stage
        # whose signals all resolve at once, a long sequence of cancelled
        # signals) never recurse.
        if self.pumping:
            return
        self.pumping = True
        try:
            while self.queue:
                sig = self.queue.popleft()
                if self.stopped is None and not self.closed:
                    self._after(sig)
        finally:
            self.pumping = False

    def _after(self, sig: Signal) -> None:
        outcome = sig.outcome
        assert outcome is not None
        if sig.dependents:
            if outcome.ok:
                for dependent in sig.dependents:
                    dependent.waiting -= 1
                    if dependent.waiting == 0:
                        self.spawn(dependent)
            else:
                self._fail_dependents(sig)
        if sig.started_at is not None and not self._continue(outcome):
            self.stop(
                stop_cause(
                    outcome, f"{policy_name(self.settings.policy)} stopped the run"
                )
            )
            return
        if sig is self.sequence_active:
            self._advance_sequence()
        if sig.stage_state is not None:
            check_stage(self, sig.stage_state)

    def _fail_dependents(self, failed: Signal) -> None:
        """Resolve every transitive dependent of *failed* at once (O(edges))."""
        status = (
            Status.CANCELLED
            if self.settings.cancel_dependents_on_failure
            else Status.SKIPPED
        )
        stack = [failed]
        while stack:
            sig = stack.pop()
            assert sig.outcome is not None
            root = root_of(sig.outcome)
            for dependent in sig.dependents:
                if dependent.outcome is not None:
                    continue
                cause = CancelCause.of(
                    CancelReason.DEPENDENCY_FAILED,
                    triggered_by=root,
                    message=f"dependency {sig.name!r} {sig.outcome.status.value}",
                )
                self.record(dependent, dependent.unstarted(status, cause))
                stack.append(dependent)

    def _continue(self, outcome: Outcome[Any]) -> bool:
        policy = self.settings.policy
        if policy is IgnitionPolicy.BEST_EFFORT:
            return True
        if policy is IgnitionPolicy.FAIL_FAST:
            return outcome.ok
        if policy is IgnitionPolicy.CONTINUE_ON_TIMEOUT:
            return outcome.status in (Status.SUCCEEDED, Status.TIMED_OUT)
        assert not isinstance(policy, IgnitionPolicy)
        try:
            return bool(policy(outcome, self.decided_view))
        except Exception as exc:
            # A bug in the caller's policy: stop cleanly, then raise it from run().
            self.policy_error = exc
            return False

    def stop(self, cause: CancelCause) -> None:
        """The policy said stop: cancel what runs, skip what has not started."""
        self.stopped = cause
        undecided = list(self.undecided)
        for sig in undecided:
            if sig.started_at is not None:
                self.record(sig, sig.ended(Status.CANCELLED, cause=cause))
            else:
                self.record(sig, sig.unstarted(Status.SKIPPED, cause))
        self._cancel_running(cause.describe(), undecided)

    def _global_timeout(self) -> None:
        self.timed_out = True
        timeout = self.settings.global_timeout
        pending = tuple(sig.name for sig in self.undecided)
        if self.emit.enabled:
            self.emit(GlobalTimeoutReached(at=trio.current_time(), pending=pending))
        cause = CancelCause.of(
            CancelReason.GLOBAL_TIMEOUT,
            message=f"global timeout of {timeout:g}s reached",
        )
        self.stopped = cause
        for sig in list(self.undecided):
            self.record(sig, sig.ended(Status.TIMED_OUT, cause=cause))
        if self.caller is None or self.settings.cancel_on_global_timeout:
            self._cancel_running(cause.describe(), None)

    # -- scheduling --------------------------------------------------------

    def spawn(self, sig: Signal) -> None:
        if sig.outcome is not None or self.stopped is not None or self.closed:
            return
        if sig.scope is not None and sig.scope.cause is not None:
            # Its scope was cancelled while it waited: never start it.
            self.resolve(sig, sig.ended(Status.CANCELLED, cause=sig.scope.cause))
            return
        if self.limiter is not None:
            try:
                self.limiter.acquire_on_behalf_of_nowait(sig)
            except trio.WouldBlock:
                self.slot_queue.append(sig)
                return
            sig.holds_slot = True
        assert self.host is not None
        if self.bulk is None:
            sig.task_scope = trio.CancelScope()
            if self.has_services:
                sig.stopped = trio.Event()
            self.live[sig] = None
        # Started now, in this deterministic order: trio may run the tasks
        # spawned in one turn in either order, logs should not.
        now = sig.started_at = trio.current_time()
        if self.emit.enabled:
            self.emit(SignalStarted(at=now, name=sig.name, stage=sig.stage))
        self.host.start_soon(self.work.signal_task, sig, name=f"ignition:{sig.name}")

    def release_slot(self, sig: Signal) -> None:
        if not sig.holds_slot:
            return
        assert self.limiter is not None
        sig.holds_slot = False
        self.limiter.release_on_behalf_of(sig)
        while self.slot_queue and self.limiter.available_tokens:
            self.spawn(self.slot_queue.popleft())

    def _advance_sequence(self) -> None:
        while self.sequence_position < len(self.signals):
            sig = self.signals[self.sequence_position]
            self.sequence_position += 1
            if sig.outcome is None:
                self.sequence_active = sig
                self.spawn(sig)
                return
        self.sequence_active = None

    def scope_cancelled(self, sig: Signal, node: CancellationScope) -> None:
        """*sig*'s scope *node* was cancelled: it ends CANCELLED with the root cause."""
        self.resolve(sig, sig.ended(Status.CANCELLED, cause=node.cause))

    def _hosting(self, nursery: trio.Nursery) -> None:
        self.bulk = nursery.cancel_scope
