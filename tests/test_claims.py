"""Batched claims and reads (BatchedJournal.claim_and_load / read_events).

The contract part runs over every backend through ``_saga._claims``: SQLite
and memory answer natively, PostgreSQL through the fallback (per-run calls),
and all three must give the same answers.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import trio

import trio_sagas
from trio_sagas import RunDamagedError, RunStatus
from trio_sagas._saga._claims import claim_and_load, read_events

from .test_postgres_contract import (  # noqa: F401  (a fixture)
    GUARD,
    Factory,
    entries,
    journal_factory,
)


async def _dead_runs(dead: Any, count: int) -> None:
    for i in range(count):
        fence = await dead.create_run(f"r{i}", scene="s", state=b"{}")
        await dead.append(fence, entries(f"r{i}", 0, i + 1))


async def test_claim_and_load_takes_the_oldest_with_their_entries(
    journal_factory: Factory,  # noqa: F811
) -> None:
    """Without run ids: up to limit lapsed runs, oldest first, each claimed
    (epoch 2, this worker) with its entries as of the claim."""
    with trio.fail_after(GUARD):
        async with journal_factory() as dead, journal_factory() as alive:
            await _dead_runs(dead, 3)
            mine = await alive.create_run("mine", scene="s", state=b"{}")
            assert await claim_and_load(alive, limit=2) == ()  # dead's lease is live
            await alive.expire_worker(dead.worker_id)
            got = await claim_and_load(alive, limit=2)
            assert [c.record.run_id for c in got] == ["r0", "r1"]
            for n, claimed in enumerate(got):
                assert claimed.fence.worker == alive.worker_id
                assert (claimed.fence.epoch, claimed.record.epoch) == (2, 2)
                assert claimed.record.owner == alive.worker_id
                assert claimed.record.claims == 1
                assert [e.seq for e in claimed.entries] == list(range(n + 1))
                assert claimed.entries[0].data == {"n": 0}
            rest = await claim_and_load(alive, limit=5)
            assert [c.record.run_id for c in rest] == ["r2"]
            assert mine.epoch == 1
            assert await claim_and_load(alive, limit=5) == ()


async def test_claim_and_load_by_id_claims_only_the_claimable(
    journal_factory: Factory,  # noqa: F811
) -> None:
    """With run ids: those that are claimable, in the order given, at most
    limit; a live worker's run, a finished run or an unknown id is left."""
    with trio.fail_after(GUARD):
        async with journal_factory() as dead, journal_factory() as alive:
            await _dead_runs(dead, 3)
            live = await alive.create_run("live", scene="s", state=b"{}")
            done = await alive.create_run("done", scene="s", state=b"{}")
            await alive.append(done, entries("done", 0), status=RunStatus.SUCCEEDED)
            await alive.expire_worker(dead.worker_id)
            asked = ["r2", "live", "done", "nope", "r0", "r1"]
            got = await claim_and_load(alive, asked, limit=2)
            assert [c.record.run_id for c in got] == ["r2", "r0"]
            assert [len(c.entries) for c in got] == [3, 1]
            assert (await alive.get_run("live")).epoch == live.epoch
            assert (await alive.get_run("r1")).epoch == 1  # beyond the limit
            # Another worker finds those held: only r1 is left for it.
            async with journal_factory() as late:
                again = await claim_and_load(late, asked, limit=6)
                assert [c.record.run_id for c in again] == ["r1"]


async def test_two_claimers_split_by_id(
    journal_factory: Factory,  # noqa: F811
) -> None:
    """Two workers claiming the same ids at once: each run goes to one of them."""
    with trio.fail_after(GUARD):
        async with (
            journal_factory() as dead,
            journal_factory() as a,
            journal_factory() as b,
        ):
            await _dead_runs(dead, 6)
            await a.expire_worker(dead.worker_id)
            ids = [f"r{i}" for i in range(6)]
            got: dict[str, list[str]] = {}

            async def claimer(journal: Any) -> None:
                for claimed in await claim_and_load(journal, ids, limit=6):
                    got.setdefault(claimed.record.run_id, []).append(journal.worker_id)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claimer, a)
                nursery.start_soon(claimer, b)
            assert sorted(got) == ids
            assert all(len(v) == 1 for v in got.values())


async def test_read_events_answers_per_run(
    journal_factory: Factory,  # noqa: F811
) -> None:
    """read_events gives each run's entries in seq order, () for no such run."""
    with trio.fail_after(GUARD):
        async with journal_factory() as journal:
            await _dead_runs(journal, 2)
            assert await read_events(journal, []) == ()
            got = await read_events(journal, ["r1", "nope", "r0"])
            assert [[e.seq for e in r] for r in got] == [[0, 1], [], [0]]  # type: ignore[union-attr]
            assert got[0] == await journal.events("r1")


def _damage(path: pathlib.Path, run_id: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("UPDATE events SET data = '{' WHERE run_id = ? AND seq = 0", (run_id,))
    conn.commit()
    conn.close()


async def test_sqlite_damaged_run_is_reported_not_claimed(
    tmp_path: pathlib.Path,
) -> None:
    """SQLite: a run whose entries cannot be read is its RunDamagedError in
    read_events and is not claimed by claim_and_load (by id or oldest first)."""
    path = tmp_path / "j.db"
    with trio.fail_after(GUARD):
        async with trio_sagas.SQLiteJournal(path) as dead:
            await _dead_runs(dead, 3)
        _damage(path, "r1")
        async with trio_sagas.SQLiteJournal(path) as journal:
            got = await journal.read_events(["r0", "r1"])
            assert isinstance(got[1], RunDamagedError)
            assert got[1].run_id == "r1"
            assert "seq 0" in str(got[1])
            claimed = await journal.claim_and_load(["r1", "r0"], limit=2)
            assert [c.record.run_id for c in claimed] == ["r0"]
            claimed = await journal.claim_and_load(limit=5)
            assert [c.record.run_id for c in claimed] == ["r2"]
            record = await journal.get_run("r1")
            assert record is not None
            assert (record.status, record.epoch) == (RunStatus.RUNNING, 1)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda j: j.claim_and_load("r1", limit=1), TypeError, "run_ids"),
        (lambda j: j.claim_and_load([3], limit=1), TypeError, "run_ids"),
        (lambda j: j.claim_and_load(limit=0), ValueError, "limit"),
        (lambda j: j.claim_and_load(limit=1, stale_after=-1), ValueError, "stale"),
        (lambda j: j.read_events("r1"), TypeError, "run_ids"),
        (lambda j: j.read_events([""]), ValueError, "run_ids"),
    ],
)
async def test_sqlite_batched_calls_refuse_bad_arguments(
    tmp_path: pathlib.Path, call: Any, error: type[Exception], match: str
) -> None:
    """claim_and_load / read_events: bad arguments name themselves, nothing written."""
    with trio.fail_after(GUARD):
        async with trio_sagas.SQLiteJournal(tmp_path / "j.db") as journal:
            with pytest.raises(error, match=match):
                await call(journal)
            assert await journal.runs() == ()
