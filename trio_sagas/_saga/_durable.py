"""Durable undo actions: undos an act registers inside ``run``, journaled.

In memory, ``ctx.register_compensation(fn, *args)`` keeps a function object
and its arguments; a process that dies takes them along. Under a journal the
runner gives each act a :class:`DurableScope` instead, which accepts only an
undo that another process can run again: a function registered by name with
:func:`durable_undo`, and JSON arguments. Each registration is journaled as a
``CompensationRegistered`` event (durable at the act's next journal write:
its end, or the rollback's first intent), and each such undo that succeeds as
a ``CompensationActionCompleted``, so a recovery or ``compensate_run`` runs
the ones not yet done -- and a completed one never again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import trio

from .._compensation import (
    DEFAULT_COMPENSATION_TIMEOUT,
    CompensationPolicy,
    CompensationReport,
    CompensationScope,
    run_compensation_action,
)
from .._outcome import Outcome
from .._retry import RetryPolicy
from .._validate import check_async, check_label
from ._events import CompensationActionCompleted, CompensationRegistered, SagaEvent

UndoFn = TypeVar("UndoFn", bound=Callable[..., Awaitable[object]])

_REGISTRY: dict[str, Callable[..., Awaitable[object]]] = {}
_NAME_ATTRIBUTE = "__trio_sagas_undo__"


def durable_undo(name: str) -> Callable[[UndoFn], UndoFn]:
    """Register an async function as an undo a journaled run can run again.

    Inside a journaled run (``run_scene(..., journal=...)``),
    ``ctx.register_compensation`` accepts only such functions, with JSON
    arguments: the registration is journaled by *name*, so a recovery in a
    fresh process -- which imports the same module, as it does for the
    scene definitions -- finds the function again::

        @trio_sagas.durable_undo("void-charge")
        async def void_charge(charge_id: str) -> None: ...

        async def charge(ctx, order):
            charge_id = await payments.charge(order["amount"])
            ctx.register_compensation(void_charge, charge_id)

    Args:
        name: Unique in the process; stable across deployments (it is stored).

    Raises:
        TypeError: *name* is not a string, or the decorated object is not an
            async function.
        ValueError: *name* is empty, or already names another function.
    """
    check_label(name, "name")

    def register(fn: UndoFn) -> UndoFn:
        check_async(fn, f"durable_undo({name!r})")
        known = _REGISTRY.get(name)
        if known is not None and known is not fn and _where(known) != _where(fn):
            raise ValueError(
                f"durable_undo: name {name!r} already names {_where(known)}; "
                f"cannot also name {_where(fn)}"
            )
        _REGISTRY[name] = fn
        setattr(fn, _NAME_ATTRIBUTE, name)
        return fn

    return register


def _where(fn: object) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)!s}"


def resolve_undo(name: str) -> Callable[..., Awaitable[object]] | None:
    """The function registered under *name* in this process, or None."""
    return _REGISTRY.get(name)


def undo_name(fn: object) -> str:
    """The :func:`durable_undo` name of *fn*.

    Raises:
        TypeError: *fn* was not registered with :func:`durable_undo`.
    """
    name = getattr(fn, _NAME_ATTRIBUTE, None)
    if not isinstance(name, str) or _REGISTRY.get(name) is not fn:
        raise TypeError(
            f"register_compensation: {_where(fn)} cannot be journaled, so a recovery "
            "could not run it after a crash. Decorate it with "
            "@trio_sagas.durable_undo('some-name') and pass JSON arguments, or "
            "undo the work in the act's compensate= (it gets ctx.result)"
        )
    return name


def check_json_args(args: tuple[object, ...], name: str) -> tuple[object, ...]:
    """*args* if they survive a JSON round trip unchanged, else TypeError."""
    try:
        back = json.loads(json.dumps(list(args), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"register_compensation: the arguments of durable undo {name!r} must "
            f"be JSON (str, int, float, bool, None, lists, dicts with str keys), "
            f"got {args!r}: {exc}"
        ) from None
    if back != list(args) or any(isinstance(a, tuple) for a in args):
        raise TypeError(
            f"register_compensation: the arguments of durable undo {name!r} "
            f"do not survive JSON unchanged (tuples, non-str keys): {args!r}"
        )
    return args


class Sink(Protocol):
    def emit(self, event_type: type[SagaEvent], at: float, **fields: Any) -> None: ...

    async def settle(self) -> None: ...


class DurableScope(CompensationScope):  # type: ignore[misc]  # final to users
    """The compensation scope of an act in a journaled run.

    Every action has a journal index; registering journals it, and each
    action that succeeds is journaled as done.
    """

    __slots__ = ("_indexes", "_next", "path", "sink")

    def __init__(self, path: str, sink: Sink | None) -> None:
        super().__init__()
        self.path = path
        self.sink = sink
        self._indexes: list[int] = []
        self._next = 0

    def register(
        self,
        fn: Callable[..., Awaitable[object]],
        *args: object,
        name: str | None = None,
    ) -> None:
        """Register a :func:`durable_undo` function with JSON arguments.

        Raises:
            TypeError: *fn* is not a durable undo, or an argument is not JSON.
        """
        undo = undo_name(fn)
        check_json_args(args, undo)
        if name is not None:
            check_label(name, "name")
        index = self._next
        self.restore(index, fn, args, name)
        if self.sink is not None:
            self.sink.emit(
                CompensationRegistered,
                trio.current_time(),
                step=self.path,
                index=index,
                undo=undo,
                args=args,
                label=name,
            )

    def restore(
        self,
        index: int,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        name: str | None,
    ) -> None:
        """Add a registration read back from the journal (not journaled again)."""
        super().register(fn, *args, name=name or getattr(fn, _NAME_ATTRIBUTE, None))
        self._indexes.append(index)
        self._next = max(self._next, index + 1)

    def forget(self, index: int) -> None:
        """The journal says action *index* completed: never run it again."""
        if index in self._indexes:
            at = self._indexes.index(index)
            del self._indexes[at]
            del self._actions[at]

    def clear(self) -> None:
        super().clear()
        self._indexes.clear()

    def absorb(self, other: CompensationScope) -> None:
        raise TypeError("a durable step's compensation scope cannot absorb another")

    async def run(
        self,
        policy: CompensationPolicy = CompensationPolicy.SEQUENTIAL_REVERSE,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> CompensationReport:
        """Run the actions last registered first, journaling each success."""
        per_try = DEFAULT_COMPENSATION_TIMEOUT if timeout is None else timeout
        outcomes: list[Outcome[Any]] = []
        with trio.CancelScope(shield=True):
            while self._actions:
                action, index = self._actions[-1], self._indexes[-1]
                outcome = await run_compensation_action(
                    action.fn,
                    action.args,
                    name=action.name,
                    retry=retry,
                    timeout=per_try,
                )
                # Taken off only once it ended: an interruption (KeyboardInterrupt)
                # leaves it registered, for a later run or a recovery.
                self._actions.pop()
                self._indexes.pop()
                outcomes.append(outcome)
                if outcome.ok and self.sink is not None:
                    self.sink.emit(
                        CompensationActionCompleted,
                        trio.current_time(),
                        step=self.path,
                        index=index,
                    )
                    # Durable before the next undo runs: a crash from here on
                    # never runs this one again.
                    await self.sink.settle()
        return CompensationReport(tuple(outcomes))
