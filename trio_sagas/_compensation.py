"""Compensation scopes and step contexts (see docs/architecture.rst for the layers).

A :class:`CompensationScope` collects undo actions while work goes forward
and runs them, once, when the work must be rolled back: shielded from the
cancellation that triggered the rollback, every try bounded by a timeout,
continuing past a failing action.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVarTuple, final

import attrs
import trio

from ._errors import SagaError as SagaError  # its old home; import it from _errors
from ._outcome import Outcome
from ._retry import RetryPolicy
from ._retry import run_attempts as run_attempts  # moved; importable here too
from ._util import documented_constant
from ._validate import (
    check_async,
    check_label,
    check_timeout,
    describe_callable,
)

PosArgsT = TypeVarTuple("PosArgsT")

# Scopes whose run() is in progress in this task or an ancestor of it.
_RUNNING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "trio_sagas_running_compensations", default=frozenset()
)

DEFAULT_COMPENSATION_TIMEOUT = documented_constant(
    30.0,
    "DEFAULT_COMPENSATION_TIMEOUT",
    """Seconds one try of a compensation action may take when no timeout is given (30.0).

    Compensation is always bounded so that a hung rollback cannot hang the
    program; pass ``timeout=math.inf`` to opt out explicitly.
    """,
)


@final
class CompensationPolicy(enum.Enum):
    """How a CompensationScope runs its actions."""

    SEQUENTIAL_REVERSE = "sequential_reverse"
    """One at a time, last registered first (the default)."""
    PARALLEL = "parallel"
    """All at once; the report lists them last registered first."""


@final
class _Action:
    """One registered undo action.

    A plain slotted class rather than ``attrs.frozen``, and its default name
    worked out when first read rather than at registration: together ~0.4 us
    less per registration (measured), most of what one undo per message
    costs a fan-in.
    """

    __slots__ = ("_name", "args", "fn")

    def __init__(
        self,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        name: str | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self._name = name

    @property
    def name(self) -> str:
        """The name given at registration, else the function's qualified name."""
        name = self._name
        if name is None:
            name = self._name = describe_callable(self.fn)
        return name


@final
@attrs.frozen
class CompensationReport:
    """What a compensation run did: one outcome per action, in run order.

    Attributes:
        outcomes: One :class:`Outcome` per action (attribute ``attempts``:
            the :class:`AttemptRecord` of each try).
    """

    outcomes: tuple[Outcome[Any], ...] = ()

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """The final error of every action that did not succeed, in run order."""
        return tuple(o.error for o in self.outcomes if not o.ok and o.error is not None)

    @property
    def ok(self) -> bool:
        """Whether every action succeeded (an empty run is ok)."""
        return all(o.ok for o in self.outcomes)

    @property
    def failed(self) -> tuple[Outcome[Any], ...]:
        """The outcomes of the actions that did not succeed."""
        return tuple(o for o in self.outcomes if not o.ok)


def _check_retry(retry: object) -> RetryPolicy | None:
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
    return retry


async def run_compensation_action(
    fn: Callable[..., Awaitable[object]],
    args: Sequence[object],
    *,
    name: str,
    retry: RetryPolicy | None,
    timeout: float,
) -> Outcome[object]:
    """Run one undo action: shielded, each try bounded by *timeout*, retried."""
    with trio.CancelScope(shield=True):
        outcome = await run_attempts(
            fn, args, name=name, retry=retry, timeout=timeout, what="compensation"
        )
    return outcome


@final
class CompensationScope:
    """Undo actions registered while work goes forward, run once on rollback.

    ``register`` adds an action; ``run`` takes every registered action and
    runs each exactly once. Actions registered later are run by a later
    ``run``. Runs are serialized: a second ``run`` called while one is in
    progress waits for it, then runs whatever was registered since, so no
    action ever runs twice.
    """

    __slots__ = ("_actions", "_running")

    def __init__(self) -> None:
        self._actions: list[_Action] = []
        self._running: trio.Event | None = None

    def __repr__(self) -> str:
        return f"<trio_sagas.CompensationScope with {len(self._actions)} action(s)>"

    def __len__(self) -> int:
        return len(self._actions)

    @property
    def has_actions(self) -> bool:
        """Whether any action is waiting to run."""
        return bool(self._actions)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the waiting actions, in registration order."""
        return tuple(a.name for a in self._actions)

    def register(
        self,
        fn: Callable[[*PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: str | None = None,
    ) -> None:
        """Register ``await fn(*args)`` as an undo action.

        Args:
            fn: An async function.
            *args: Positional arguments for *fn* (use :func:`functools.partial`
                for keywords).
            name: For reports; defaults to the function's qualified name.

        Raises:
            TypeError: *fn* is not an async function.
        """
        check_async(fn, "fn")
        if name is not None:
            check_label(name, "name")
        self._actions.append(_Action(fn, args, name))

    def absorb(self, other: CompensationScope) -> None:
        """Move every action of *other* to the end of this scope, in order."""
        if not isinstance(other, CompensationScope):
            raise TypeError(f"other must be a CompensationScope, got {other!r}")
        if other is self:
            raise ValueError("a CompensationScope cannot absorb itself")
        self._actions.extend(other._actions)
        other._actions.clear()

    def clear(self) -> None:
        """Forget every waiting action (the work was committed)."""
        self._actions.clear()

    async def _run_actions(
        self,
        actions: list[_Action],
        policy: CompensationPolicy,
        retry: RetryPolicy | None,
        timeout: float,
    ) -> CompensationReport:
        results: list[Outcome[Any] | None] = [None] * len(actions)

        async def one(index: int, action: _Action) -> None:
            results[index] = await run_compensation_action(
                action.fn, action.args, name=action.name, retry=retry, timeout=timeout
            )

        try:
            if policy is CompensationPolicy.SEQUENTIAL_REVERSE:
                # run() shields the whole run: no shielded scope of its own
                # per action (measured: ~6 us of an action's ~20 us).
                for index, action in enumerate(actions):
                    results[index] = await run_attempts(
                        action.fn,
                        action.args,
                        name=action.name,
                        retry=retry,
                        timeout=timeout,
                        what="compensation",
                    )
            else:
                # Shielded each: a peer that ends in a BaseException cancels
                # the nursery, and the others must still run to their end.
                async with trio.open_nursery() as nursery:
                    for index, action in enumerate(actions):
                        nursery.start_soon(
                            one, index, action, name=f"compensate:{action.name}"
                        )
        except BaseException:
            # Interrupted (KeyboardInterrupt, a bug in a runner): whatever did
            # not complete stays registered, so a later run still undoes it.
            pending = [a for a, r in zip(actions, results, strict=True) if r is None]
            self._actions[:0] = pending[::-1]
            raise
        return CompensationReport(tuple(o for o in results if o is not None))

    async def run(
        self,
        policy: CompensationPolicy = CompensationPolicy.SEQUENTIAL_REVERSE,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> CompensationReport:
        """Run every waiting action exactly once.

        The whole run is shielded from outer cancellation (it is bounded by
        the per-try *timeout* instead). A failing action does not stop the
        others.

        Args:
            policy: Sequential in reverse registration order (default), or
                all in parallel.
            retry: Retry a failing action per this policy (the ``hedge``
                part is ignored; ``budget`` is honored).
            timeout: Seconds per try of each action (> 0: a zero timeout
                would refuse every undo); None means
                :data:`DEFAULT_COMPENSATION_TIMEOUT`, ``math.inf`` no limit.

        Returns:
            A :class:`CompensationReport`; it never raises for an action's
            :exc:`Exception`.
        """
        if not isinstance(policy, CompensationPolicy):
            raise TypeError(f"policy must be a CompensationPolicy, got {policy!r}")
        retry = _check_retry(retry)
        per_try = check_timeout(timeout, "timeout", allow_zero=False)
        if per_try is None:
            per_try = DEFAULT_COMPENSATION_TIMEOUT
        if id(self) in _RUNNING.get():
            # An action waiting for the run it belongs to would wait forever
            # (shielded, past every timeout): refuse instead.
            raise RuntimeError(
                "CompensationScope.run() called from one of that scope's own actions"
            )
        with trio.CancelScope(shield=True):
            while self._running is not None:
                await self._running.wait()
            actions, self._actions = self._actions[::-1], []
            if not actions:
                return CompensationReport()
            self._running = done = trio.Event()
            token = _RUNNING.set(_RUNNING.get() | {id(self)})
            try:
                report = await self._run_actions(actions, policy, retry, per_try)
            finally:
                _RUNNING.reset(token)
                self._running = None
                done.set()
        return report
