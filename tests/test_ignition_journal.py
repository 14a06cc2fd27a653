"""Ignition + a real SQLiteJournal: the journal outlives the sagas' shutdown rollback."""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import trio

import trio_sagas
from trio_sagas import Act, ExecutionMode, Ignition, Scene, SQLiteJournal


async def test_journal_service_outlives_the_sagas_on_shutdown(
    tmp_path: pathlib.Path,
) -> None:
    """Cancelling the nursery of journal and sagas rolls the in-flight run back, journaled."""
    path = tmp_path / "sagas.db"
    undone: list[str] = []

    async def reserve(ctx: trio_sagas.StepContext, state: dict[str, Any]) -> str:
        return "held"

    async def release(ctx: trio_sagas.StepContext, state: dict[str, Any]) -> None:
        undone.append("reserve")

    async def charge(ctx: trio_sagas.StepContext, state: dict[str, Any]) -> None:
        await trio.sleep_forever()  # in flight when the service shuts down

    scene = Scene(
        "order",
        saga=True,
        steps=[
            Act("reserve", run=reserve, compensate=release),
            Act("charge", run=charge),
        ],
    )

    async def sagas(
        *,
        deps: Mapping[str, Any],
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        journal: SQLiteJournal = deps["journal"]
        async with trio.open_nursery() as runs:
            runs.start_soon(
                functools.partial(
                    trio_sagas.run_scene, scene, {}, journal=journal, run_id="order-1"
                )
            )
            task_status.started("ready")
            await trio.sleep_forever()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE, global_timeout=30)
            ignition.add_context("journal", SQLiteJournal, path)
            ignition.add("sagas", sagas, depends_on=["journal"])
            assert (await ignition.run(nursery=nursery)).ok
            await trio.sleep(1)
            nursery.cancel_scope.cancel(reason="shutting down")
    assert undone == ["reserve"]
    with SQLiteJournal(path, create=False) as journal:
        record = await journal.get_run("order-1")
    assert record is not None
    # Journal closed first, the rollback's writes would fail and leave the
    # run RUNNING ("journal ... is closed").
    assert record.status is trio_sagas.RunStatus.COMPENSATED
