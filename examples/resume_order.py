"""An order that survives a worker restart: roll-forward recovery.

The order saga says ``on_crash=OnCrash.RESUME``: a crash is a lost machine,
not a reason to cancel the customer's order. The script runs itself twice.
First as a child process (the worker) that runs the order with a SQLite
journal and is killed (SIGKILL) inside ``create-shipment`` -- after the card
was charged, before the journal could record the shipment. Then this process,
like a restarted worker, expires the dead worker's lease and calls
``recover``: the reservation and the charge are *not* done again (their
results come back from the journal), the shipment -- uncertain -- is created
again under its same idempotency key (the carrier deduplicates by it), and
the order goes on to the confirmation email. The timeline drawn from the
journal shows both workers' work.

Run it: ``python examples/resume_order.py``.
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
from trio_sagas import Act, OnCrash, Scene, StepContext, Uncertain

CHILD_FLAG = "--crashing-worker"


class Services:
    """Fake inventory, payment provider and carrier, kept in a JSON file so that
    what they did survives the crash (as a real provider's records would)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"calls": [], "charges": {}, "shipments": {}}
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def call(self, what: str, key: str, table: str | None = None) -> None:
        data = self.load()
        data["calls"].append(f"{what} {key}")
        if table is not None:
            data[table].setdefault(key, what)  # deduplicated by idempotency key
        self.path.write_text(json.dumps(data))


def key(ctx: StepContext) -> str:
    assert ctx.idempotency_key is not None
    return ctx.idempotency_key


async def reserve(ctx: StepContext, order: dict[str, Any]) -> str:
    await trio.sleep(0.2)
    ctx.deps.call("reserve", key(ctx))
    order["reservation"] = f"res-{order['id']}"
    return str(order["reservation"])


async def charge(ctx: StepContext, order: dict[str, Any]) -> str:
    await trio.sleep(0.5)
    ctx.deps.call("charge", key(ctx), "charges")
    order["charge"] = f"ch-{order['id']}"
    return str(order["charge"])


async def ship(ctx: StepContext, order: dict[str, Any]) -> str:
    await trio.sleep(0.3)
    ctx.deps.call("ship", key(ctx), "shipments")
    if sys.argv[1:2] == [CHILD_FLAG]:
        # The worker dies here: the carrier has the shipment, the journal not.
        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)
    order["tracking"] = f"TRK-{order['id']}"
    return str(order["tracking"])


async def email(ctx: StepContext, order: dict[str, Any]) -> None:
    await trio.sleep(0.1)
    ctx.deps.call("email", key(ctx))


async def undo(ctx: StepContext, order: dict[str, Any]) -> None:
    ctx.deps.call("undo", key(ctx))


SCENE = Scene(
    "process-order",
    [
        Act("reserve-inventory", reserve, compensate=undo),
        Act("charge-payment", charge, compensate=undo),
        Act("create-shipment", ship, compensate=undo, uncertain=Uncertain.RETRY),
        Act("send-confirmation", email),
    ],
    saga=True,
    on_crash=OnCrash.RESUME,
)


def worker(db: str, services: str) -> None:
    """The first worker: runs the order, and dies inside create-shipment."""

    async def main() -> None:
        async with trio_sagas.SQLiteJournal(db) as journal:
            await trio_sagas.run_scene(
                SCENE,
                {"id": 42},
                deps=Services(pathlib.Path(services)),
                journal=journal,
                run_id="order-42",
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = pathlib.Path(tmp) / "sagas.db"
        services = Services(pathlib.Path(tmp) / "services.json")
        print("1. A worker runs order-42 and is killed with SIGKILL mid-shipment.")
        done = subprocess.run(
            [sys.executable, __file__, CHILD_FLAG, str(db), str(services.path)],
            check=False,
        )
        print(f"   worker exit code: {done.returncode}")

        def observe(event: trio_sagas.Event) -> None:
            if isinstance(event, trio_sagas.RunResumed):
                print(f"   resumed: restored {list(event.restored)}")
                print(f"   uncertain, run again: {list(event.uncertain)}")

        async def restart() -> None:
            async with trio_sagas.SQLiteJournal(db, create=False) as journal:
                print("2. A new worker starts; the old one's process is gone.")
                for dead in await journal.workers():
                    if dead.pid != os.getpid():
                        await journal.expire_worker(dead.worker_id)
                print("3. recover(): the order resumes where it stood")
                report = await trio_sagas.recover(
                    journal, [SCENE], deps=services, observer=observe
                )
                (result,) = report.results
                print(f"   {result.run_id}: {result.status.name}, {result.state}")
                (run,) = await journal.runs()
                print(f"   journal: {run.run_id} {run.status.name}")
                print("4. The journal's timeline: both workers' work")
                entries = await journal.events("order-42")
                print(trio_sagas.render_timeline(entries, width=32, ascii_only=True))

        trio.run(restart, clock=trio.testing.MockClock(autojump_threshold=0))
        data = services.load()
        print("5. What the services saw (the shipment call twice, one shipment):")
        for call in data["calls"]:
            print(f"   {call}")
        print(
            f"   shipments: {len(data['shipments'])}, charges: {len(data['charges'])}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD_FLAG]:
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
