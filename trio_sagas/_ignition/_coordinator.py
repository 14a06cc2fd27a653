"""The Ignition coordinator: startup signals over the cancellation tree (layer 4).

One :class:`Ignition` holds signals (async functions with a name, an
optional timeout, dependencies, a stage and a cancellation scope) and runs
them once; :mod:`._run` holds the state machine of that run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVarTuple, Unpack, final

import trio

from .._cancel import CancellationScope
from .._events import Observer
from .._validate import check_async, check_name, check_sync_observer, check_timeout
from ._records import (
    ExecutionMode,
    IgnitionPolicy,
    IgnitionResult,
    PolicyCallable,
    StagePolicy,
)
from ._run import Run, Signal, policy_name

PosArgsT = TypeVarTuple("PosArgsT")


@final
class Ignition:
    """Start a set of startup *signals* and decide, once, how each one ended.

    Add signals with :meth:`add`, then ``await`` :meth:`run` once. Every
    signal ends with an :class:`~trio_sagas.Outcome` whose ``cause`` says
    why it did not succeed; nothing it started outlives :meth:`run` unless
    the caller passed a nursery for it.

    Args:
        mode: How signals are scheduled (:class:`ExecutionMode`).
        policy: Whether the run goes on after a signal that ran ended
            without success (:class:`IgnitionPolicy`), or a sync callable
            ``policy(finished, results) -> bool`` (True: continue).
        global_timeout: Seconds the whole run may take (None: no limit).
            When it fires, every open outcome becomes TIMED_OUT
            (``GLOBAL_TIMEOUT``) and :meth:`run` returns.
        cancel_on_global_timeout: Also cancel signals still running at the
            global timeout when they run in a nursery the caller passed
            (without one they are always cancelled before :meth:`run`
            returns).
        cancel_individual_on_timeout: Per-signal timeouts are hard: the
            signal is cancelled at its deadline. Otherwise (soft) it is
            reported TIMED_OUT at its deadline and keeps running until
            :meth:`run` returns.
        cancel_dependents_on_failure: Dependents of a signal that did not
            succeed end CANCELLED rather than SKIPPED (they never started
            either way).
        max_parallelism: At most this many signals run at once (a
            :class:`trio.CapacityLimiter`); None: no limit.
        stage_policy: When the next stage of a STAGED run starts.
        early_promotion_threshold: Fraction in (0, 1] of a stage's signals
            that must succeed before :attr:`StagePolicy.EARLY_PROMOTION`
            starts the next stage.
        observer: Sync callable receiving :class:`SignalStarted`,
            :class:`SignalCompleted`, :class:`StageStarted`,
            :class:`GlobalTimeoutReached` and :class:`IgnitionCompleted`.

    Raises:
        TypeError: an argument of the wrong type (a mode that is not an
            :class:`ExecutionMode`, an async policy or observer, ...).
        ValueError: a bad value (``global_timeout <= 0``,
            ``max_parallelism < 1``, a threshold outside (0, 1]).
    """

    __slots__ = (
        "_cancel_dependents_on_failure",
        "_cancel_individual_on_timeout",
        "_cancel_on_global_timeout",
        "_early_promotion_threshold",
        "_global_timeout",
        "_max_parallelism",
        "_mode",
        "_observer",
        "_policy",
        "_ran",
        "_signals",
        "_stage_policy",
    )

    def __init__(
        self,
        *,
        mode: ExecutionMode = ExecutionMode.PARALLEL,
        policy: IgnitionPolicy | PolicyCallable = IgnitionPolicy.BEST_EFFORT,
        global_timeout: float | None = 5.0,
        cancel_on_global_timeout: bool = False,
        cancel_individual_on_timeout: bool = False,
        cancel_dependents_on_failure: bool = False,
        max_parallelism: int | None = None,
        stage_policy: StagePolicy = StagePolicy.ALL_MUST_SUCCEED,
        early_promotion_threshold: float = 1.0,
        observer: Observer | None = None,
    ) -> None:
        if not isinstance(mode, ExecutionMode):
            raise TypeError(f"mode must be an ExecutionMode, got {mode!r}")
        if not isinstance(policy, IgnitionPolicy):
            if not callable(policy):
                raise TypeError(
                    f"policy must be an IgnitionPolicy or a callable, got {policy!r}"
                )
            check_sync_observer(policy, "policy")
        if not isinstance(stage_policy, StagePolicy):
            raise TypeError(f"stage_policy must be a StagePolicy, got {stage_policy!r}")
        for flag, value in (
            ("cancel_on_global_timeout", cancel_on_global_timeout),
            ("cancel_individual_on_timeout", cancel_individual_on_timeout),
            ("cancel_dependents_on_failure", cancel_dependents_on_failure),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool, got {value!r}")
        if max_parallelism is not None:
            if isinstance(max_parallelism, bool) or not isinstance(
                max_parallelism, int
            ):
                raise TypeError(
                    f"max_parallelism must be an int or None, got {max_parallelism!r}"
                )
            if max_parallelism < 1:
                raise ValueError(
                    f"max_parallelism must be >= 1, got {max_parallelism!r}"
                )
        if isinstance(early_promotion_threshold, bool) or not isinstance(
            early_promotion_threshold, (int, float)
        ):
            raise TypeError(
                "early_promotion_threshold must be a number, "
                f"got {early_promotion_threshold!r}"
            )
        if not 0 < early_promotion_threshold <= 1:
            raise ValueError(
                "early_promotion_threshold must be in (0, 1], "
                f"got {early_promotion_threshold!r}"
            )
        check_sync_observer(observer)
        self._mode = mode
        self._policy = policy
        self._global_timeout = check_timeout(
            global_timeout, "global_timeout", allow_zero=False
        )
        self._cancel_on_global_timeout = cancel_on_global_timeout
        self._cancel_individual_on_timeout = cancel_individual_on_timeout
        self._cancel_dependents_on_failure = cancel_dependents_on_failure
        self._max_parallelism = max_parallelism
        self._stage_policy = stage_policy
        self._early_promotion_threshold = float(early_promotion_threshold)
        self._observer = observer
        self._signals: dict[str, Signal] = {}
        self._ran = False

    def __repr__(self) -> str:
        return (
            f"<trio_sagas.Ignition {self._mode.name} {policy_name(self._policy)} "
            f"signals={len(self._signals)}>"
        )

    @property
    def mode(self) -> ExecutionMode:
        """How signals are scheduled."""
        return self._mode

    @property
    def names(self) -> tuple[str, ...]:
        """The added signals' names, in the order they were added."""
        return tuple(self._signals)

    def add(
        self,
        name: str,
        fn: Callable[[Unpack[PosArgsT]], Awaitable[object]],
        *args: *PosArgsT,
        timeout: float | None = None,
        depends_on: Iterable[str] = (),
        stage: int = 0,
        scope: CancellationScope | None = None,
        cancel_scope_on_failure: bool = False,
    ) -> None:
        """Add a signal: ``await fn(*args)`` is its work, its return value its value.

        A function with a ``task_status`` parameter is a *service*, started
        with :meth:`trio.Nursery.start` semantics: it is ready (SUCCEEDED,
        value = what it passed to ``task_status.started()``) once it calls
        ``task_status.started()``, and then keeps running in the nursery
        passed to :meth:`run`.

        Args:
            name: Unique among this ignition's signals; non-empty, no ``/``.
            fn: An async function.
            *args: Positional arguments for *fn*.
            timeout: Seconds from the signal's start until it is TIMED_OUT
                (hard or soft per ``cancel_individual_on_timeout``); for a
                service, until it must be ready. None: no per-signal limit.
            depends_on: Names of signals that must succeed before this one
                starts (DEPENDENCY_AWARE mode only). They may be added later;
                :meth:`run` checks them.
            stage: The stage number, >= 0 (STAGED mode only).
            scope: The :class:`~trio_sagas.CancellationScope` the signal runs
                in: when it (or an ancestor) is cancelled the signal ends
                CANCELLED with the scope's root cause.
            cancel_scope_on_failure: When this signal fails or times out,
                cancel *scope* (``STEP_FAILED`` / ``STEP_TIMEOUT``,
                ``triggered_by`` = *name*). Needs a *scope*.

        Raises:
            TypeError: *fn* is not an async function, or an argument has the
                wrong type.
            ValueError: a duplicate name, a bad timeout or stage, or an option
                the mode does not use.
            RuntimeError: the ignition already ran.
        """
        if self._ran:
            raise RuntimeError("cannot add signals to an Ignition that already ran")
        check_name(name)
        if name in self._signals:
            raise ValueError(f"name {name!r} is already used by another signal")
        check_async(fn, "fn")
        seconds = check_timeout(timeout, "timeout", allow_zero=False)
        if isinstance(depends_on, str):
            raise TypeError(
                f"depends_on must be an iterable of signal names, not the str {depends_on!r}"
            )
        deps = tuple(depends_on)
        for dep in deps:
            if not isinstance(dep, str):
                raise TypeError(f"depends_on must hold signal names, got {dep!r}")
        if len(set(deps)) != len(deps):
            raise ValueError(f"depends_on of {name!r} names a signal twice: {deps!r}")
        if deps and self._mode is not ExecutionMode.DEPENDENCY_AWARE:
            raise ValueError(
                f"depends_on={deps!r} given for {name!r}, but dependencies only "
                f"apply in ExecutionMode.DEPENDENCY_AWARE (mode is {self._mode.name})"
            )
        if isinstance(stage, bool) or not isinstance(stage, int):
            raise TypeError(f"stage must be an int, got {stage!r}")
        if stage < 0:
            raise ValueError(f"stage must be >= 0, got {stage!r}")
        if stage != 0 and self._mode is not ExecutionMode.STAGED:
            raise ValueError(
                f"stage={stage!r} given for {name!r}, but stages only apply in "
                f"ExecutionMode.STAGED (mode is {self._mode.name})"
            )
        if scope is not None and not isinstance(scope, CancellationScope):
            raise TypeError(f"scope must be a CancellationScope or None, got {scope!r}")
        if not isinstance(cancel_scope_on_failure, bool):
            raise TypeError(
                f"cancel_scope_on_failure must be a bool, got {cancel_scope_on_failure!r}"
            )
        if cancel_scope_on_failure and scope is None:
            raise ValueError(
                f"cancel_scope_on_failure=True given for {name!r} without a scope"
            )
        self._signals[name] = Signal(
            name=name,
            fn=fn,
            args=tuple(args),
            timeout=seconds,
            depends_on=deps,
            stage=stage,
            scope=scope,
            cancel_scope_on_failure=cancel_scope_on_failure,
            index=len(self._signals),
        )

    def _check_graph(self) -> None:
        """Unknown dependencies and cycles, in O(signals + edges)."""
        signals = self._signals
        for sig in signals.values():
            for dep in sig.depends_on:
                if dep not in signals:
                    raise ValueError(
                        f"signal {sig.name!r} depends on unknown signal {dep!r}"
                    )
        # Iterative depth-first search; colour 1 = on the current path. Reset
        # first: a run() refused earlier may have left colours behind.
        for sig in signals.values():
            sig.color = 0
        for root in signals.values():
            if root.color:
                continue
            root.color = 1
            path = [root]
            stack = [iter(root.depends_on)]
            while stack:
                dep_name = next(stack[-1], None)
                if dep_name is None:
                    path.pop().color = 2
                    stack.pop()
                    continue
                node = signals[dep_name]
                if node.color == 1:
                    names = [s.name for s in path[path.index(node) :]]
                    cycle = " -> ".join(repr(n) for n in [*names, node.name])
                    raise ValueError(f"dependency cycle: {cycle}")
                if node.color == 0:
                    node.color = 1
                    path.append(node)
                    stack.append(iter(node.depends_on))

    async def run(self, *, nursery: trio.Nursery | None = None) -> IgnitionResult:
        """Run every signal once and return what each one did.

        Returns when every signal's outcome is decided, or at the global
        timeout at the latest. Without *nursery*, every task it started has
        ended when it returns (signals still running after a soft timeout are
        cancelled then). With *nursery*, signals run in it: services keep
        running there once ready, and signals still running after a soft
        per-signal or soft global timeout are left running there.

        Args:
            nursery: A nursery for the signals' tasks to live in; required
                when a signal is a service.

        Returns:
            The :class:`IgnitionResult`.

        Raises:
            ValueError: an unknown dependency, a dependency cycle (naming its
                members in order), or a service without a *nursery*. Raised
                before anything starts.
            RuntimeError: the ignition already ran.
            Exception: whatever a custom policy raised (the run is stopped
                and every signal it started is cancelled first).
        """
        if self._ran:
            raise RuntimeError("an Ignition runs once; build a new one to run again")
        if nursery is not None and not isinstance(nursery, trio.Nursery):
            raise TypeError(f"nursery must be a trio.Nursery or None, got {nursery!r}")
        self._check_graph()
        if nursery is None:
            services = [s.name for s in self._signals.values() if s.service]
            if services:
                raise ValueError(
                    f"signals {services!r} are services (they take task_status) and "
                    "keep running once ready: pass run(nursery=...) for them to run in"
                )
        self._ran = True
        return await Run(self, nursery).execute()
