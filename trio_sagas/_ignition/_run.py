"""The state machine of one Ignition run.

Every decision is made synchronously, in the task whose outcome caused it,
so a failure's consequences (scope cancelled, dependents skipped, the run
stopped, the next stage started) all happen in the same scheduling turn, and
the work per signal is proportional to its own edges: no scan of all signals
except once when the run stops or times out.
"""

from __future__ import annotations

import collections
import heapq
import inspect
import math
import types
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from .._cancel import CancellationScope
from .._events import notify
from .._outcome import CancelCause, CancelReason, Outcome, Status
from .._validate import describe_callable
from ._records import (
    ExecutionMode,
    GlobalTimeoutReached,
    IgnitionCompleted,
    IgnitionPolicy,
    IgnitionResult,
    PolicyCallable,
    SignalCompleted,
    SignalStarted,
    StagePolicy,
    StageResult,
    StageStarted,
)

if TYPE_CHECKING:
    from ._coordinator import Ignition


def _takes_task_status(fn: object) -> bool:
    """Whether *fn* has a ``task_status`` parameter (it is a service)."""
    try:
        return "task_status" in inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):  # some builtins have no signature
        return False


class Signal:
    """One added signal: its configuration, then the state of its single run."""

    __slots__ = (
        "args",
        "cancel_scope_on_failure",
        "color",
        "dependents",
        "depends_on",
        "fn",
        "holds_slot",
        "index",
        "name",
        "outcome",
        "scope",
        "service",
        "stage",
        "stage_state",
        "started_at",
        "task_scope",
        "timeout",
        "waiting",
    )

    def __init__(
        self,
        *,
        name: str,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        timeout: float | None,
        depends_on: tuple[str, ...],
        stage: int,
        scope: CancellationScope | None,
        cancel_scope_on_failure: bool,
        index: int,
    ) -> None:
        self.name = name
        self.fn = fn
        self.args = args
        self.timeout = timeout
        self.depends_on = depends_on
        self.stage = stage
        # Held strongly: a CancellationScope parent only holds its children
        # weakly, and the run must be able to open the node.
        self.scope = scope
        self.cancel_scope_on_failure = cancel_scope_on_failure
        self.service = _takes_task_status(fn)
        self.index = index
        self.dependents: list[Signal] = []
        self.waiting = len(depends_on)
        self.color = 0
        self.outcome: Outcome[Any] | None = None
        self.started_at: float | None = None
        # Set when the signal's task is spawned; None means never spawned.
        self.task_scope: trio.CancelScope | None = None
        self.holds_slot = False
        self.stage_state: _Stage | None = None


class _Stage:
    """Progress of one stage of a STAGED run."""

    __slots__ = (
        "decided",
        "first_bad",
        "needed",
        "number",
        "position",
        "promoted",
        "promoted_at",
        "signals",
        "started",
        "succeeded",
        "threshold",
    )

    def __init__(self, number: int, position: int, threshold: float) -> None:
        self.number = number
        self.position = position
        self.signals: list[Signal] = []
        self.threshold = threshold
        self.decided = 0
        self.succeeded = 0
        self.needed = 1
        self.started = False
        self.promoted = False
        self.promoted_at: float | None = None
        self.first_bad: Outcome[Any] | None = None


def _root(outcome: Outcome[Any]) -> str:
    """The signal at the root of *outcome*: its trigger, else the signal itself."""
    if outcome.cause is not None and outcome.cause.triggered_by is not None:
        return outcome.cause.triggered_by
    return outcome.name


def _stop_cause(outcome: Outcome[Any], message: str) -> CancelCause:
    """The cause given to what a stop cancels or skips, naming *outcome*'s signal."""
    reason = {
        Status.FAILED: CancelReason.STEP_FAILED,
        Status.TIMED_OUT: CancelReason.STEP_TIMEOUT,
        Status.CANCELLED: CancelReason.SCOPE_CANCELLED,
    }.get(outcome.status, CancelReason.TERMINAL)
    return CancelCause.of(reason, triggered_by=outcome.name, message=message)


def policy_name(policy: IgnitionPolicy | PolicyCallable) -> str:
    if isinstance(policy, IgnitionPolicy):
        return f"IgnitionPolicy.{policy.name}"
    return f"policy {describe_callable(policy)}"


class Run:
    """The state of the one run of an :class:`Ignition`."""

    def __init__(self, ignition: Ignition, caller: trio.Nursery | None) -> None:
        self.ig = ignition
        self.mode = ignition._mode
        self.signals = list(ignition._signals.values())
        self.caller = caller
        self.host: trio.Nursery | None = None
        self.internal: trio.Nursery | None = None
        self.limiter = (
            trio.CapacityLimiter(ignition._max_parallelism)
            if ignition._max_parallelism is not None
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
        self.soft: list[tuple[float, int, Signal]] = []
        self.timer_wakeup = trio.Event()
        self.sequence_position = 0
        self.sequence_active: Signal | None = None
        self.stages: list[_Stage] = []
        self.started_at = 0.0
        for sig in self.signals:
            for dep in sig.depends_on:
                ignition._signals[dep].dependents.append(sig)
        if self.mode is ExecutionMode.STAGED:
            by_number: dict[int, _Stage] = {}
            for number in sorted({sig.stage for sig in self.signals}):
                by_number[number] = _Stage(
                    number, len(self.stages), ignition._early_promotion_threshold
                )
                self.stages.append(by_number[number])
            for sig in self.signals:
                stage = by_number[sig.stage]
                stage.signals.append(sig)
                sig.stage_state = stage
            for stage in self.stages:
                # round() first: 0.7 * 10 is 7.000000000000001 in binary.
                stage.needed = max(
                    1, math.ceil(round(stage.threshold * len(stage.signals), 9))
                )

    # -- the run -----------------------------------------------------------

    async def execute(self) -> IgnitionResult:
        self.started_at = trio.current_time()
        timeout = self.ig._global_timeout
        deadline = math.inf if timeout is None else self.started_at + timeout
        finished_at = self.started_at
        completed = False
        try:
            async with trio.open_nursery() as internal:
                self.internal = internal
                self.host = self.caller if self.caller is not None else internal
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
        outcomes: dict[str, Outcome[Any]] = {}
        for sig in self.signals:
            assert sig.outcome is not None
            outcomes[sig.name] = sig.outcome
        result = IgnitionResult(
            outcomes=types.MappingProxyType(outcomes),
            timed_out=self.timed_out,
            started_at=self.started_at,
            finished_at=finished_at,
            stages=tuple(
                StageResult(
                    stage=stage.number,
                    outcomes=types.MappingProxyType(
                        {s.name: outcomes[s.name] for s in stage.signals}
                    ),
                    promoted=stage.promoted,
                    promoted_at=stage.promoted_at,
                )
                for stage in self.stages
            ),
        )
        notify(
            self.ig._observer, IgnitionCompleted(at=trio.current_time(), result=result)
        )
        return result

    def _begin(self) -> None:
        internal = self.internal
        assert internal is not None
        if not self.signals:
            self.all_decided.set()
            return
        if not self.ig._cancel_individual_on_timeout and any(
            s.timeout is not None for s in self.signals
        ):
            internal.start_soon(self._soft_timer, name="ignition:soft-timeouts")
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
                    self._watch, node, sigs, name=f"ignition:watch:{node.path}"
                )
        if self.mode is ExecutionMode.PARALLEL:
            for sig in self.signals:
                self._spawn(sig)
        elif self.mode is ExecutionMode.DEPENDENCY_AWARE:
            for sig in self.signals:
                if not sig.depends_on:
                    self._spawn(sig)
        elif self.mode is ExecutionMode.SEQUENTIAL:
            self._advance_sequence()
        else:
            self._start_stage(self.stages[0])

    def _close(self) -> None:
        """Every outcome is decided: release or cancel what still runs."""
        self.closed = True
        for sig in list(self.live):
            assert sig.outcome is not None
            assert sig.task_scope is not None
            if self.caller is None or sig.started_at is None or self.policy_error:
                sig.task_scope.cancel(
                    reason=f"ignition run finished while {sig.name!r} was still "
                    f"running after it was reported {sig.outcome.status.value}"
                )

    def _abort(self, reason: str) -> None:
        self.closed = True
        for sig in list(self.live):
            assert sig.task_scope is not None
            sig.task_scope.cancel(reason=reason)

    # -- decisions ---------------------------------------------------------

    def _outcome(
        self,
        sig: Signal,
        status: Status,
        *,
        value: object = None,
        error: BaseException | None = None,
        cause: CancelCause | None = None,
        at: float | None = None,
    ) -> Outcome[Any]:
        return Outcome(
            sig.name,
            status,
            value=value,
            error=error,
            cause=cause,
            started_at=sig.started_at,
            finished_at=trio.current_time() if at is None else at,
        )

    def _not_started(
        self, sig: Signal, status: Status, cause: CancelCause
    ) -> Outcome[Any]:
        """The outcome of a signal resolved without running.

        A cancelled scope is the more specific statement: it wins.
        """
        if sig.scope is not None and sig.scope.cause is not None:
            return self._outcome(sig, Status.CANCELLED, cause=sig.scope.cause)
        return self._outcome(sig, status, cause=cause)

    def _record(self, sig: Signal, outcome: Outcome[Any]) -> bool:
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
        notify(
            self.ig._observer,
            SignalCompleted(
                at=trio.current_time(),
                name=sig.name,
                status=outcome.status,
                cause=outcome.cause,
                outcome=outcome,
            ),
        )
        if not self.undecided:
            self.all_decided.set()
        return True

    def _resolve(self, sig: Signal, outcome: Outcome[Any]) -> None:
        """Record *outcome* and act on it (unless the run is over)."""
        if self._record(sig, outcome) and not self.closed:
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
                        self._spawn(dependent)
            else:
                self._fail_dependents(sig)
        if sig.started_at is not None and not self._continue(outcome):
            self._stop(
                _stop_cause(outcome, f"{policy_name(self.ig._policy)} stopped the run")
            )
            return
        if sig is self.sequence_active:
            self._advance_sequence()
        if sig.stage_state is not None:
            self._check_stage(sig.stage_state)

    def _fail_dependents(self, failed: Signal) -> None:
        """Resolve every transitive dependent of *failed* at once (O(edges))."""
        status = (
            Status.CANCELLED
            if self.ig._cancel_dependents_on_failure
            else Status.SKIPPED
        )
        stack = [failed]
        while stack:
            sig = stack.pop()
            assert sig.outcome is not None
            root = _root(sig.outcome)
            for dependent in sig.dependents:
                if dependent.outcome is not None:
                    continue
                cause = CancelCause.of(
                    CancelReason.DEPENDENCY_FAILED,
                    triggered_by=root,
                    message=f"dependency {sig.name!r} {sig.outcome.status.value}",
                )
                self._record(dependent, self._not_started(dependent, status, cause))
                stack.append(dependent)

    def _continue(self, outcome: Outcome[Any]) -> bool:
        policy = self.ig._policy
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

    def _stop(self, cause: CancelCause) -> None:
        """The policy said stop: cancel what runs, skip what has not started."""
        self.stopped = cause
        text = cause.describe()
        for sig in list(self.undecided):
            if sig.started_at is not None:
                self._record(sig, self._outcome(sig, Status.CANCELLED, cause=cause))
            else:
                self._record(sig, self._not_started(sig, Status.SKIPPED, cause))
            if sig.task_scope is not None:
                sig.task_scope.cancel(reason=text)

    def _global_timeout(self) -> None:
        self.timed_out = True
        timeout = self.ig._global_timeout
        pending = tuple(sig.name for sig in self.undecided)
        notify(
            self.ig._observer,
            GlobalTimeoutReached(at=trio.current_time(), pending=pending),
        )
        cause = CancelCause.of(
            CancelReason.GLOBAL_TIMEOUT,
            message=f"global timeout of {timeout:g}s reached",
        )
        self.stopped = cause
        hard = self.caller is None or self.ig._cancel_on_global_timeout
        for sig in list(self.undecided):
            self._record(sig, self._outcome(sig, Status.TIMED_OUT, cause=cause))
        for sig in list(self.live):
            assert sig.task_scope is not None
            if hard or sig.started_at is None:
                sig.task_scope.cancel(reason=cause.describe())

    # -- scheduling --------------------------------------------------------

    def _spawn(self, sig: Signal) -> None:
        if sig.outcome is not None or self.stopped is not None or self.closed:
            return
        if sig.scope is not None and sig.scope.cause is not None:
            # Its scope was cancelled while it waited: never start it.
            self._resolve(
                sig, self._outcome(sig, Status.CANCELLED, cause=sig.scope.cause)
            )
            return
        if self.limiter is not None:
            try:
                self.limiter.acquire_on_behalf_of_nowait(sig)
            except trio.WouldBlock:
                self.slot_queue.append(sig)
                return
            sig.holds_slot = True
        assert self.host is not None
        sig.task_scope = trio.CancelScope()
        self.live[sig] = None
        # Started now, in this deterministic order: trio may run the tasks
        # spawned in one turn in either order, logs should not.
        now = sig.started_at = trio.current_time()
        notify(self.ig._observer, SignalStarted(at=now, name=sig.name, stage=sig.stage))
        self.host.start_soon(self._signal_task, sig, name=f"ignition:{sig.name}")

    def _release_slot(self, sig: Signal) -> None:
        if not sig.holds_slot:
            return
        assert self.limiter is not None
        sig.holds_slot = False
        self.limiter.release_on_behalf_of(sig)
        while self.slot_queue and self.limiter.available_tokens:
            self._spawn(self.slot_queue.popleft())

    def _advance_sequence(self) -> None:
        while self.sequence_position < len(self.signals):
            sig = self.signals[self.sequence_position]
            self.sequence_position += 1
            if sig.outcome is None:
                self.sequence_active = sig
                self._spawn(sig)
                return
        self.sequence_active = None

    def _start_stage(self, stage: _Stage) -> None:
        stage.started = True
        notify(
            self.ig._observer,
            StageStarted(
                at=trio.current_time(),
                stage=stage.number,
                names=tuple(s.name for s in stage.signals),
            ),
        )
        for sig in stage.signals:
            self._spawn(sig)
        self._check_stage(stage)

    def _check_stage(self, stage: _Stage) -> None:
        if not stage.started or self.stopped is not None or self.closed:
            return
        policy = self.ig._stage_policy
        if policy is StagePolicy.FAIL_FAST and stage.first_bad is not None:
            self._stop(
                _stop_cause(
                    stage.first_bad,
                    f"stage {stage.number} failed under StagePolicy.FAIL_FAST",
                )
            )
            return
        if stage.promoted:
            return
        if policy is StagePolicy.EARLY_PROMOTION:
            met = stage.succeeded >= stage.needed
        elif stage.decided < len(stage.signals):
            return
        else:
            met = policy is StagePolicy.BEST_EFFORT or stage.first_bad is None
        if met:
            stage.promoted = True
            stage.promoted_at = trio.current_time()
            if stage.position + 1 < len(self.stages):
                self._start_stage(self.stages[stage.position + 1])
        elif stage.decided == len(stage.signals):
            assert stage.first_bad is not None
            cause = _stop_cause(
                stage.first_bad,
                f"stage {stage.number} did not meet StagePolicy.{policy.name}",
            )
            for later in self.stages[stage.position + 1 :]:
                for sig in later.signals:
                    if sig.outcome is None:
                        self._record(sig, self._not_started(sig, Status.SKIPPED, cause))

    # -- tasks -------------------------------------------------------------

    async def _watch(self, node: CancellationScope, sigs: list[Signal]) -> None:
        with node.open():
            # Not sleep_forever(): that is typed NoReturn, but the node's
            # scope swallowing its own cancel is exactly how we get past it.
            await trio.sleep(math.inf)
        # Only a cancel of the node (or an ancestor) gets here; the end of
        # the run cancels this task from outside the node instead.
        for sig in sigs:
            if sig.outcome is None and sig.task_scope is None:
                self._resolve(
                    sig, self._outcome(sig, Status.CANCELLED, cause=node.cause)
                )

    async def _soft_timer(self) -> None:
        # One timer for every soft deadline: a heap, not a task per signal.
        while True:
            self.timer_wakeup = wakeup = trio.Event()
            deadline = self.soft[0][0] if self.soft else math.inf
            with trio.move_on_at(deadline):
                await wakeup.wait()
            now = trio.current_time()
            while self.soft and self.soft[0][0] <= now:
                at, _, sig = heapq.heappop(self.soft)
                if sig.outcome is None:
                    self._timed_out(sig, at)

    def _timed_out(self, sig: Signal, at: float) -> None:
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
        self._resolve(sig, self._outcome(sig, Status.TIMED_OUT, cause=cause, at=at))

    def _failed(self, sig: Signal, error: Exception) -> None:
        if sig.outcome is not None:
            return  # a soft-timed-out signal failing late changes nothing
        if sig.cancel_scope_on_failure and sig.scope is not None:
            # Cancel the scope first, so the bundle sees it in this same turn.
            sig.scope.cancel(
                CancelReason.STEP_FAILED,
                triggered_by=sig.name,
                message=f"{type(error).__name__}: {error}",
            )
        self._resolve(sig, self._outcome(sig, Status.FAILED, error=error))

    def _cancelled_by_scope(self, sig: Signal) -> None:
        assert sig.scope is not None
        self._resolve(sig, self._outcome(sig, Status.CANCELLED, cause=sig.scope.cause))

    async def _signal_task(self, sig: Signal) -> None:
        assert sig.task_scope is not None
        try:
            with sig.task_scope:
                await self._run_signal(sig)
        finally:
            self.live.pop(sig, None)
            self._release_slot(sig)

    async def _run_signal(self, sig: Signal) -> None:
        node_scope: trio.CancelScope | None = None
        try:
            if sig.scope is None:
                await self._call(sig)
            else:
                with sig.scope.open() as node_scope:
                    await self._call(sig)
        except trio.Cancelled as exc:
            if sig.outcome is None:
                # None of our scopes did it: the outside world is tearing
                # down. Record it and stop the run, so that nothing new
                # starts (dependents of this signal would otherwise run).
                cause = CancelCause.from_cancelled(exc)
                self._record(sig, self._outcome(sig, Status.CANCELLED, cause=cause))
                if self.stopped is None and not self.closed:
                    self._stop(cause)
            raise
        except Exception as exc:
            if node_scope is not None and node_scope.cancel_called:
                # Whatever it raised on the way out, its scope stopped it.
                self._cancelled_by_scope(sig)
            else:
                self._failed(sig, exc)
            return
        if node_scope is not None and node_scope.cancelled_caught:
            self._cancelled_by_scope(sig)

    async def _call(self, sig: Signal) -> None:
        # A task spawned into a cancelled context must not run any of fn.
        await trio.lowlevel.checkpoint_if_cancelled()
        if sig.outcome is not None:
            return
        now = sig.started_at
        assert now is not None
        timeout_scope = trio.CancelScope()
        if sig.timeout is not None:
            if self.ig._cancel_individual_on_timeout:
                timeout_scope.deadline = now + sig.timeout
            else:
                heapq.heappush(self.soft, (now + sig.timeout, sig.index, sig))
                if self.soft[0][2] is sig:
                    self.timer_wakeup.set()
        finished = False
        value: object = None
        with timeout_scope:
            if sig.service:
                assert self.caller is not None
                value = await self.caller.start(self._service, sig)
                # Ready: it no longer counts against max_parallelism.
                self._release_slot(sig)
            else:
                value = await sig.fn(*sig.args)
            finished = True
        if finished:
            self._resolve(sig, self._outcome(sig, Status.SUCCEEDED, value=value))
        elif timeout_scope.cancelled_caught and sig.outcome is None:
            self._timed_out(sig, timeout_scope.deadline)

    @staticmethod
    async def _service(
        sig: Signal, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # Runs in the caller's nursery once ready, so it opens the node
        # itself: a later cancel of its scope still ends it.
        if sig.scope is None:
            await sig.fn(*sig.args, task_status=task_status)
        else:
            with sig.scope.open():
                await sig.fn(*sig.args, task_status=task_status)
