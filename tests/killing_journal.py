"""A SQLite journal that SIGKILLs its process after its N-th write: the crash
children's (crash_child, resume_child, random_kill_child) one copy.

Importable without pytest: the children run as scripts, and import it as
``tests.killing_journal`` once the checkout is on ``sys.path``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

import trio_sagas


class KillingJournal(trio_sagas.SQLiteJournal):  # type: ignore[misc]
    """A SQLite journal that SIGKILLs the process after its N-th write.

    Set ``KillingJournal.kill_at`` (0: never) before the run; ``writes``
    counts the ``create_run`` and ``append`` calls that returned, in this
    process. A subclass, not a wrapper: a wrapper would not pass
    ``isinstance(journal, Journal)`` on Python 3.12+, whose protocol check
    ignores ``__getattr__``.
    """

    kill_at = 0
    writes = 0

    def wrote(self) -> None:
        type(self).writes += 1
        if type(self).writes == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    async def create_run(
        self, run_id: str, *, scene: str, state: bytes
    ) -> trio_sagas.Fence:
        fence = await super().create_run(run_id, scene=scene, state=state)
        self.wrote()
        return fence

    async def append(
        self,
        fence: trio_sagas.Fence,
        entries: Sequence[trio_sagas.JournalEntry],
        *,
        state: bytes | None = None,
        status: trio_sagas.RunStatus | None = None,
    ) -> None:
        await super().append(fence, entries, state=state, status=status)
        self.wrote()
