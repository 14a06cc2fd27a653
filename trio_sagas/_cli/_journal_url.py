"""Journal URLs, ``module:attr`` references and durations on the command line."""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import sys
from typing import Any

ENV_VAR = "TRIO_SAGAS_JOURNAL"

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


class UsageError(Exception):
    """The command line is wrong (exit status 2)."""


def sqlite_path(url: str) -> pathlib.Path | None:
    """The file of a ``sqlite:///`` URL or a plain path; None for other schemes.

    As SQLAlchemy spells them: ``sqlite:///sagas.db`` is relative to the
    current directory, ``sqlite:////var/lib/sagas.db`` is absolute.
    """
    if url.startswith(_SQLITE):
        rest = url[len(_SQLITE) :]
        if not rest:
            raise UsageError(f"journal URL {url!r} names no file")
        return pathlib.Path(rest)
    if "://" in url:
        return None
    return pathlib.Path(url)


def open_journal(url: str, codec: Any = None) -> Any:
    """The journal a URL names, opened for an operator (never created)."""
    path = sqlite_path(url)
    if path is not None:
        from .._journal import SQLiteJournal

        return SQLiteJournal(path, codec=codec, create=False)
    if url.startswith(_POSTGRES):
        import trio_sagas

        postgres = getattr(trio_sagas, "PostgresJournal", None)
        if postgres is None:
            raise UsageError(
                "PostgreSQL journals need the PostgreSQL backend, which this "
                "trio-sagas does not have"
            )
        return postgres(url, codec=codec)
    scheme = url.split("://", 1)[0]
    raise UsageError(
        f"journal URL {url!r}: unknown scheme {scheme!r} (use sqlite:/// or postgresql://)"
    )


def load_attr(reference: str, argument: str) -> Any:
    """The object ``module:attr`` names (the current directory is importable)."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{argument} must be MODULE:ATTR, got {reference!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UsageError(f"{argument}: no module named {module_name!r}") from exc
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageError(
                f"{argument}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, argument: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` in seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(
            f"{argument} must be a duration like 90, 90s, 10m, 2h or 1d, got {text!r}"
        )
    return float(match.group(1)) * _UNIT[match.group(2)]


def format_age(seconds: float) -> str:
    """Whole seconds, minutes, hours or days, rounded down: ``"10m"``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
