"""Small private helpers shared by every layer: module metadata and cancellation shapes.

Argument checks live in :mod:`trio_sagas._validate`.
"""

from __future__ import annotations

import types
from typing import Any, TypeVar, cast

import trio

T = TypeVar("T")
N = TypeVar("N", int, float)


class NoPublicConstructor(type):
    """Metaclass that refuses ``Class(...)``; the library builds it with ``_create``.

    As trio's own: for objects that only make sense in the state a factory
    sets up (an error group outside its ``async with`` block).
    """

    def __call__(cls, *args: object, **kwargs: object) -> None:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor"
        )

    def _create(cls: type[T], *args: object, **kwargs: object) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


def fixup_module_metadata(module_name: str, namespace: dict[str, Any]) -> None:
    """Make public objects claim the public module (as trio does).

    Reprs, tracebacks and Sphinx then say ``trio_sagas.Scene`` rather than
    ``trio_sagas._saga._scene.Scene``.
    """
    seen: set[int] = set()

    def fix_one(qualname: str, name: str, obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        mod = getattr(obj, "__module__", None)
        if mod is None or not mod.startswith("trio_sagas."):
            return
        obj.__module__ = module_name
        if isinstance(obj, type):
            obj.__name__ = name
            obj.__qualname__ = qualname
            for attr_name, attr_value in obj.__dict__.items():
                if isinstance(attr_value, types.FunctionType):
                    fix_one(f"{qualname}.{attr_name}", attr_name, attr_value)

    for objname, obj in namespace.items():
        if not objname.startswith("_"):
            fix_one(objname, objname, obj)


def documented_constant(value: N, name: str, doc: str) -> N:
    """*value* as an instance of a one-off subclass of its type whose docstring is *doc*.

    ``help(trio_sagas.CHECK_FLOOR)`` then explains the constant instead of
    showing float's docstring, and Sphinx's ``autodata`` reads the same text.
    The value stays the number: it compares, hashes, formats and computes as
    one (arithmetic returns a plain ``int``/``float``), and it copies and
    pickles as the plain number.
    """
    base: type[int] | type[float] = type(value)
    if base is not int and base is not float:
        raise TypeError(f"value must be an int or a float, got {value!r}")

    def __reduce__(self: int | float) -> tuple[type[int] | type[float], tuple[Any]]:
        """Copy and pickle as the plain number."""
        return base, (base(self),)

    namespace = {
        "__doc__": doc,
        "__module__": "trio_sagas",
        "__qualname__": name,
        "__slots__": (),
        "__repr__": base.__repr__,
        "__reduce__": __reduce__,
    }
    return cast("N", type(name, (base,), namespace)(value))


def contains_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is, or is a group holding, a :exc:`trio.Cancelled`."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[0] is not None
    return False


def lone_cancelled(exc: BaseException) -> trio.Cancelled | None:
    """The first :exc:`trio.Cancelled` in *exc* if it holds nothing else.

    That is the exception to re-raise when trio's strict nurseries wrapped an
    outside cancel in a group: callers get a plain ``trio.Cancelled``.
    """
    if isinstance(exc, trio.Cancelled):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    first: trio.Cancelled | None = None
    for inner in exc.exceptions:
        cancelled = lone_cancelled(inner)
        if cancelled is None:
            return None
        first = first or cancelled
    return first


def is_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is :exc:`trio.Cancelled` or a group of nothing else."""
    return lone_cancelled(exc) is not None
