"""Small private helpers shared by every layer: validation and module metadata."""

from __future__ import annotations

import functools
import inspect
import math
import types
from typing import Any

import trio


def is_async_callable(fn: object) -> bool:
    """Whether calling *fn* returns an awaitable we can drive with trio.

    Looks through :func:`functools.partial` and callable objects whose
    ``__call__`` is a coroutine function.
    """
    # Fast path for plain functions and bound methods (which forward
    # attribute access to their function): this runs once per task spawn.
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        return True
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def describe_callable(fn: object) -> str:
    """A short readable name for *fn*, for error messages and default names."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        # A callable object: name its class.
        name = type(fn).__qualname__
    return str(name)


def check_async(fn: object, argument: str) -> None:
    """Raise :exc:`TypeError` unless *fn* is an async callable."""
    if not callable(fn):
        raise TypeError(f"{argument} must be an async callable, got {fn!r}")
    if not is_async_callable(fn):
        raise TypeError(
            f"{argument} must be an async function, got the sync callable "
            f"{describe_callable(fn)!r}"
        )


def check_sync_observer(observer: object, argument: str = "observer") -> None:
    """Raise :exc:`TypeError` unless *observer* is None or a sync callable."""
    if observer is None:
        return
    if not callable(observer):
        raise TypeError(f"{argument} must be a callable or None, got {observer!r}")
    if is_async_callable(observer):
        raise TypeError(
            f"{argument} must be a sync callable (it must not block), got the "
            f"async function {describe_callable(observer)!r}"
        )


def check_name(name: object, argument: str = "name") -> str:
    """Validate a component name: a non-empty string without ``/``."""
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str, got {name!r}")
    if not name or "/" in name:
        raise ValueError(
            f"{argument} must be non-empty and contain no '/', got {name!r}"
        )
    return name


def check_timeout(
    value: object, argument: str, *, allow_none: bool = True, allow_zero: bool = True
) -> float | None:
    """Validate a duration in seconds: a non-negative real, ``inf`` allowed."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{argument} must be a number of seconds, got None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{argument} must be {bound} seconds, got {value!r}")
    return seconds


def check_int(value: object, argument: str, *, minimum: int) -> int:
    """Validate an int (not a bool) that is at least *minimum*."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{argument} must be an int >= {minimum}, got {value!r}")
    return value


def check_label(value: object, argument: str) -> str:
    """Validate a free-form label: a non-empty string (``/`` allowed)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{argument} must be a non-empty str, got {value!r}")
    return value


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
