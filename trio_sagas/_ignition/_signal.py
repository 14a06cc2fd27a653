"""One signal of an Ignition: its configuration, then the state of its single run.

Also the small pure helpers the run's decisions share: how a signal's
function is called (a service gets ``task_status``, a function with a
``deps`` parameter gets its dependencies' values), and the causes a stop
hands out.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import trio

from .._cancel import CancellationScope
from .._outcome import CancelCause, CancelReason, Outcome, Status
from .._retry import RetryPolicy
from ._records import IgnitionResult, StageResult


def keyword_parameters(fn: object) -> frozenset[str]:
    """The names *fn* accepts as keywords (``**kwargs`` counts as ``"**"``).

    Reads a plain function's code object directly: ``inspect.signature``
    costs about 10 µs, a third of what adding a signal costs otherwise.
    """
    code = getattr(fn, "__code__", None)
    # A decorated function's code is the wrapper's (*args, **kwargs):
    # inspect.signature follows __wrapped__ to the real parameters.
    if (
        code is not None
        and not isinstance(fn, functools.partial)
        and not hasattr(fn, "__wrapped__")
    ):
        names = code.co_varnames[
            code.co_posonlyargcount : code.co_argcount + code.co_kwonlyargcount
        ]
        if code.co_flags & inspect.CO_VARKEYWORDS:
            return frozenset((*names, "**"))
        return frozenset(names)
    try:
        parameters = inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):  # some builtins have no signature
        return frozenset()
    return frozenset(
        "**" if p.kind is p.VAR_KEYWORD else name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.VAR_KEYWORD)
    )


class Signal:
    """One added signal: its configuration, then the state of its single run."""

    __slots__ = (
        "args",
        "cancel_scope_on_failure",
        "dependents",
        "depends_on",
        "fn",
        "holds_slot",
        "index",
        "name",
        "outcome",
        "retry",
        "retry_attributes",
        "scope",
        "service",
        "serving",
        "stage",
        "stage_state",
        "started_at",
        "stopped",
        "task_scope",
        "timeout",
        "waiting",
        "wants_deps",
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
        retry: RetryPolicy | None,
        service: bool,
        wants_deps: bool,
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
        self.retry = retry
        self.service = service
        self.wants_deps = wants_deps
        self.index = index
        self.dependents: list[Signal] = []
        self.waiting = len(depends_on)
        self.outcome: Outcome[Any] | None = None
        self.started_at: float | None = None
        # Only when the signal runs in the caller's nursery: its own scope,
        # so the run can cancel it there (else one scope covers every signal).
        self.task_scope: trio.CancelScope | None = None
        # Set when its work (a service: the service itself) has ended; only
        # built when it runs in the caller's nursery, for ordered shutdown.
        self.stopped: trio.Event | None = None
        self.holds_slot = False
        # A service that got ready: its own task (not the signal's) sets
        # ``stopped`` when it ends.
        self.serving = False
        # What the retry loop reported (``"attempts"``: one record per
        # try), for a signal with a retry policy: its outcome's attributes.
        self.retry_attributes: Mapping[str, object] | None = None
        self.stage_state: Stage | None = None  # STAGED mode only

    def __repr__(self) -> str:
        return f"<Signal {self.name!r}>"

    def ended(
        self,
        status: Status,
        *,
        value: object = None,
        error: BaseException | None = None,
        cause: CancelCause | None = None,
        at: float | None = None,
        attributes: Mapping[str, object] | None = None,
    ) -> Outcome[Any]:
        """Its outcome, decided now (or at *at*)."""
        return Outcome(
            self.name,
            status,
            value=value,
            error=error,
            cause=cause,
            started_at=self.started_at,
            finished_at=trio.current_time() if at is None else at,
            attributes=attributes,
        )

    def unstarted(self, status: Status, cause: CancelCause) -> Outcome[Any]:
        """Its outcome when resolved without running.

        A cancelled scope is the more specific statement: it wins.
        """
        if self.scope is not None and self.scope.cause is not None:
            return self.ended(Status.CANCELLED, cause=self.scope.cause)
        return self.ended(status, cause=cause)

    def attributes(self) -> Mapping[str, object] | None:
        """The extras of its outcome: the retry loop's, when it retries."""
        return self.retry_attributes

    def value(self) -> object:
        """The value it succeeded with (what a dependent receives)."""
        assert self.outcome is not None
        return self.outcome.value


class Worker(Protocol):
    """What each signal's task does (:class:`~._work.SignalWork`)."""

    async def signal_task(self, sig: Signal) -> None: ...

    def timed_out_at(self, sig: Signal, at: float) -> None: ...


class Stage:
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
    )

    def __init__(self, number: int, position: int) -> None:
        self.number = number
        self.position = position
        self.signals: list[Signal] = []
        self.decided = 0
        self.succeeded = 0
        self.needed = 1
        self.started = False
        self.promoted = False
        self.promoted_at: float | None = None
        self.first_bad: Outcome[Any] | None = None


def root_of(outcome: Outcome[Any]) -> str:
    """The signal at the root of *outcome*: its trigger, else the signal itself."""
    if outcome.cause is not None and outcome.cause.triggered_by is not None:
        return outcome.cause.triggered_by
    return outcome.name


_STOP_REASONS = {
    Status.FAILED: CancelReason.STEP_FAILED,
    Status.TIMED_OUT: CancelReason.STEP_TIMEOUT,
    Status.CANCELLED: CancelReason.SCOPE_CANCELLED,
}


def stop_cause(outcome: Outcome[Any], message: str) -> CancelCause:
    """The cause given to what a stop cancels or skips, naming *outcome*'s signal."""
    reason = _STOP_REASONS.get(outcome.status, CancelReason.TERMINAL)
    return CancelCause.of(reason, triggered_by=outcome.name, message=message)


def build_result(
    signals: list[Signal],
    stages: list[Stage],
    *,
    timed_out: bool,
    started_at: float,
    finished_at: float,
) -> IgnitionResult:
    """The :class:`IgnitionResult` of a run whose outcomes are all decided."""
    outcomes: dict[str, Outcome[Any]] = {}
    for sig in signals:
        assert sig.outcome is not None
        outcomes[sig.name] = sig.outcome
    return IgnitionResult(
        outcomes=types.MappingProxyType(outcomes),
        timed_out=timed_out,
        started_at=started_at,
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
            for stage in stages
        ),
    )
