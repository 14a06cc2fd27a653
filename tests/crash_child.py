"""A child process for the crash tests: runs a journaled saga and kills itself.

``python tests/crash_child.py DB LOG MODE N`` runs the five-step saga below
(the last step fails) on ``SQLiteJournal(DB)``; every ``run`` and undo
appends ``"run KEY"``/``"undo KEY"`` (its idempotency key) to LOG first.
MODE says where the process SIGKILLs itself:

* ``write`` — right after the N-th journal write (create_run or append)
  returned (0: never; the total number of writes is printed at the end);
* ``step`` — inside step N's ``run``, after its log line;
* ``undo`` — inside step N's undo, after its log line.

Modes that do not kill (the fault tests of leases and interruptions):

* ``recover`` — run ``recover()`` on DB with undos that take N ms each;
  prints the report as JSON (results' run ids, skipped reasons);
* ``sigint`` — run the saga; step N's undo logs, then waits (for a SIGINT
  from the test); the KeyboardInterrupt leaves the process;
* ``stop`` — run the saga on a journal with a 1 s lease; step N logs, then
  sleeps 3 s (the test SIGSTOPs the process meanwhile). Prints ``LOST`` and
  exits 3 when run_scene raises RunClaimedError.

The tests import :func:`build_scene` to recover with the same definitions.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import trio

import trio_sagas
from trio_sagas import Act, Scene, StepContext

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.killing_journal import KillingJournal

STEPS = 5


def _log(path: str, line: str) -> None:
    with open(path, "a") as file:
        file.write(line + "\n")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def build_scene(
    log: str,
    *,
    kill_step: int = 0,
    kill_undo: int = 0,
    slow_undo: float = 0.0,
    block_undo: int = 0,
    block_step: int = 0,
) -> Scene:
    """Five steps ``s1``…``s5``; ``s5`` fails; each logs its key first."""

    def act(index: int) -> Act:
        async def run(ctx: StepContext, state: dict[str, Any]) -> str:
            assert ctx.idempotency_key is not None
            _log(log, f"run {ctx.idempotency_key}")
            if index == kill_step:
                _die()
            if index == block_step:
                await trio.sleep(3)
            if index == STEPS:
                raise ValueError(f"s{index} declined")
            state[f"s{index}"] = True
            return f"s{index}-receipt"

        async def compensate(ctx: StepContext, state: dict[str, Any]) -> None:
            assert ctx.idempotency_key is not None
            _log(log, f"undo {ctx.idempotency_key} result={ctx.result}")
            if index == kill_undo:
                _die()
            if index == block_undo:
                await trio.sleep(30)
            if slow_undo:
                await trio.sleep(slow_undo)
            state.pop(f"s{index}", None)

        return Act(f"s{index}", run, compensate=compensate)

    return Scene("order", [act(i) for i in range(1, STEPS + 1)], saga=True)


def main(argv: list[str]) -> None:
    db, log, mode, number = argv[1], argv[2], argv[3], int(argv[4])
    if mode in ("sigint", "recover"):
        # A background job (``cmd &`` in a shell without job control, nohup)
        # starts with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: put it back, or the test's SIGINT is lost.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if mode == "recover":
        trio.run(recover_mode, db, log, number / 1000)
        return
    scene = build_scene(
        log,
        kill_step=number if mode == "step" else 0,
        kill_undo=number if mode == "undo" else 0,
        block_undo=number if mode == "sigint" else 0,
        block_step=number if mode == "stop" else 0,
    )
    lease = 1.0 if mode == "stop" else trio_sagas.DEFAULT_LEASE

    async def run() -> None:
        KillingJournal.kill_at = number if mode == "write" else 0
        with KillingJournal(db, lease=lease) as journal:
            try:
                result = await trio_sagas.run_scene(
                    scene, {}, journal=journal, run_id="order-1"
                )
            except trio_sagas.RunClaimedError:
                print("LOST", flush=True)
                sys.exit(3)
            assert result.failed_step == f"order/s{STEPS}", result
            print(KillingJournal.writes)

    trio.run(run)


async def recover_mode(db: str, log: str, slow: float) -> None:
    scene = build_scene(log, slow_undo=slow)
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        report = await trio_sagas.recover(journal, [scene])
    print(
        json.dumps(
            {
                "results": [r.run_id for r in report.results],
                "skipped": [s.reason for s in report.skipped],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv)
