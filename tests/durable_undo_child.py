"""A child process for the durable-undo fault tests.

``python tests/durable_undo_child.py DB LOG MODE`` runs the saga below on
``SQLiteJournal(DB)``: ``reserve`` completes; ``charge`` charges, registers
the durable undo ``void`` and then fails with a timeout (so its effect may
have happened: ``compensate_on_failure=True``, its ``refund`` runs too).
Every undo appends ``"<name> start KEY"`` and ``"<name> done KEY"`` to LOG.
MODE says which undo hangs after its start line (the test SIGKILLs the
process then): ``hang-void`` or ``hang-refund``; ``recover`` runs
``recover()`` with nothing hanging and prints the statuses as JSON.
"""

from __future__ import annotations

import json
import sys

import trio

import trio_sagas
from trio_sagas import Act, Scene, SQLiteJournal, StepContext

LOG = sys.argv[2] if __name__ == "__main__" else ""
HANG = {"void": False, "refund": False}


def _log(line: str) -> None:
    with open(LOG, "a") as file:
        file.write(line + "\n")


@trio_sagas.durable_undo("test-child-void")
async def void(charge_id: str) -> None:
    _log(f"void start {charge_id}")
    if HANG["void"]:
        await trio.sleep_forever()
    _log(f"void done {charge_id}")


async def reserve(ctx: StepContext, state: object) -> str:
    return "hold-1"


async def release(ctx: StepContext, state: object) -> None:
    _log(f"release start {ctx.idempotency_key}")
    _log(f"release done {ctx.idempotency_key}")


async def charge(ctx: StepContext, state: object) -> None:
    ctx.register_compensation(void, "charge-1")
    raise TimeoutError("the gateway timed out after charging")


async def refund(ctx: StepContext, state: object) -> None:
    _log(f"refund start {ctx.idempotency_key}")
    if HANG["refund"]:
        await trio.sleep_forever()
    _log(f"refund done {ctx.idempotency_key}")


SCENE = Scene(
    "order",
    [
        Act("reserve", reserve, compensate=release),
        Act("charge", charge, compensate=refund, compensate_on_failure=True),
    ],
    saga=True,
)


async def main(db: str, mode: str) -> None:
    async with SQLiteJournal(db) as journal:
        if mode == "recover":
            report = await trio_sagas.recover(journal, [SCENE])
            runs = await journal.runs()
            print(
                json.dumps(
                    {
                        "results": [r.run_id for r in report.results],
                        "statuses": {r.run_id: r.status.name for r in runs},
                    }
                )
            )
            return
        HANG[mode.removeprefix("hang-")] = True
        await trio_sagas.run_scene(SCENE, {}, journal=journal, run_id="order-1")


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[3])
