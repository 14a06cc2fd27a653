"""A child process for the resume crash tests: a RESUME saga, killed and resumed.

``python tests/resume_child.py DB LOG MODE N`` with MODE:

* ``write`` -- run the order saga below on ``SQLiteJournal(DB)`` and SIGKILL
  this process right after the N-th journal write (0: never; prints the
  number of writes at the end);
* ``resume`` -- a fresh process: ``recover()`` the journal with the same
  definitions; with N = 1 the last step ``e`` fails in this process (the
  resumed run then rolls back). Prints the run's status.

Every ``run`` and undo appends ``"run KEY"``/``"undo KEY"`` to LOG first.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio
import trio.lowlevel

import trio_sagas
from trio_sagas import Act, Chorus, OnCrash, Scene, StepContext, Uncertain

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.killing_journal import KillingJournal

STEPS = ("a", "pack/b1", "pack/b2", "ship/c1", "ship/c2", "d", "e")
"""The acts, by path under the top scene ``order``."""


def _log(path: str, line: str) -> None:
    with open(path, "a") as file:
        file.write(line + "\n")


def build_scene(log: str, *, fail: str = "") -> Scene:
    """a; a chorus pack (b1, b2); a nested saga ship (c1, c2); d; e."""

    def act(name: str) -> Act:
        async def run(ctx: StepContext, state: dict[str, Any]) -> str:
            assert ctx.idempotency_key is not None
            _log(log, f"run {ctx.idempotency_key}")
            await trio.lowlevel.checkpoint()
            if name == fail:
                raise ValueError(f"{name} declined")
            state[name] = state.get(name, 0) + 1
            return f"{name}-receipt"

        async def compensate(ctx: StepContext, state: dict[str, Any]) -> None:
            assert ctx.idempotency_key is not None
            _log(log, f"undo {ctx.idempotency_key} result={ctx.result}")
            state.pop(name, None)

        return Act(name, run, compensate=compensate, uncertain=Uncertain.RETRY)

    return Scene(
        "order",
        [
            act("a"),
            Chorus("pack", [act("b1"), act("b2")]),
            Scene("ship", [act("c1"), act("c2")], saga=True),
            act("d"),
            act("e"),
        ],
        saga=True,
        on_crash=OnCrash.RESUME,
    )


async def write_mode(db: str, log: str, kill_at: int) -> None:
    KillingJournal.kill_at = kill_at
    with KillingJournal(db) as journal:
        result = await trio_sagas.run_scene(
            build_scene(log), {}, journal=journal, run_id="order-1"
        )
        assert result.ok, result
        print(KillingJournal.writes)


async def resume_mode(db: str, log: str, fail: bool) -> None:
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        for worker in await journal.workers():
            if worker.pid != os.getpid():
                await journal.expire_worker(worker.worker_id)  # the dead one
        scene = build_scene(log, fail="e" if fail else "")
        await trio_sagas.recover(journal, [scene])
        run = await journal.get_run("order-1")
        assert run is not None
        print(run.status.name)


def main(argv: list[str]) -> None:
    db, log, mode, number = argv[1], argv[2], argv[3], int(argv[4])
    if mode == "write":
        trio.run(write_mode, db, log, number)
    else:
        trio.run(resume_mode, db, log, number == 1)


if __name__ == "__main__":
    main(sys.argv)
