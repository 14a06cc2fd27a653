"""A durable order saga that survives ``kill -9``.

The script runs itself twice. First as a child process, which runs the
order saga with a SQLite journal and is killed (SIGKILL) inside
``charge-payment`` — right after the payment provider charged the card,
before the journal could record that the step completed. Then this process,
like a worker restarting, expires the dead worker's lease (its process is
gone) and calls ``recover``: the reservation is released and
the charge, an *uncertain* step, is refunded by its idempotency key.
Everything lives in a temporary directory that is removed at the end.

Run it: ``python examples/durable_order_saga.py``.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
from typing import Any

import trio
import trio.testing

import trio_sagas
from trio_sagas import Act, Scene, StepContext

CHILD_FLAG = "--crashing-child"


class Services:
    """Fake inventory and payment provider, kept in a JSON file so that what
    they did survives the crash (as a real provider's records would)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"reservations": {}, "charges": {}, "refunds": []}
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.path.write_text(json.dumps(data))


async def reserve(ctx: StepContext[Services], order: dict[str, Any]) -> str:
    await trio.sleep(0.2)
    services = ctx.deps
    data = services.load()
    reservation = f"res-{order['id']}"
    data["reservations"][reservation] = order["items"]
    services.save(data)
    return reservation


async def release(ctx: StepContext[Services], order: dict[str, Any]) -> None:
    services = ctx.deps
    data = services.load()
    data["reservations"].pop(ctx.result, None)  # idempotent: a no-op the 2nd time
    services.save(data)
    print(f"   released reservation {ctx.result}")


async def charge(ctx: StepContext[Services], order: dict[str, Any]) -> str:
    await trio.sleep(0.5)
    services = ctx.deps
    data = services.load()
    # The provider deduplicates by idempotency key: a retry never charges twice.
    data["charges"].setdefault(ctx.idempotency_key, order["total_cents"])
    services.save(data)
    if sys.argv[1:2] == [CHILD_FLAG]:
        # The process dies here: the card is charged, the journal does not know.
        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)
    return f"ch-{order['id']}"


async def refund(ctx: StepContext[Services], order: dict[str, Any]) -> None:
    services = ctx.deps
    data = services.load()
    # ctx.result is None when the charge is uncertain; the charge's own key
    # (ctx.forward_key) finds it at the provider either way.
    charge_key = ctx.forward_key
    if charge_key in data["charges"] and ctx.idempotency_key not in data["refunds"]:
        data["refunds"].append(ctx.idempotency_key)
        services.save(data)
        print(f"   refunded {data['charges'][charge_key]} cents (charge {charge_key})")
    else:
        print("   nothing was charged; nothing to refund")


async def ship(ctx: StepContext[Services], order: dict[str, Any]) -> str:
    await trio.sleep(0.3)
    return f"ship-{order['id']}"


SCENE: Scene[Services] = Scene(
    "process-order",
    [
        Act("reserve-inventory", reserve, compensate=release),
        Act("charge-payment", charge, compensate=refund),
        Act("create-shipment", ship),
    ],
    saga=True,
)


def child(db: str, services: str) -> None:
    """The first process: runs the order, and dies inside charge-payment."""

    async def main() -> None:
        async with trio_sagas.SQLiteJournal(db) as journal:
            order = {"id": 42, "items": {"book": 1}, "total_cents": 2599}
            await trio_sagas.run_scene(
                SCENE,
                order,
                deps=Services(pathlib.Path(services)),
                journal=journal,
                run_id="order-42",
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = pathlib.Path(tmp) / "sagas.db"
        services = Services(pathlib.Path(tmp) / "services.json")
        print("1. A worker runs order-42 and is killed with SIGKILL mid-payment.")
        done = subprocess.run(
            [sys.executable, __file__, CHILD_FLAG, str(db), str(services.path)],
            check=False,
        )
        print(f"   worker exit code: {done.returncode}")
        print(f"   provider's records: {services.load()}")

        async def restart() -> None:
            async with trio_sagas.SQLiteJournal(db, create=False) as journal:
                print("2. A new worker starts. The journal says:")
                for run in await journal.runs():
                    print(f"   {run.run_id}: {run.status.name}, state {run.state!r}")
                for entry in await journal.events("order-42"):
                    print(f"   {entry.seq} {entry.kind:<14} {entry.step}")
                # Its lease would run 15 s more; this worker knows better: the
                # process that held it is gone (one machine: its pid is dead).
                for worker in await journal.workers():
                    if worker.pid != os.getpid() and not pid_alive(worker.pid):
                        await journal.expire_worker(worker.worker_id)
                        print("   the old worker's process is gone: its lease expired")
                print("3. recover(): compensate in reverse order, uncertain step first")
                report = await trio_sagas.recover(
                    journal, {SCENE.name: SCENE}, deps=services
                )
                for result in report.results:
                    print(f"   {result.run_id}: {result.error}")
                    assert result.compensation is not None
                    for outcome in result.compensation.outcomes:
                        print(f"   undo {outcome.name}: {outcome.status.name}")
                again = await trio_sagas.recover(journal, [SCENE], deps=services)
                print(f"4. A second recover() has nothing to do: {again}")
                for run in await journal.runs():
                    print(f"   {run.run_id}: {run.status.name}")

        trio.run(restart, clock=trio.testing.MockClock(autojump_threshold=0))
        print(f"   provider's records: {services.load()}")


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD_FLAG]:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
