"""The SQLite journal's hot write path: an append, encoded and handed over.

A saga's step costs one append (the completion of one act and the intent of
the next). Everything that can happen on the caller's side happens there,
before the hand-off: the entries' data is encoded to JSON by one reused C
encoder (``json.JSONEncoder.encode`` builds a new one per call), and the job
the writer thread runs is one small object (:class:`Append`), not a closure
with a cell per captured variable -- the write of a thousand concurrent runs
is a thousand of them, all alive until their batch commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from .._saga._journal import Fence, RunStatus
from . import _sqlite_leases as leases

_JSON = json.JSONEncoder(separators=(",", ":"))

_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
if _c_encoder is not None:
    # The encoder json.JSONEncoder.encode builds at each call (same output),
    # built once. markers=None: no cycle check, and none is needed -- the
    # recorder turns every field into plain JSON values first.
    _iterencode = _c_encoder(
        None,
        _JSON.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )

    def encode_data(data: Mapping[str, Any]) -> str:
        """An entry's data as compact JSON text."""
        return "".join(_iterencode(data, 0)) if data else "{}"

else:  # pragma: no cover  (an interpreter without the C accelerator)
    encode_data: Callable[[Mapping[str, Any]], str] = _JSON.encode  # type: ignore[no-redef]


class Append:
    """The job of one fenced append (see :func:`._sqlite_leases.append`)."""

    __slots__ = ("fence", "rows", "state", "status", "where")

    def __init__(
        self,
        where: str,
        fence: Fence,
        rows: list[tuple[Any, ...]],
        state: bytes | None,
        status: RunStatus | None,
    ) -> None:
        self.where = where
        self.fence = fence
        self.rows = rows
        self.state = state
        self.status = status

    def __call__(self, conn: sqlite3.Connection) -> None:
        leases.append(conn, self.where, self.fence, self.rows, self.state, self.status)
