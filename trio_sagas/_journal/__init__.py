"""Journal backends (layer 5): implement the saga runner's journal interface."""

from __future__ import annotations

from ._postgres import PostgresJournal
from ._sqlite import SQLiteJournal

__all__ = ["PostgresJournal", "SQLiteJournal"]
