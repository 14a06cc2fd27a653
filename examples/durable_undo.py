"""A hold voided after ``kill -9``: an undo registered inside a step, journaled.

The script runs itself twice. First as a child process: its ``authorize``
step places a hold on a card, registers the hold's void with
``ctx.register_compensation`` (a ``@trio_sagas.durable_undo`` function with
JSON arguments, so the journal can name it) and then times out -- the
gateway may have authorized anyway, so the act says
``compensate_on_failure=True``. The rollback starts, and the child is killed
(SIGKILL) inside the void. Then this process, like a restarting worker,
expires the dead worker's lease and calls ``recover``: the journaled void
runs again (same arguments), then the act's own ``compensate``, then the
earlier step's undo -- each exactly once to the end.

Run it: ``python examples/durable_undo.py``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import trio

import trio_sagas
from trio_sagas import Act, Scene, StepContext

CHILD_FLAG = "--crashing-child"


def log(line: str) -> None:
    """What the undos did, in a file both processes append to."""
    with pathlib.Path(os.environ["DURABLE_UNDO_LOG"]).open("a") as file:
        file.write(line + "\n")


@trio_sagas.durable_undo("void-hold")
async def void_hold(hold_id: str, amount: dict[str, int]) -> None:
    """Release a card hold; journaled by name, so a recovery can call it."""
    log(f"void {hold_id} ({amount['cents']} cents)")
    if os.environ.get("DURABLE_UNDO_CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)  # dies inside the rollback


async def reserve(ctx: StepContext[None], order: dict[str, str]) -> str:
    return "stock-3"


async def release(ctx: StepContext[None], order: dict[str, str]) -> None:
    log(f"release {ctx.result}")


async def authorize(ctx: StepContext[None], order: dict[str, str]) -> None:
    ctx.register_compensation(void_hold, "hold-7", {"cents": 1299})
    raise TimeoutError("gateway timed out after placing the hold")


async def cancel_authorization(ctx: StepContext[None], order: dict[str, str]) -> None:
    log(f"cancel authorization {ctx.idempotency_key}")


SCENE = Scene(
    "checkout",
    [
        Act("reserve", reserve, compensate=release),
        Act(
            "authorize",
            authorize,
            compensate=cancel_authorization,
            compensate_on_failure=True,  # the hold may exist though it failed
        ),
    ],
    saga=True,
)


async def crashing_child(db: str) -> None:
    async with trio_sagas.SQLiteJournal(db) as journal:
        await trio_sagas.run_scene(
            SCENE, {"order": "o-7"}, journal=journal, run_id="o-7"
        )


async def recover(db: str) -> None:
    async with trio_sagas.SQLiteJournal(db) as journal:
        for worker in await journal.workers():
            if worker.pid != os.getpid():  # the killed child: it is dead
                await journal.expire_worker(worker.worker_id)
        report = await trio_sagas.recover(journal, [SCENE])
        for result in report:
            assert result.compensation is not None
            names = [o.name for o in result.compensation.outcomes if o.ok]
            print("recovered", result.run_id, "undid:", names)
        run = await journal.get_run("o-7")
        assert run is not None
        print("status:", run.status.name)


def main() -> None:
    if CHILD_FLAG in sys.argv:
        trio.run(crashing_child, sys.argv[-1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = str(pathlib.Path(tmp) / "sagas.db")
        env = {**os.environ, "DURABLE_UNDO_LOG": str(pathlib.Path(tmp) / "undo.log")}
        child = subprocess.run(
            [sys.executable, __file__, CHILD_FLAG, db],
            env={**env, "DURABLE_UNDO_CRASH": "1"},
            check=False,
        )
        print("child killed:", child.returncode == -signal.SIGKILL)
        os.environ["DURABLE_UNDO_LOG"] = env["DURABLE_UNDO_LOG"]
        trio.run(recover, db)
        print(pathlib.Path(env["DURABLE_UNDO_LOG"]).read_text(), end="")


if __name__ == "__main__":
    main()
