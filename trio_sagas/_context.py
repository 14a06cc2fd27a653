"""Step contexts: what a step gets to talk to the toolkit (see docs/architecture.rst).

A :class:`StepContext` names a step, carries its dependencies and result, and
holds the step's undo actions in a :class:`~trio_sagas.CompensationScope` it
creates on first use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVarTuple, final

import attrs

from ._cancel import CancellationScope
from ._compensation import CompensationScope
from ._validate import check_name, check_optional_str, check_optional_type

PosArgsT = TypeVarTuple("PosArgsT")

if TYPE_CHECKING:
    # PEP 696 default: a bare ``StepContext`` means ``StepContext[Any]``.
    from typing_extensions import TypeVar

    DepsT = TypeVar("DepsT", default=Any)
else:
    from typing import TypeVar

    DepsT = TypeVar("DepsT")


def _check_scope(instance: object, attribute: Any, value: object) -> None:
    check_optional_type(value, CompensationScope, "compensation")


def _check_cancellation(instance: object, attribute: Any, value: object) -> None:
    check_optional_type(value, CancellationScope, "cancellation")


def _check_text(instance: object, attribute: Any, value: object) -> None:
    check_optional_str(value, attribute.alias or attribute.name)


@final
@attrs.define(eq=False, slots=True, weakref_slot=False)  # see _UnvalidatedContext
class StepContext(Generic[DepsT]):
    """What a step gets to talk to the toolkit: its name, undo actions, deps.

    Generic over the type of its dependencies: annotate a step as
    ``async def charge(ctx: StepContext[Deps], order: Order)`` and ``ctx.deps``
    is a ``Deps`` to the type checker, with no cast (the runner passes the
    ``deps=`` it was given; nothing checks the type at run time).

    Attributes:
        name: The step's name.
        compensation: The step's own undo actions (created on first use).
        cancellation: The cancellation node the step runs under, if any.
        deps: Whatever the caller passed as dependencies (clients, stores).
        path: ``/``-joined names from the outermost context (defaults to
            *name*).
        result: In a saga's ``compensate``, what ``run`` returned.
        run_id: The saga run this step belongs to, when a runner gives one.
        idempotency_key: A stable key for this step's side effects. Always a
            ``str``: the runner's key inside a saga run (``run_id/path``,
            ``run_id/path#compensate`` in an undo), else ``run_id/path`` when
            a run id was given, else the path.
        forward_key: Inside an undo (a saga's ``compensate``), the
            ``idempotency_key`` the forward ``run`` had, so the undo can name
            the effect it reverses (``refund(charge_key=ctx.forward_key)``)
            without string surgery; None in forward work.
    """

    name: str = attrs.field()
    _compensation: CompensationScope | None = attrs.field(
        default=None, kw_only=True, validator=_check_scope
    )
    cancellation: CancellationScope | None = attrs.field(
        default=None, kw_only=True, validator=_check_cancellation
    )
    deps: DepsT = attrs.field(default=None, kw_only=True)
    path: str = attrs.field(default=None, kw_only=True, validator=_check_text)
    result: Any = attrs.field(default=None, kw_only=True)
    run_id: str | None = attrs.field(default=None, kw_only=True, validator=_check_text)
    _key: str | None = attrs.field(
        default=None, kw_only=True, alias="idempotency_key", validator=_check_text
    )
    forward_key: str | None = attrs.field(
        default=None, kw_only=True, validator=_check_text
    )

    @name.validator
    def _check_name(self, attribute: attrs.Attribute[str], value: str) -> None:
        check_name(value)

    def __attrs_post_init__(self) -> None:
        # attrs cannot default one field to another's value without a
        # Factory per construction; None stands for "the name" until here.
        if self.path is None:
            self.path = self.name  # type: ignore[unreachable]

    @property
    def compensation(self) -> CompensationScope:
        """The step's own undo actions (the scope is created on first use)."""
        scope = self._compensation
        if scope is None:
            # Created here rather than per context: most steps never register
            # an undo, and this saves a scope object on the saga's forward path.
            scope = self._compensation = CompensationScope()
        return scope

    @property
    def idempotency_key(self) -> str:
        """A stable key for this step's side effects (see the class docs)."""
        key = self._key
        if key is not None:
            return key
        return self.path if self.run_id is None else f"{self.run_id}/{self.path}"

    def _pending_compensation(self) -> CompensationScope | None:
        """The scope, if it holds actions (without creating one)."""
        scope = self._compensation
        return scope if scope is not None and scope._actions else None

    @classmethod
    def _trusted(
        cls,
        name: str,
        *,
        path: str,
        deps: Any,
        idempotency_key: str | None,
        run_id: str | None = None,
        result: Any = None,
        forward_key: str | None = None,
    ) -> StepContext[Any]:
        """Build without re-validating: for runners whose names were validated
        when the step was defined (this runs once per step, on the hot path)."""
        # Fill the slots of a twin class without StepContext's validating
        # __setattr__ (attrs' on_setattr validators: ~10 us here; user
        # assignments still go through them), with plain attribute stores,
        # then make the object a StepContext (same slots, so CPython allows
        # the __class__ assignment). ~0.6 us, against ~1.5 us through the
        # slot descriptors: a third of a saga step's overhead.
        ctx = _UnvalidatedContext()
        ctx.name = name
        ctx._compensation = None
        ctx.cancellation = None
        ctx.deps = deps
        ctx.path = path
        ctx.result = result
        ctx.run_id = run_id
        ctx._key = idempotency_key
        ctx.forward_key = forward_key
        ctx.__class__ = cls  # type: ignore[assignment]
        return ctx  # type: ignore[return-value]

    def register_compensation(
        self,
        fn: Callable[[*PosArgsT], Awaitable[object]],
        *args: *PosArgsT,
        name: str | None = None,
    ) -> None:
        """Register an undo action on this step's compensation scope."""
        self.compensation.register(fn, *args, name=name)

    def child(self, name: str) -> StepContext[DepsT]:
        """A context for a sub-step: own compensation scope; same deps, run id
        and cancellation node; path ``parent-path/name``."""
        return self._trusted_child(check_name(name), f"{self.path}/{name}")

    def _trusted_child(self, name: str, path: str) -> StepContext[DepsT]:
        """:meth:`child` for a name known to be valid (hot paths: fan-in)."""
        ctx = StepContext._trusted(
            name, path=path, deps=self.deps, idempotency_key=None, run_id=self.run_id
        )
        _SET_CANCELLATION(ctx, self.cancellation)
        return ctx


class _UnvalidatedContext(Generic[DepsT]):
    """StepContext's slots and base, without its __setattr__: what _trusted fills.

    StepContext has no ``__weakref__`` slot: with one, CPython refuses the
    ``__class__`` assignment (it compares the layouts without it).
    """

    __slots__ = StepContext.__slots__
    name: str
    _compensation: CompensationScope | None
    cancellation: CancellationScope | None
    deps: Any
    path: str
    result: Any
    run_id: str | None
    _key: str | None
    forward_key: str | None


def forward_context(
    name: str, path: str, deps: Any, run_id: str | None
) -> StepContext[Any]:
    """:meth:`StepContext._trusted` for forward work (no key, result or node).

    The saga runner's per-step constructor: positional arguments and no
    classmethod binding cost ~0.2 us against ~0.27 us through ``_trusted``'s
    keywords (measured, Python 3.11), on a forward path of ~1 us per step.
    """
    ctx = _UnvalidatedContext()
    ctx.name = name
    ctx._compensation = None
    ctx.cancellation = None
    ctx.deps = deps
    ctx.path = path
    ctx.result = None
    ctx.run_id = run_id
    ctx._key = None
    ctx.forward_key = None
    ctx.__class__ = StepContext  # type: ignore[assignment]
    return ctx  # type: ignore[return-value]


# The fields StepContext._trusted writes (a test checks this covers every field).
_CONTEXT_FIELDS = (
    "name",
    "_compensation",
    "cancellation",
    "deps",
    "path",
    "result",
    "run_id",
    "_key",
    "forward_key",
)
_SET_CANCELLATION = StepContext.__dict__["cancellation"].__set__
