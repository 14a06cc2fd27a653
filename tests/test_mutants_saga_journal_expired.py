"""A live worker an operator expired: its next run goes on under a new id
(tools/MUTANTS.md: ``_journal/_sqlite.py:259, 262``, create_run's refused
first attempt).

An operator's ``expire_worker`` of a worker that is still alive makes the
journal refuse the next ``create_run`` under that id; the worker gives the id
up (cancelling the runs held under it: they were created under it and are
fenced) and creates the run under a new id. That run existed under no other
id, so it runs to its end under the new one. The bodies are shared with
``test_mutants_postgres_expired.py`` (PostgreSQL).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_sagas
from trio_sagas import (
    Act,
    LeaseLostError,
    RunStatus,
    Scene,
    StepContext,
    run_scene,
)

Factory = Callable[..., Any]
GUARD = 30


@pytest.fixture(params=["sqlite", "memory"])
def journal_factory(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Factory:
    """Makes journals (workers) sharing one fresh store per test."""
    if request.param == "sqlite":
        path = tmp_path / "journal.db"

        def make_sqlite(**kwargs: Any) -> trio_sagas.SQLiteJournal:
            kwargs.setdefault("lease", 5.0)
            return trio_sagas.SQLiteJournal(path, **kwargs)

        return make_sqlite
    from .memory_journal import MemoryJournal, _Store

    store = _Store()

    def make_memory(**kwargs: Any) -> MemoryJournal:
        kwargs.setdefault("lease", 5.0)
        return MemoryJournal(store=store, **kwargs)

    return make_memory


def three_steps(calls: list[str], reader: Any = None) -> Scene:
    """A saga of three acts, each with an undo, that records what ran (and,
    given a *reader* journal, the run's holder as each act runs)."""

    async def step(ctx: StepContext, state: object) -> str:
        calls.append(ctx.name)
        if reader is not None:
            record = await reader.get_run(ctx.run_id)
            calls.append(f"held by {record.worker}")
        await trio.lowlevel.checkpoint()
        return ctx.name

    async def undo(ctx: StepContext, state: object) -> None:
        calls.append(f"undo {ctx.name}")

    return Scene("s", [Act(name, step, compensate=undo) for name in "abc"], saga=True)


async def check_a_new_run_goes_on_under_the_new_id(factory: Factory) -> None:
    calls: list[str] = []
    with trio.fail_after(GUARD):
        async with factory() as journal, factory() as operator:
            scene = three_steps(calls, operator)
            old = journal.worker_id
            assert old
            assert await operator.expire_worker(old) is True
            result = await run_scene(scene, {}, journal=journal, run_id="r")
            new = journal.worker_id
            record = await operator.get_run("r")
            kinds = [e.kind for e in await operator.events("r")]
            live = {w.worker_id for w in await operator.workers()}
    assert result.ok
    assert new not in ("", old)
    held = f"held by {new}"
    assert calls == ["a", held, "b", held, "c", held]
    assert record is not None
    assert (record.status, record.epoch, record.claims) == (RunStatus.SUCCEEDED, 1, 0)
    assert kinds.count("ActCompleted") == 3
    assert kinds[-1] == "SceneCompleted"
    assert new in live


async def check_an_older_run_is_still_fenced(factory: Factory) -> None:
    calls: list[str] = []
    scene = three_steps(calls)
    entered = trio.Event()
    go_on = trio.Event()

    async def waits(ctx: StepContext, state: object) -> None:
        calls.append("waits")
        entered.set()
        await go_on.wait()
        calls.append("never")

    older = Scene("o", [Act("w", waits)], saga=True)
    errors: list[BaseException] = []

    async def run_older(journal: Any) -> None:
        try:
            await run_scene(older, {}, journal=journal, run_id="old")
        except LeaseLostError as exc:
            errors.append(exc)

    with trio.fail_after(GUARD):
        async with factory() as journal, factory() as operator:
            old = journal.worker_id
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_older, journal)
                await entered.wait()
                assert await operator.expire_worker(old) is True
                result = await run_scene(scene, {}, journal=journal, run_id="new")
                go_on.set()
            new = journal.worker_id
            older_record = await operator.get_run("old")
            new_record = await operator.get_run("new")
    assert result.ok
    assert [type(e) for e in errors] == [LeaseLostError]
    assert calls == ["waits", "a", "b", "c"]
    assert older_record is not None
    assert new_record is not None
    assert (older_record.status, older_record.worker) == (RunStatus.RUNNING, old)
    assert new_record.status is RunStatus.SUCCEEDED
    assert new not in ("", old)


async def check_runs_started_together_after_an_expiry(factory: Factory) -> None:
    calls: list[str] = []
    scene = three_steps(calls)
    results: dict[str, bool] = {}

    async def one(journal: Any, run_id: str) -> None:
        results[run_id] = (
            await run_scene(scene, {}, journal=journal, run_id=run_id)
        ).ok

    with trio.fail_after(GUARD):
        async with factory() as journal, factory() as operator:
            old = journal.worker_id
            assert await operator.expire_worker(old) is True
            async with trio.open_nursery() as nursery:
                for run_id in ("r1", "r2", "r3"):
                    nursery.start_soon(one, journal, run_id)
            statuses = [(await operator.get_run(r)).status for r in ("r1", "r2", "r3")]
            new = journal.worker_id
    assert results == {"r1": True, "r2": True, "r3": True}
    assert statuses == [RunStatus.SUCCEEDED] * 3
    assert sorted(calls) == sorted(["a", "b", "c"] * 3)
    assert new not in ("", old)


async def check_without_async_with(factory: Factory) -> None:
    calls: list[str] = []
    scene = three_steps(calls)
    with trio.fail_after(GUARD):
        async with factory() as operator:
            journal = factory()  # not entered: each run holds its own heartbeat
            assert (await run_scene(scene, {}, journal=journal, run_id="r1")).ok
            old = journal.worker_id
            assert await operator.expire_worker(old) is True
            result = await run_scene(scene, {}, journal=journal, run_id="r2")
            record = await operator.get_run("r2")
            new = journal.worker_id
            if hasattr(journal, "aclose"):  # PostgreSQL
                await journal.aclose()
            elif hasattr(journal, "close"):  # SQLite
                journal.close()
    assert result.ok
    assert record is not None
    assert record.status is RunStatus.SUCCEEDED
    assert calls == ["a", "b", "c"] * 2
    assert new not in ("", old)


async def test_a_new_run_after_an_expiry_goes_on_under_the_new_id(
    journal_factory: Factory,
) -> None:
    """After an operator expired this live worker, run_scene of a 3-step saga
    is ok: the run is created, written and finished under the new worker id."""
    await check_a_new_run_goes_on_under_the_new_id(journal_factory)


async def test_a_run_created_before_the_expiry_is_still_fenced(
    journal_factory: Factory,
) -> None:
    """A run created under the expired id stops with LeaseLostError (left
    RUNNING for recovery) while a run started after the expiry finishes."""
    await check_an_older_run_is_still_fenced(journal_factory)


async def test_runs_started_together_after_an_expiry_all_finish(
    journal_factory: Factory,
) -> None:
    """Three runs started at once after the expiry (one gives the id up while
    the others hold it) all finish under the new id."""
    await check_runs_started_together_after_an_expiry(journal_factory)


async def test_a_new_run_after_an_expiry_without_async_with(
    journal_factory: Factory,
) -> None:
    """A journal not entered (each run holds its own heartbeat): the run after
    the expiry goes on under the new id too."""
    await check_without_async_with(journal_factory)


async def test_a_run_whose_id_is_given_up_after_its_creation_is_fenced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The id a run was created under given up before create_run returned
    (its expiry failed, so the journal would still take its writes): the run
    runs no act and raises LeaseLostError, left RUNNING; it is not re-held."""
    from .memory_journal import MemoryJournal

    class GivesUpAfterCreating(MemoryJournal):
        async def create_run(self, run_id: str, *, scene: str, state: bytes) -> Any:
            fence = await super().create_run(run_id, scene=scene, state=state)
            await self.keeper.abandon(fence.worker, "test: given up mid-write")
            return fence

        async def expire_worker(self, worker_id: str) -> bool:
            return False  # best effort, failed: the row stays live

    calls: list[str] = []
    journal = GivesUpAfterCreating()
    with trio.fail_after(GUARD):
        async with journal:
            with pytest.raises(LeaseLostError):
                await run_scene(
                    three_steps(calls),
                    {},
                    journal=journal,
                    run_id="r",
                )
    assert calls == []
    record = journal.records["r"]
    assert record.status is RunStatus.RUNNING
    assert journal.entries["r"] == []


async def test_a_run_whose_deadline_passed_during_create_run_is_not_re_held(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """create_run answered after the local deadline (renewals stalled): the
    re-hold gives that id up and holds under a new one, so the run -- created
    under the old id, whose row is still live (its expiry failed) -- is stopped
    with LeaseLostError before any act, not run under an id nobody renews."""
    from .memory_journal import MemoryJournal

    class SlowCreate(MemoryJournal):
        async def create_run(self, run_id: str, *, scene: str, state: bytes) -> Any:
            fence = await super().create_run(run_id, scene=scene, state=state)
            await trio.sleep(9.5)  # the answer comes after the local deadline (9 s)
            return fence

        async def expire_worker(self, worker_id: str) -> bool:
            return False  # best effort, failed: the row stays live until 10 s

    calls: list[str] = []
    journal = SlowCreate(lease=10.0)
    journal.stall_renewals = trio.Event()  # never set: no renewal answers
    with trio.fail_after(GUARD):
        async with journal:
            old = journal.worker_id
            with pytest.raises(LeaseLostError):
                await run_scene(
                    three_steps(calls),
                    {},
                    journal=journal,
                    run_id="r",
                )
            assert journal.worker_id not in ("", old)
    assert calls == []
    assert journal.records["r"].owner == old
    assert journal.entries["r"] == []


async def test_create_run_refused_twice_tries_twice_then_gives_up(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal that refuses every ``create_run`` (each worker id found
    lapsed): one try under the first id, one under a new id, then
    ``LeaseLostError`` -- no third try."""
    from trio_sagas._journal import _sqlite_leases

    tries: list[str] = []

    def refuse(conn: Any, *, worker: str, **kwargs: Any) -> bool:
        tries.append(worker)
        return False

    monkeypatch.setattr(_sqlite_leases, "create_run", refuse)
    async with trio_sagas.SQLiteJournal(tmp_path / "j.db") as journal:
        first = journal.worker_id
        with pytest.raises(trio_sagas.LeaseLostError, match="before creating run 'r'"):
            await journal.create_run("r", scene="s", state=b"{}")
    assert len(tries) == 2
    assert tries[0] == first
    assert tries[1] != first
