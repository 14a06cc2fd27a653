"""A child process for the group-commit crash test: killed inside a batch.

``python tests/group_commit_child.py DB LOG SEED`` runs eight concurrent
five-step sagas (``crash_child.build_scene``: the last step fails, so each
run also rolls back) on one ``SQLiteJournal(DB)``. Once the writer has taken
``10 + 12 * SEED`` writes, it holds the writer with a gate job until at
least three other writes are queued, queues a *killer* job behind them and
opens the gate: the next batch runs those runs' writes in their savepoints,
then the killer SIGKILLs the process before COMMIT. The size of that batch
is printed (flushed) just before the kill.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time

import trio

import trio_sagas

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.crash_child import build_scene

RUNS = 8


def main(db: str, log: str, seed: int) -> None:
    scene = build_scene(log)

    async def run() -> None:
        with trio_sagas.SQLiteJournal(db) as journal:

            def killer(conn: sqlite3.Connection) -> None:
                # The writes ahead of it ran in their savepoints: not committed.
                print(journal.statistics().in_flight - 1, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(10)

            async def trigger() -> None:
                # Polling the writer thread's counters: no event to wait on.
                while journal.statistics().jobs < 10 + 6 * seed:  # noqa: ASYNC110
                    await trio.sleep(0.0005)
                while journal.statistics().queued < 3:  # noqa: ASYNC110
                    await trio.sleep(0.0005)
                await journal._write(killer)  # queued behind them at once

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trigger)
                for index in range(RUNS):
                    nursery.start_soon(
                        lambda i: trio_sagas.run_scene(
                            scene, {}, journal=journal, run_id=f"order-{i}"
                        ),
                        index,
                    )

    trio.run(run)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
