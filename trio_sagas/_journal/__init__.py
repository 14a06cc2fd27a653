"""Journal backends (layer 5): implement the saga runner's journal interface."""

from __future__ import annotations

from ._sqlite import SQLiteJournal

__all__ = ["SQLiteJournal"]
