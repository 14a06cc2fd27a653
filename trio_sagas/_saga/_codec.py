"""Codecs: how a journal turns states and act results into bytes and back.

Part of the journal interface (:mod:`._journal` re-exports both names); kept
apart so that the interface module stays about runs, entries and leases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, final, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """Turns states and act results into bytes and back (never pickle)."""

    def encode(self, value: Any) -> bytes:
        """Encode *value*; raise TypeError or ValueError if it cannot."""
        ...

    def decode(self, data: bytes) -> Any:
        """Decode what encode() produced."""
        ...


@final
class JSONCodec:
    """The default codec: compact UTF-8 JSON.

    Args:
        default: Called for objects JSON cannot encode (as :func:`json.dumps`).
        object_hook: Called on every decoded object (as :func:`json.loads`).

    Tuples come back as lists and non-string keys as strings (that is JSON);
    NaN and infinities are refused.
    """

    __slots__ = ("_decoder", "_encoder")

    def __init__(
        self,
        *,
        default: Callable[[Any], Any] | None = None,
        object_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        for argument, hook in (("default", default), ("object_hook", object_hook)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{argument} must be a callable or None, got {hook!r}")
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), allow_nan=False, default=default
        )
        self._decoder = json.JSONDecoder(object_hook=object_hook)

    def __repr__(self) -> str:
        return "trio_sagas.JSONCodec()"

    def encode(self, value: Any) -> bytes:
        """Encode *value* as JSON bytes."""
        return self._encoder.encode(value).encode()

    def decode(self, data: bytes) -> Any:
        """Decode JSON bytes."""
        return self._decoder.decode(data.decode())
