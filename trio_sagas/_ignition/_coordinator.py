"""The Ignition coordinator: startup signals over the cancellation tree (layer 4).

One :class:`Ignition` holds signals (async functions with a name, an
optional timeout, dependencies, a stage and a cancellation scope) and runs
them once; :mod:`._run` holds the state machine of that run.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import final

import trio

from .._cancel import CancellationScope
from .._events import Observer
from .._retry import RetryPolicy
from .._validate import (
    check_async,
    check_bool,
    check_int,
    check_name,
    check_name_list,
    check_optional_instance,
    check_sync_callable,
    check_timeout,
)
from ._graph import check_graph
from ._records import (
    ExecutionMode,
    IgnitionPolicy,
    IgnitionResult,
    PolicyCallable,
    StagePolicy,
)
from ._run import Run
from ._settings import Settings, policy_name
from ._signal import Signal, keyword_parameters
from ._tasks import enter_context
from ._work import SignalWork


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
        observer: Sync callable (or a sequence of them) receiving :class:`SignalStarted`,
            :class:`SignalCompleted`, :class:`StageStarted`,
            :class:`GlobalTimeoutReached` and :class:`IgnitionCompleted`.

    Raises:
        TypeError: an argument of the wrong type (a mode that is not an
            :class:`ExecutionMode`, an async policy or observer, ...).
        ValueError: a bad value (``global_timeout <= 0``,
            ``max_parallelism < 1``, a threshold outside (0, 1]).
    """

    __slots__ = ("_ran", "_settings", "_signals")

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
        observer: Observer | Sequence[Observer] | None = None,
    ) -> None:
        self._settings = Settings(
            mode=mode,
            policy=policy,
            global_timeout=global_timeout,
            cancel_on_global_timeout=cancel_on_global_timeout,
            cancel_individual_on_timeout=cancel_individual_on_timeout,
            cancel_dependents_on_failure=cancel_dependents_on_failure,
            max_parallelism=max_parallelism,
            stage_policy=stage_policy,
            early_promotion_threshold=early_promotion_threshold,
            observer=observer,
        )
        self._signals: dict[str, Signal] = {}
        self._ran = False

    def __repr__(self) -> str:
        return (
            f"<trio_sagas.Ignition {self._settings.mode.name} "
            f"{policy_name(self._settings.policy)} "
            f"signals={len(self._signals)}>"
        )

    @property
    def mode(self) -> ExecutionMode:
        """How signals are scheduled."""
        return self._settings.mode

    @property
    def names(self) -> tuple[str, ...]:
        """The added signals' names, in the order they were added."""
        return tuple(self._signals)

    def add(
        self,
        name: str,
        fn: Callable[..., Awaitable[object]],
        *args: object,
        timeout: float | None = None,
        depends_on: Iterable[str] = (),
        stage: int = 0,
        scope: CancellationScope | None = None,
        cancel_scope_on_failure: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Add a signal: ``await fn(*args)`` is its work, its return value its value.

        A function with a ``task_status`` parameter is a *service*, started
        with :meth:`trio.Nursery.start` semantics: it is ready (SUCCEEDED,
        value = what it passed to ``task_status.started()``) once it calls
        ``task_status.started()``, and then keeps running in the nursery
        passed to :meth:`run`. On shutdown (that nursery cancelled) a service
        is stopped only after the signals that depend on it stopped.

        A function with a ``deps`` keyword parameter receives the values its
        dependencies succeeded with, as a read-only mapping by name (a
        service's value is what it passed to ``task_status.started()``).

        Args:
            name: Unique among this ignition's signals; non-empty, no ``/``.
            fn: An async function.
            *args: Positional arguments for *fn*.
            timeout: Seconds from the signal's start until it is TIMED_OUT
                (hard or soft per ``cancel_individual_on_timeout``); for a
                service, until it must be ready; with *retry*, for every try
                and backoff together. None: no per-signal limit.
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
            retry: Call *fn* again after it raised, per this
                :class:`~trio_sagas.RetryPolicy` (backoff on the trio clock);
                the outcome's ``attributes`` are those of the retry loop
                (``"attempts"``: a record per try, as everywhere). Not
                for services.

        Raises:
            TypeError: *fn* is not an async function, or an argument has the
                wrong type.
            ValueError: a duplicate name, a bad timeout or stage, or an option
                the mode does not use.
            RuntimeError: the ignition already ran.
        """
        check_async(fn, "fn")
        keywords = keyword_parameters(fn)
        self._add(
            name,
            fn,
            args,
            service="task_status" in keywords,
            wants_deps="deps" in keywords,
            timeout=timeout,
            depends_on=depends_on,
            stage=stage,
            scope=scope,
            cancel_scope_on_failure=cancel_scope_on_failure,
            retry=retry,
        )

    def add_context(
        self,
        name: str,
        factory: Callable[..., AbstractAsyncContextManager[object]],
        *args: object,
        timeout: float | None = None,
        depends_on: Iterable[str] = (),
        stage: int = 0,
        scope: CancellationScope | None = None,
        cancel_scope_on_failure: bool = False,
    ) -> None:
        """Add a service that is an async context manager, e.g. a journal.

        ``factory(*args)`` (plus ``deps=`` when it takes a ``deps`` keyword)
        builds the context manager; the service is ready — SUCCEEDED, with
        the value ``__aenter__`` returned — once it is entered, and it stays
        entered in the nursery passed to :meth:`run` until that nursery is
        cancelled. Its ``__aexit__`` then runs only after every signal that
        depends on it stopped. The arguments are those of :meth:`add`.

        Raises:
            TypeError: *factory* is not callable (or is an async function),
                or an argument has the wrong type.
            ValueError: as for :meth:`add`.
            RuntimeError: the ignition already ran.
        """
        check_sync_callable(factory, "factory")
        self._add(
            name,
            functools.partial(enter_context, factory),
            args,
            service=True,
            wants_deps="deps" in keyword_parameters(factory),
            timeout=timeout,
            depends_on=depends_on,
            stage=stage,
            scope=scope,
            cancel_scope_on_failure=cancel_scope_on_failure,
            retry=None,
        )

    def _add(
        self,
        name: str,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        *,
        service: bool,
        wants_deps: bool,
        timeout: float | None,
        depends_on: Iterable[str],
        stage: int,
        scope: CancellationScope | None,
        cancel_scope_on_failure: bool,
        retry: RetryPolicy | None,
    ) -> None:
        if self._ran:
            raise RuntimeError("cannot add signals to an Ignition that already ran")
        check_name(name)
        if name in self._signals:
            raise ValueError(f"name {name!r} is already used by another signal")
        # None is "no limit", so infinity is refused rather than a second spelling.
        seconds = check_timeout(timeout, "timeout", allow_zero=False, allow_inf=False)
        deps = check_name_list(depends_on, "depends_on")
        mode = self._settings.mode
        if deps and mode is not ExecutionMode.DEPENDENCY_AWARE:
            raise ValueError(
                f"depends_on={deps!r} given for {name!r}, but dependencies only "
                f"apply in ExecutionMode.DEPENDENCY_AWARE (mode is {mode.name})"
            )
        check_int(stage, "stage", minimum=0)
        if stage != 0 and mode is not ExecutionMode.STAGED:
            raise ValueError(
                f"stage={stage!r} given for {name!r}, but stages only apply in "
                f"ExecutionMode.STAGED (mode is {mode.name})"
            )
        check_optional_instance(scope, CancellationScope, "scope")
        check_bool(cancel_scope_on_failure, "cancel_scope_on_failure")
        if cancel_scope_on_failure and scope is None:
            raise ValueError(
                f"cancel_scope_on_failure=True given for {name!r} without a scope"
            )
        check_optional_instance(retry, RetryPolicy, "retry")
        if retry is not None and retry.hedge is not None:
            raise ValueError(
                f"retry.hedge={retry.hedge!r} given for {name!r}: a signal is "
                "retried, never hedged (use a RetryPolicy without hedge)"
            )
        if retry is not None and service:
            raise ValueError(
                f"retry given for the service {name!r}: a service is started "
                "once; retry the check inside it, or make it a plain signal"
            )
        self._signals[name] = Signal(
            name=name,
            fn=fn,
            args=args,
            timeout=seconds,
            depends_on=deps,
            stage=stage,
            scope=scope,
            cancel_scope_on_failure=cancel_scope_on_failure,
            retry=retry,
            service=service,
            wants_deps=wants_deps,
            index=len(self._signals),
        )

    async def run(self, *, nursery: trio.Nursery | None = None) -> IgnitionResult:
        """Run every signal once and return what each one did.

        Returns when every signal's outcome is decided, or at the global
        timeout at the latest. Cancelled from outside, it cancels every
        signal it started (ready services excepted) and raises a plain
        :exc:`trio.Cancelled`, never an exception group of them. Without *nursery*, every task it started has
        ended when it returns (signals still running after a soft timeout are
        cancelled then). With *nursery*, signals run in it: services keep
        running there once ready, and signals still running after a soft
        per-signal or soft global timeout are left running there.

        Args:
            nursery: A nursery for the signals' tasks to live in; required
                when a signal is a service. When it is cancelled, the
                services in it stop in reverse dependency order.

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
        check_graph({name: sig.depends_on for name, sig in self._signals.items()})
        if nursery is None:
            services = [s.name for s in self._signals.values() if s.service]
            if services:
                raise ValueError(
                    f"signals {services!r} are services (they take task_status) and "
                    "keep running once ready: pass run(nursery=...) for them to run in"
                )
        self._ran = True
        run = Run(self._settings, self._signals, nursery)
        return await run.execute(SignalWork(run))
