"""Argument checks shared by every public constructor and function.

One rule everywhere, as trio's ``open_memory_channel`` does it: a wrong
*type* is a :exc:`TypeError`, a wrong *value* a :exc:`ValueError`, and the
message names the argument and shows the value
(``max_attempts must be >= 1, got 0``). Durations are finite unless the
caller documents ``math.inf`` as "no limit" (``allow_inf=True``).
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

E = TypeVar("E", bound=enum.Enum)

CO_COROUTINE = inspect.CO_COROUTINE
"""The code flag of an ``async def`` function (for inlined fast paths)."""


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


def check_optional_async(fn: object, argument: str) -> None:
    """Like :func:`check_async`, None allowed."""
    if fn is not None:
        check_async(fn, argument)


def check_sync_callable(fn: object, argument: str) -> None:
    """Raise :exc:`TypeError` unless *fn* is a sync (non-async) callable."""
    if not callable(fn):
        raise TypeError(f"{argument} must be a callable, got {fn!r}")
    if is_async_callable(fn):
        raise TypeError(
            f"{argument} must be a sync callable, got the async function "
            f"{describe_callable(fn)!r}"
        )


def check_sync_observer(observer: object, argument: str = "observer") -> None:
    """Raise :exc:`TypeError` unless *observer* is None or a sync callable.

    A sequence of observers is accepted too (see :func:`trio_sagas.observers`);
    each member is checked.
    """
    if observer is None:
        return
    if isinstance(observer, (list, tuple)):
        for index, member in enumerate(observer):
            check_sync_observer(member, f"{argument}[{index}]")
        return
    if not callable(observer):
        raise TypeError(f"{argument} must be a callable or None, got {observer!r}")
    if is_async_callable(observer):
        raise TypeError(
            f"{argument} must be a sync callable (it must not block), got the "
            f"async function {describe_callable(observer)!r}"
        )


def check_type(value: object, types: type | tuple[type, ...], argument: str) -> None:
    """Raise :exc:`TypeError` unless *value* is an instance of *types*."""
    if not isinstance(value, types) or (
        isinstance(value, bool) and bool not in _as_tuple(types)
    ):
        names = " or ".join(t.__name__ for t in _as_tuple(types))
        raise TypeError(f"{argument} must be a {names}, got {value!r}")


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def check_optional_type(
    value: object, types: type | tuple[type, ...], argument: str
) -> None:
    """Like :func:`check_type`, None allowed."""
    if value is not None:
        check_type(value, types, argument)


def check_mapping(value: object, argument: str) -> None:
    """Raise :exc:`TypeError` unless *value* is a mapping (``dict`` or alike)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{argument} must be a mapping, got {value!r}")


def check_optional_str(value: object, argument: str) -> str | None:
    """None, or a non-empty str (see :func:`check_str`)."""
    return None if value is None else check_str(value, argument)


def check_optional_time(value: object, argument: str) -> float | None:
    """None, or a finite point on the trio clock (any sign: clocks may start low)."""
    if value is None:
        return None
    number = check_number(value, argument)
    if math.isinf(number):
        raise ValueError(f"{argument} must be a finite clock time, got {value!r}")
    return number


def check_str(value: object, argument: str, *, allow_empty: bool = False) -> str:
    """A string, non-empty unless *allow_empty*; no lone surrogates."""
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{argument} must be a non-empty str, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{argument} must be valid text (no lone surrogates), got {value!r}"
        ) from None
    return value


def check_name(name: object, argument: str = "name") -> str:
    """Validate a component name: a non-empty string without ``/``."""
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str, got {name!r}")
    if not name or "/" in name:
        raise ValueError(
            f"{argument} must be non-empty and contain no '/', got {name!r}"
        )
    return check_str(name, argument)


def check_label(value: object, argument: str) -> str:
    """Validate a free-form label: a non-empty string (``/`` allowed)."""
    return check_str(value, argument)


def check_labels(values: object, argument: str) -> list[str]:
    """Validate a sequence of labels (run ids): not one str, each a label."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{argument} must be a sequence of str, got {values!r}")
    return [check_label(v, argument) for v in values]


def check_unique(names: Iterable[str], argument: str) -> None:
    """Raise :exc:`ValueError` naming the first name that appears twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{argument} has the name {name!r} twice")
        seen.add(name)


def check_number(value: object, argument: str) -> float:
    """A real number (int or float, not bool); returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{argument} must be a number, got {value!r}")
    return number


def check_timeout(
    value: object,
    argument: str,
    *,
    allow_none: bool = True,
    allow_zero: bool = True,
    allow_inf: bool = True,
) -> float | None:
    """Validate a duration in seconds.

    A non-negative real; NaN is refused, zero unless *allow_zero*, infinity
    unless *allow_inf* (where it is documented as "no limit").
    """
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
    if math.isinf(seconds) and not allow_inf:
        raise ValueError(
            f"{argument} must be a finite number of seconds, got {value!r}"
        )
    return seconds


def check_duration(
    value: object, argument: str, *, allow_zero: bool = True, allow_inf: bool = False
) -> float:
    """A required, finite (unless *allow_inf*) duration in seconds."""
    seconds = check_timeout(
        value,
        argument,
        allow_none=False,
        allow_zero=allow_zero,
        allow_inf=allow_inf,
    )
    assert seconds is not None
    return seconds


def check_int(value: object, argument: str, *, minimum: int) -> int:
    """An int (not a bool) that is at least *minimum*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{argument} must be an int >= {minimum}, got {value!r}")
    return value


def check_optional_int(value: object, argument: str, *, minimum: int) -> int | None:
    """Like :func:`check_int`, None allowed."""
    return None if value is None else check_int(value, argument, minimum=minimum)


def check_fraction(value: object, argument: str, *, allow_zero: bool = True) -> float:
    """A real number in [0, 1] (or (0, 1] without *allow_zero*)."""
    number = check_number(value, argument)
    if number > 1 or number < 0 or (number == 0 and not allow_zero):
        low = "0 <=" if allow_zero else "0 <"
        raise ValueError(f"{argument} must be {low} x <= 1, got {value!r}")
    return number


def check_enum(value: object, enum_type: type[E], argument: str) -> E:
    """A member of *enum_type* (its value is not accepted in its place)."""
    if not isinstance(value, enum_type):
        choices = ", ".join(f"{enum_type.__name__}.{m.name}" for m in enum_type)
        name = enum_type.__name__
        article = "an" if name[0] in "AEIOU" else "a"
        raise TypeError(
            f"{argument} must be {article} {name} ({choices}), got {value!r}"
        )
    return value


def check_choice(value: object, choices: tuple[str, ...], argument: str) -> str:
    """One of a few literal strings (``'compensate'`` or ``'skip'``)."""
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, got {value!r}")
    if value not in choices:
        listed = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{argument} must be {listed}, got {value!r}")
    return value


def check_optional_instance(
    value: object, cls: type, argument: str, *, noun: str | None = None
) -> None:
    """None or an instance of *cls* (``retry must be a RetryPolicy or None``)."""
    if value is not None and not isinstance(value, cls):
        raise TypeError(
            f"{argument} must be {noun or 'a ' + cls.__name__} or None, got {value!r}"
        )


def check_bool(value: object, argument: str) -> bool:
    """A real bool (not 1/0 or a truthy object)."""
    if not isinstance(value, bool):
        raise TypeError(f"{argument} must be a bool, got {value!r}")
    return value


def attrs_validator(check: Any, **options: Any) -> Any:
    """Wrap a ``check_*(value, argument)`` function as an attrs validator.

    The attribute's name becomes the argument name in the message.
    """

    def validator(instance: object, attribute: Any, value: object) -> None:
        check(value, attribute.name, **options)

    return validator


# -- retry policies, hedging and the executor ----------------------------------


def check_real(value: object, argument: str, *, minimum: float) -> float:
    """A finite real number (not a bool) that is at least *minimum*."""
    number = check_number(value, argument)
    if not minimum <= number < math.inf:
        raise ValueError(
            f"{argument} must be a finite number >= {minimum:g}, got {value!r}"
        )
    return number


def check_rate(value: object, argument: str) -> float:
    """A finite, non-negative real: a capacity or a rate per second."""
    return check_real(value, argument, minimum=0)


def check_optional_sync_callable(fn: object, argument: str) -> None:
    """Like :func:`check_sync_callable`, None allowed."""
    if fn is not None:
        check_sync_callable(fn, argument)


def check_budget(budget: object, argument: str = "budget") -> None:
    """None, or an object with a ``try_acquire(kind)`` method."""
    if budget is not None and not callable(getattr(budget, "try_acquire", None)):
        raise TypeError(
            f"{argument} must implement try_acquire(kind) or be None, got {budget!r}"
        )


def check_trigger(trigger: object, argument: str = "trigger") -> None:
    """An object with a ``should_spawn_hedge(state)`` method."""
    if not callable(getattr(trigger, "should_spawn_hedge", None)):
        raise TypeError(
            f"{argument} must have a should_spawn_hedge(state) method, got {trigger!r}"
        )


def check_receive_channels(receivers: object, argument: str) -> tuple[Any, ...]:
    """An iterable of distinct :class:`trio.abc.ReceiveChannel` objects, as a tuple.

    A single channel (rather than an iterable of them) is a :exc:`TypeError`;
    the same channel object twice a :exc:`ValueError` (two drainers on one
    handle would close it under each other; clones are distinct handles).
    """
    import trio  # here, not at the top: the checks above need no trio

    if isinstance(receivers, (trio.abc.ReceiveChannel, str, bytes)) or not isinstance(
        receivers, Iterable
    ):
        raise TypeError(
            f"{argument} must be an iterable of trio.abc.ReceiveChannel, "
            f"got {receivers!r}"
        )
    sources = tuple(receivers)
    seen: set[int] = set()
    for index, source in enumerate(sources):
        if not isinstance(source, trio.abc.ReceiveChannel):
            raise TypeError(
                f"{argument}[{index}] must be a trio.abc.ReceiveChannel, got {source!r}"
            )
        if id(source) in seen:
            raise ValueError(
                f"{argument}[{index}] is the same channel object as an earlier one "
                f"({source!r}); pass channel.clone() to drain one channel twice"
            )
        seen.add(id(source))
    return sources


# -- ignition --------------------------------------------------------------------


def check_name_list(value: object, argument: str) -> tuple[str, ...]:
    """An iterable of distinct names (a lone str is refused: it is not a list)."""
    if isinstance(value, str):
        raise TypeError(
            f"{argument} must be an iterable of names, not the str {value!r}"
        )
    if not isinstance(value, Iterable):
        raise TypeError(f"{argument} must be an iterable of names, got {value!r}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{argument} must hold names (str), got {name!r}")
    check_unique(names, argument)
    return names
