"""Direct tests for run_worker that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import functools
import logging
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from trio_sagas import (
    Act,
    OnCrash,
    RunStatus,
    Scene,
    StepContext,
    run_scene,
    run_worker,
)
from trio_sagas._saga import _worker

from .memory_journal import MemoryJournal

J = TypeVar("J", bound=MemoryJournal)


class Shop:
    """Acts that log their runs and undos, with the virtual time."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str]] = []

    def act(self, name: str) -> Act:
        async def run(ctx: StepContext, state: dict[str, Any]) -> str:
            self.log.append((trio.current_time(), f"run {ctx.path}"))
            return f"{name}-receipt"

        async def compensate(ctx: StepContext, state: dict[str, Any]) -> None:
            await trio.sleep(1)
            self.log.append((trio.current_time(), f"undo {ctx.path}"))

        return Act(name, run, compensate=compensate)

    def scene(self, **options: Any) -> Scene:
        return Scene("s", [self.act("a"), self.act("b"), self.act("c")], **options)


async def crashed(scene: Scene, *run_ids: str, journal: J) -> J:
    """*journal* holding *run_ids*, each cut after its third write (create, a's
    intent, b's intent: b is uncertain), their worker dead."""
    for run_id in run_ids:
        source = MemoryJournal()
        await run_scene(scene, {}, journal=source, run_id=run_id)
        for op in source.writes[:3]:
            op(journal)
            journal.writes.append(op)
    return journal


class CountingClaims(MemoryJournal):
    """Notes the virtual time and size of every claim_batch answer; after
    *stop* of them, sets ``done``."""

    def __init__(self, stop: int) -> None:
        super().__init__(lease=10.0)
        self.claims: list[tuple[float, int]] = []
        self.stop = stop
        self.done = trio.Event()

    async def claim_batch(self, *, limit: int, stale_after: float = 0.0) -> Any:
        got = await super().claim_batch(limit=limit, stale_after=stale_after)
        self.claims.append((trio.current_time(), len(got)))
        if len(self.claims) == self.stop:
            self.done.set()
        return got


class Jitter:
    """Stands in for the random module: uniform(0.5, 1.5) answers from a script."""

    def __init__(self, *answers: float) -> None:
        self.answers = list(answers)

    def uniform(self, low: float, high: float) -> float:
        assert (low, high) == (0.5, 1.5)
        return self.answers.pop(0)


def statuses(journal: MemoryJournal) -> dict[str, RunStatus]:
    return {run_id: r.status for run_id, r in journal.records.items()}


async def test_run_worker_tells_its_observer_about_each_rollback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """run_worker(observer=) delivers the rollback's events, in order, as they happen."""
    shop = Shop()
    journal = await crashed(
        shop.scene(saga=True), "r", journal=MemoryJournal(lease=10.0)
    )
    seen: list[tuple[float, str, str]] = []

    def observer(event: Any) -> None:
        where = str(getattr(event, "step", None) or getattr(event, "scene", ""))
        seen.append((trio.current_time(), type(event).__name__, where))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    run_worker, journal, [shop.scene(saga=True)], observer=observer
                )
            )
            while statuses(journal)["r"] is RunStatus.RUNNING:  # noqa: ASYNC110
                await trio.sleep(0.25)
            nursery.cancel_scope.cancel()
    assert statuses(journal) == {"r": RunStatus.COMPENSATED}
    assert seen == [
        (0.0, "CompensationStarted", "s"),
        (0.0, "CompensationStepStarted", "s/b"),
        (0.0, "JournalWritten", ""),
        (1.0, "CompensationStepCompleted", "s/b"),
        (1.0, "CompensationStepStarted", "s/a"),
        (1.0, "JournalWritten", ""),
        (2.0, "CompensationStepCompleted", "s/a"),
        (2.0, "CompensationCompleted", "s"),
        (2.0, "JournalWritten", ""),
    ]


async def test_run_worker_resumes_a_resume_run_it_claims(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A claimed RESUME run goes on (b's uncertain try undone, b again, c): a is not undone."""
    shop = Shop()
    journal = await crashed(
        shop.scene(saga=True, on_crash=OnCrash.RESUME), "r", journal=MemoryJournal()
    )
    shop.log.clear()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                run_worker, journal, [shop.scene(saga=True, on_crash=OnCrash.RESUME)]
            )
            while statuses(journal)["r"] is RunStatus.RUNNING:  # noqa: ASYNC110
                await trio.sleep(0.25)
            nursery.cancel_scope.cancel()
    assert statuses(journal) == {"r": RunStatus.SUCCEEDED}
    assert shop.log == [(1.0, "undo s/b"), (1.0, "run s/b"), (1.0, "run s/c")]


@pytest.mark.parametrize(
    ("poll", "expected"),
    [
        # default: lease/2 = 5 s, jittered: 4.0 + 2.5, then 6.5 + 7.5
        (None, [(0.0, 2), (2.0, 1), (6.5, 0), (14.0, 0)]),
        (4.0, [(0.0, 2), (2.0, 1), (6.0, 0), (12.0, 0)]),
    ],
)
async def test_run_worker_polls_again_at_once_after_a_full_batch_else_sleeps(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    poll: float | None,
    expected: list[tuple[float, int]],
) -> None:
    """A full batch is followed by another claim at once; a short one by poll (default
    lease/2) times uniform(0.5, 1.5)."""
    monkeypatch.setattr(_worker, "random", Jitter(0.5, 1.5, 1.0))
    shop = Shop()
    counter = await crashed(
        shop.scene(saga=True), "r1", "r2", "r3", journal=CountingClaims(4)
    )
    journal: MemoryJournal = counter  # run_worker's Journal protocol
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    run_worker, journal, [shop.scene(saga=True)], batch=2, poll=poll
                )
            )
            await counter.done.wait()
            nursery.cancel_scope.cancel()
    assert counter.claims == expected
    assert set(statuses(journal).values()) == {RunStatus.COMPENSATED}


async def test_run_worker_logs_a_run_it_must_leave_alone_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A claimed run whose journal does not fit the worker's definition of its
    scene: one error naming the run and why; no undo runs, it stays RUNNING."""
    caplog.set_level(logging.ERROR, logger="trio_sagas")
    shop = Shop()
    journal = await crashed(
        shop.scene(saga=True), "r", journal=MemoryJournal(lease=10.0)
    )
    other = Shop()
    changed = Scene("s", [other.act("x"), other.act("y")], saga=True)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_worker, journal, [changed])
            while journal.records["r"].epoch == 1:  # noqa: ASYNC110
                await trio.sleep(0.25)
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    assert statuses(journal) == {"r": RunStatus.RUNNING}
    assert other.log == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("run_worker: run 'r' left alone: ")
    assert "'s/a'" in errors[0]
