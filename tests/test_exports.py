"""The public surface: every name exported, final, and claiming trio_sagas."""

from __future__ import annotations
import __future__

import enum
import inspect
import typing

import pytest

import trio_sagas

PUBLIC = sorted(trio_sagas.__all__)


def test_all_is_sorted_unique_and_complete() -> None:
    """__all__ lists each public attribute exactly once."""
    assert len(set(trio_sagas.__all__)) == len(trio_sagas.__all__)
    public_attrs = {
        name
        for name, value in vars(trio_sagas).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
    }
    assert public_attrs == set(trio_sagas.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_clean(name: str) -> None:
    """Classes and functions say trio_sagas.X; classes are final."""
    obj = getattr(trio_sagas, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__module__ == "trio_sagas"
        assert obj.__qualname__ == name
    if inspect.isclass(obj) and not issubclass(obj, enum.Enum):
        if getattr(obj, "_is_protocol", False):
            return  # protocols are not final (and may not support issubclass)
        # Event bases (Event, SagaEvent, …) are meant to be subclassed.
        public_classes = [
            v for v in map(trio_sagas.__dict__.get, PUBLIC) if inspect.isclass(v)
        ]
        is_base = any(
            other is not obj and issubclass(other, obj) for other in public_classes
        )
        if not is_base:
            assert getattr(obj, "__final__", False), f"{name} is not @final"


def test_version() -> None:
    """__version__ comes from the installed metadata."""
    assert isinstance(trio_sagas.__version__, str)
    assert trio_sagas.__version__[0].isdigit()


def test_typed_package() -> None:
    """py.typed ships with the package."""
    from importlib.resources import files

    assert files("trio_sagas").joinpath("py.typed").is_file()


def test_final_is_typing_final() -> None:
    """typing.final sets __final__ (guards the check above)."""

    @typing.final
    class Probe:
        pass

    assert Probe.__final__  # type: ignore[attr-defined]
