"""SQLiteJournal, and run_scene writing through a journal (intents first,
batched completions, run ids unique, journal failures, cancellation)."""

from __future__ import annotations

import contextlib
import math
import pathlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

import trio_sagas
from trio_sagas import (
    Act,
    Chorus,
    JournalEntry,
    JournalError,
    JournalSchemaError,
    JSONCodec,
    RunClaimedError,
    RunIdInUseError,
    RunStatus,
    Scene,
    SQLiteJournal,
    StepContext,
    run_scene,
)

from .memory_journal import MemoryJournal


def entry(seq: int, kind: str = "ActStarted", **data: Any) -> JournalEntry:
    return JournalEntry(run_id="r", seq=seq, kind=kind, step="s/a", at=0.0, data=data)


def durable_kinds(db: pathlib.Path, run_id: str) -> list[tuple[str, str]]:
    """What another connection (another process) sees committed right now."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT kind, step FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
    return [(k, s) for k, s in rows]


class CountingJournal:
    """Delegates to a journal and counts its writes."""

    def __init__(self, inner: trio_sagas.Journal) -> None:
        self.inner = inner
        self.appends: list[list[str]] = []
        self.creates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_run(
        self, run_id: str, *, scene: str, state: bytes
    ) -> trio_sagas.Fence:
        self.creates += 1
        return await self.inner.create_run(run_id, scene=scene, state=state)

    async def append(
        self,
        fence: trio_sagas.Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        self.appends.append([e.kind for e in entries])
        await self.inner.append(fence, entries, state=state, status=status)


async def ok(ctx: StepContext, state: dict[str, Any]) -> str:
    state[ctx.name] = True
    return f"{ctx.name}-receipt"


async def undo(ctx: StepContext, state: dict[str, Any]) -> None:
    state.pop(ctx.name, None)


async def declined(ctx: StepContext, state: object) -> None:
    raise ValueError("declined")


# -- SQLiteJournal ----------------------------------------------------------------


async def test_sqlite_round_trip(tmp_path: pathlib.Path) -> None:
    """Runs and entries persist across connections, in order, with status filters."""
    db = tmp_path / "j.db"
    async with SQLiteJournal(db) as journal:
        r = await journal.create_run("r", scene="s", state=b"{}")
        q = await journal.create_run("q", scene="s", state=b"{}")
        me = journal.worker_id
        await journal.append(
            r,
            [entry(0, "SceneStarted", saga=True), entry(1)],
            state=b'{"x":1}',
        )
        await journal.append(q, [], status=RunStatus.SUCCEEDED)
    with SQLiteJournal(db, create=False) as journal:
        (run,) = await journal.runs(status=RunStatus.RUNNING)
        assert (run.run_id, run.scene, run.state, run.owner, run.last_seq) == (
            "r",
            "s",
            b'{"x":1}',
            me,
            1,
        )
        assert run.created_at <= run.updated_at
        both = await journal.runs(status=[RunStatus.RUNNING, RunStatus.SUCCEEDED])
        assert sorted(r.run_id for r in both) == ["q", "r"]
        finished = await journal.get_run("q")
        assert finished is not None
        assert (finished.status, finished.owner) == (RunStatus.SUCCEEDED, None)
        events = await journal.events("r")
        assert [(e.seq, e.kind, dict(e.data)) for e in events] == [
            (0, "SceneStarted", {"saga": True}),
            (1, "ActStarted", {}),
        ]
        assert events[0].written_at > 0
        assert await journal.events("nope") == ()
        assert await journal.get_run("nope") is None
        assert repr(journal) == f"trio_sagas.SQLiteJournal({str(db)!r})"
        assert journal.path == db


async def test_sqlite_run_ids_are_unique(tmp_path: pathlib.Path) -> None:
    """create_run refuses an id in use, whatever its status."""
    with SQLiteJournal(tmp_path / "j.db") as journal:
        await journal.create_run("r", scene="s", state=b"1")
        with pytest.raises(RunIdInUseError, match="run id 'r' is already in journal"):
            await journal.create_run("r", scene="s", state=b"1")


async def test_sqlite_leases_fencing_and_claims(tmp_path: pathlib.Path) -> None:
    """Only the holder under the current epoch writes; a run is claimable only
    once its worker's lease lapsed; a claim bumps the epoch; stale_after adds grace."""
    db = tmp_path / "j.db"
    with SQLiteJournal(db) as a, SQLiteJournal(db) as b:
        fa = await a.create_run("r", scene="s", state=b"1")
        assert fa.epoch == 1
        assert await b.claim("r") is None  # a's lease is live
        with pytest.raises(RunClaimedError, match="no longer held by worker"):
            await b.append(trio_sagas.Fence("r", a.worker_id, 2), [entry(0)])
        assert await b.expire_worker(a.worker_id)
        with pytest.raises(trio_sagas.LeaseLostError, match="lapsed"):
            await a.append(fa, [entry(0)])
        assert await b.claim("r", stale_after=3600) is None  # written just now
        fb = await b.claim("r")
        assert fb is not None
        assert (fb.worker, fb.epoch) == (b.worker_id, 2)
        await b.append(fb, [entry(0)], status=RunStatus.FAILED)
        assert await b.claim("r") is None  # not RUNNING any more
        assert await b.claim("r", statuses=()) is None
        fc = await b.claim("r", statuses=[RunStatus.FAILED])
        assert fc is not None
        run = await b.get_run("r")
        assert run is not None
        assert (run.status, run.owner, run.epoch, run.claims) == (
            RunStatus.RUNNING,
            b.worker_id,
            3,
            2,
        )
        with pytest.raises(JournalError, match="the first new seq is 0"):
            await b.append(fc, [entry(0)])  # seq 0 exists
        assert [e.seq for e in await b.events("r")] == [0]
        workers = {w.worker_id: w for w in await b.workers()}
        assert workers[a.worker_id].expires_at <= workers[b.worker_id].expires_at


async def test_sqlite_max_claims_and_prune(tmp_path: pathlib.Path) -> None:
    """A run claimed max_claims times goes to NEEDS_INTERVENTION; prune deletes
    only old finished runs, never RUNNING or NEEDS_INTERVENTION."""
    db = tmp_path / "j.db"
    with SQLiteJournal(db, max_claims=1) as a, SQLiteJournal(db, max_claims=1) as b:
        await a.create_run("r", scene="s", state=b"1")
        done = await a.create_run("done", scene="s", state=b"1")
        await a.append(done, [entry(0)], status=RunStatus.SUCCEEDED)
        await b.expire_worker(a.worker_id)
        assert await b.claim("r") is not None
        await a.expire_worker(b.worker_id)
        batch = await a.claim_batch(limit=10)
        assert batch == ()
        run = await a.get_run("r")
        assert run is not None
        assert run.status is RunStatus.NEEDS_INTERVENTION
        with pytest.raises(ValueError, match="never pruned"):
            await a.prune(older_than=0, statuses=[RunStatus.NEEDS_INTERVENTION])
        assert await a.prune(older_than=3600) == 0
        assert await a.prune(older_than=0) == 1
        assert await a.get_run("done") is None
        assert await a.events("done") == ()
        assert [r.run_id for r in await a.runs()] == ["r"]


async def test_sqlite_missing_files(tmp_path: pathlib.Path) -> None:
    """A missing file with create=False, or a missing directory, is a clear error."""
    with pytest.raises(JournalError, match="does not exist \\(create=False\\)"):
        await SQLiteJournal(tmp_path / "nope.db", create=False).runs()
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(JournalError, match=r"directory .* does not exist"):
        await SQLiteJournal(tmp_path / "no" / "j.db").runs()


async def test_sqlite_corrupt_file(tmp_path: pathlib.Path) -> None:
    """A file that is not a SQLite database is refused, untouched."""
    db = tmp_path / "j.db"
    garbage = b"this is not a database, it only has the name of one" * 100
    db.write_bytes(garbage)
    with pytest.raises(JournalError, match="corrupt or not a SQLite database"):
        await SQLiteJournal(db).runs()
    assert db.read_bytes() == garbage


async def test_sqlite_foreign_and_newer_schemas(tmp_path: pathlib.Path) -> None:
    """Another application's database, or a newer journal schema, is refused."""
    foreign = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(foreign)) as conn, conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(JournalSchemaError, match="another application"):
        await SQLiteJournal(foreign).runs()
    newer = tmp_path / "newer.db"
    async with SQLiteJournal(newer) as journal:
        await journal.create_run("r", scene="s", state=b"1")
    with contextlib.closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalSchemaError, match="schema version 99, newer than"):
        await SQLiteJournal(newer).runs()


async def test_sqlite_locked_file(tmp_path: pathlib.Path) -> None:
    """A write blocked by another connection's lock fails after busy_timeout, clearly."""
    db = tmp_path / "j.db"
    with SQLiteJournal(db, busy_timeout=0.05) as journal:
        fence = await journal.create_run("r", scene="s", state=b"1")
        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(JournalError, match="is locked by another connection"):
                await journal.append(fence, [entry(0)])
            other.execute("ROLLBACK")
        finally:
            other.close()
        await journal.append(fence, [entry(0)])  # nothing was lost
        assert len(await journal.events("r")) == 1


async def test_sqlite_closed_and_bad_arguments(tmp_path: pathlib.Path) -> None:
    """A closed journal refuses calls; bad arguments fail at construction."""
    journal = SQLiteJournal(tmp_path / "j.db", synchronous="NORMAL")
    await journal.runs()
    journal.close()
    with pytest.raises(JournalError, match="is closed"):
        await journal.runs()
    with pytest.raises(TypeError, match="path must be a str"):
        SQLiteJournal(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="codec must have encode"):
        SQLiteJournal("x.db", codec=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="synchronous must be 'FULL' or 'NORMAL'"):
        SQLiteJournal("x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout must be >= 0"):
        SQLiteJournal("x.db", busy_timeout=-1)
    with pytest.raises(ValueError, match="busy_timeout must be finite"):
        SQLiteJournal("x.db", busy_timeout=math.inf)
    with pytest.raises(TypeError, match="create must be a bool"):
        SQLiteJournal("x.db", create=1)  # type: ignore[arg-type]


def test_json_codec() -> None:
    """JSON by default, with hooks; NaN is refused."""
    codec = JSONCodec()
    assert codec.encode({"a": [1, 2.5, None]}) == b'{"a":[1,2.5,null]}'
    assert codec.decode(b'{"a":[1]}') == {"a": [1]}
    with pytest.raises(ValueError, match="Out of range float"):
        codec.encode(math.nan)
    with pytest.raises(TypeError, match="not JSON serializable"):
        codec.encode({1, 2})
    sets = JSONCodec(
        default=lambda v: {"set": sorted(v)},
        object_hook=lambda d: set(d["set"]) if "set" in d else d,
    )
    assert sets.decode(sets.encode({3, 1})) == {1, 3}
    assert repr(codec) == "trio_sagas.JSONCodec()"
    assert isinstance(codec, trio_sagas.Codec)


# -- run_scene with a journal ----------------------------------------------------------


async def test_journaled_run_matches_its_events(tmp_path: pathlib.Path) -> None:
    """Every event is journaled, in order, with the final status and state."""
    scene = Scene(
        "order",
        [
            Act("a", ok, compensate=undo),
            Chorus("c", [Act("x", ok, compensate=undo), Act("y", ok)]),
            Act("b", declined),
        ],
        saga=True,
    )
    in_memory = await run_scene(scene, {}, run_id="r")
    async with SQLiteJournal(tmp_path / "j.db") as journal:
        result = await run_scene(scene, {}, journal=journal, run_id="r")
        entries = await journal.events("r")
        run = await journal.get_run("r")
    # The same events (branches may interleave differently).
    assert sorted(type(e).__name__ for e in result.events) == sorted(
        type(e).__name__ for e in in_memory.events
    )
    assert [(e.seq, e.kind) for e in entries] == [
        (e.seq, type(e).__name__) for e in result.events
    ]
    completed = {e.step: e.value for e in entries if e.kind == "ActCompleted"}
    assert completed == {
        "order/a": b'"a-receipt"',
        "order/c/x": b'"x-receipt"',
        "order/c/y": b'"y-receipt"',
    }
    failed = next(e for e in entries if e.kind == "SceneFailed")
    assert failed.data["step"] == "order/b"
    assert failed.data["error"] == {"type": "ValueError", "message": "declined"}
    assert run is not None
    assert (run.status, run.state, run.owner) == (
        RunStatus.COMPENSATED,
        b'{"y":true}',
        None,
    )


async def test_intents_are_durable_before_the_code_runs(tmp_path: pathlib.Path) -> None:
    """When run or an undo starts, another connection already sees its intent."""
    db = tmp_path / "j.db"
    seen: list[list[tuple[str, str]]] = []

    async def look(ctx: StepContext, state: object) -> str:
        seen.append(durable_kinds(db, "r"))
        return "done"

    async def look_undo(ctx: StepContext, state: object) -> None:
        seen.append(durable_kinds(db, "r"))

    scene = Scene(
        "s",
        [Act("a", look, compensate=look_undo), Act("b", declined)],
        saga=True,
    )
    async with SQLiteJournal(db) as journal:
        await run_scene(scene, {}, journal=journal, run_id="r")
    assert seen[0] == [("SceneStarted", "s"), ("ActStarted", "s/a")]
    assert seen[1][-1] == ("CompensationStepStarted", "s/a")
    assert ("ActCompleted", "s/a") in seen[1]


async def test_writes_are_batched(autojump_clock: trio.testing.MockClock) -> None:
    """A 10-step success is 1 create + 11 appends: each completion rides with the next intent."""
    journal = CountingJournal(MemoryJournal())
    scene = Scene("s", [Act(f"a{i}", ok) for i in range(10)], saga=True)
    result = await run_scene(scene, {}, journal=journal, run_id="r")
    assert result.ok
    assert journal.creates == 1
    assert journal.appends[0] == ["SceneStarted", "ActStarted"]
    assert journal.appends[1:10] == [["ActCompleted", "ActStarted"]] * 9
    assert journal.appends[10] == ["ActCompleted", "SceneCompleted"]
    assert len(journal.appends) == 11
    assert (await journal.get_run("r")).status is RunStatus.SUCCEEDED


async def test_chorus_branch_completion_is_written_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A finished branch's completion does not wait for a slow sibling's next write."""
    inner = MemoryJournal()
    seen: list[list[str]] = []

    async def fast(ctx: StepContext, state: object) -> None:
        pass

    async def slow(ctx: StepContext, state: object) -> None:
        await trio.sleep(10)
        seen.append([e.kind for e in await inner.events("r")])

    scene = Scene("s", [Chorus("c", [Act("fast", fast), Act("slow", slow)])])
    await run_scene(scene, {}, journal=inner, run_id="r")
    assert "ActCompleted" in seen[0]


async def test_run_id_in_use_runs_nothing(tmp_path: pathlib.Path) -> None:
    """A used run id is refused before any step runs."""
    calls: list[str] = []

    async def step(ctx: StepContext, state: object) -> None:
        calls.append(ctx.path)

    scene = Scene("s", [Act("a", step)])
    async with SQLiteJournal(tmp_path / "j.db") as journal:
        await run_scene(scene, {}, journal=journal, run_id="r")
        with pytest.raises(RunIdInUseError):
            await run_scene(scene, {}, journal=journal, run_id="r")
        assert len(await journal.events("r")) == 4
    assert calls == ["s/a"]


async def test_state_the_codec_cannot_encode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An unencodable state fails fast, before the run exists."""
    journal = MemoryJournal()
    with pytest.raises(
        TypeError, match=r"state: trio_sagas.JSONCodec\(\) cannot encode set"
    ):
        await run_scene(Scene("s", [Act("a", ok)]), {1}, journal=journal)
    assert journal.records == {}


async def test_unencodable_result_stops_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A result the codec cannot encode breaks the journal: no later step runs,
    the saga rolls back in memory, the journal still says RUNNING."""
    calls: list[str] = []

    async def weird(ctx: StepContext, state: object) -> object:
        calls.append("weird")
        return object()

    async def later(ctx: StepContext, state: object) -> None:
        calls.append("later")

    async def undo_weird(ctx: StepContext, state: object) -> None:
        calls.append("undo weird")

    journal = MemoryJournal()
    scene = Scene(
        "s", [Act("w", weird, compensate=undo_weird), Act("l", later)], saga=True
    )
    with pytest.raises(
        JournalError, match="cannot encode the state or an act's result"
    ):
        await run_scene(scene, {}, journal=journal, run_id="r")
    assert calls == ["weird", "undo weird"]
    assert journal.records["r"].status is RunStatus.RUNNING
    # Held by this live worker: another worker takes it once that lease lapses.
    other = journal.worker()
    assert (await trio_sagas.recover(other, [scene])).results == ()
    assert await other.expire_worker(journal.worker_id)
    report = await trio_sagas.recover(other, [scene])
    assert calls == ["weird", "undo weird", "undo weird"]  # at-least-once
    assert report.results[0].failed_step == "s/w"


async def test_journal_failure_mid_run(autojump_clock: trio.testing.MockClock) -> None:
    """A write that fails before an act stops the run there; undos still run."""
    calls: list[str] = []

    async def step(ctx: StepContext, state: object) -> None:
        calls.append(ctx.name)

    async def back(ctx: StepContext, state: object) -> None:
        calls.append(f"undo {ctx.name}")

    journal = MemoryJournal()
    journal.fail_at = 4  # create, a, b, then the intent of c fails
    scene = Scene(
        "s",
        [Act(n, step, compensate=back) for n in "abc"],
        saga=True,
    )
    with pytest.raises(JournalError, match="disk full"):
        await run_scene(scene, {}, journal=journal, run_id="r")
    assert calls == ["a", "b", "undo b", "undo a"]
    assert journal.records["r"].status is RunStatus.RUNNING


async def test_cancelled_while_an_intent_is_being_written(
    autojump_clock: trio.testing.MockClock, no_task_leaks: Any
) -> None:
    """The write in flight completes; then the cancel lands while b runs: b counts
    as started and cancelled (uncertain, so undone too), the final status is written."""
    calls: list[str] = []

    async def step(ctx: StepContext, state: object) -> None:
        calls.append(ctx.name)
        await trio.sleep(1)

    async def back(ctx: StepContext, state: object) -> None:
        calls.append(f"undo {ctx.name}")

    journal = MemoryJournal()
    scene = Scene("s", [Act(n, step, compensate=back) for n in "ab"], saga=True)
    with no_task_leaks():
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                with trio.move_on_after(1.5):
                    await run_scene(scene, {}, journal=journal, run_id="r")

            nursery.start_soon(run)
            await trio.sleep(1.2)  # a completed at 1.0; b's intent is in flight
            assert journal.gate is None
            journal.gate = trio.Event()
            await trio.sleep(1)  # the cancel at 1.5 waits for the write
            assert trio.current_time() == 2.2
            journal.gate.set()
            journal.gate = None
    kinds = [e.kind for e in await journal.events("r")]
    assert calls == ["a", "b", "undo b", "undo a"]
    assert kinds[kinds.index("ActStarted", 2) :] == [
        "ActStarted",
        "ActCancelled",
        "SceneFailed",
        "CompensationStarted",
        "CompensationStepStarted",
        "CompensationStepCompleted",
        "CompensationStepStarted",
        "CompensationStepCompleted",
        "CompensationCompleted",
    ]
    assert journal.records["r"].status is RunStatus.COMPENSATED


async def test_claimed_run_stops_its_old_owner(tmp_path: pathlib.Path) -> None:
    """When an operator declares a worker dead and another process claims its
    run, the old holder can write no more: the run stops with RunClaimedError
    before the next step, and runs no undo (the new holder did)."""
    db = tmp_path / "j.db"
    calls: list[str] = []

    async def first(ctx: StepContext, state: object) -> None:
        calls.append("first")
        # Another process (another connection) declares us dead and recovers.
        async with SQLiteJournal(db) as other:
            assert await other.expire_worker(journal.worker_id)
            report = await trio_sagas.recover(other, [scene])
            assert [r.run_id for r in report.results] == ["r"]

    async def second(ctx: StepContext, state: object) -> None:
        calls.append("second")

    async def undo_a(ctx: StepContext, state: object) -> None:
        calls.append("undo a")

    scene = Scene(
        "s", [Act("a", first, compensate=undo_a), Act("b", second)], saga=True
    )

    async with SQLiteJournal(db) as journal:
        with pytest.raises(RunClaimedError):
            await run_scene(scene, {}, journal=journal, run_id="r")
        run = await journal.get_run("r")
    assert calls == ["first", "undo a"]  # by the other process, once
    assert run is not None
    assert run.status is RunStatus.COMPENSATED


async def test_success_status_and_durations(tmp_path: pathlib.Path) -> None:
    """A succeeded run is SUCCEEDED, and run_scene returns the usual result."""
    scene = Scene("s", [Act("a", ok)])
    async with SQLiteJournal(tmp_path / "j.db") as journal:
        result = await run_scene(scene, {}, journal=journal, run_id="r")
        assert result.ok
        assert result.state == {"a": True}
        run = await journal.get_run("r")
    assert run is not None
    assert run.status is RunStatus.SUCCEEDED
    assert run.state == b'{"a":true}'


def test_act_uncertain_option() -> None:
    """Act(uncertain=) takes an Uncertain or its value: 'compensate' (default),
    'retry' or 'skip'."""
    assert Act("a", ok).uncertain == "compensate"
    assert Act("a", ok, uncertain="skip").uncertain == "skip"
    with pytest.raises(
        ValueError,
        match="uncertain must be 'compensate' or 'retry' or 'skip', got 'maybe'",
    ):
        Act("a", ok, uncertain="maybe")


async def test_journal_failure_inside_a_chorus(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A branch whose intent cannot be written fails the chorus and the run;
    the branch that completed is undone in memory."""
    calls: list[str] = []

    async def step(ctx: StepContext, state: object) -> None:
        calls.append(ctx.name)
        if ctx.name == "slow":
            await trio.sleep(1)

    async def back(ctx: StepContext, state: object) -> None:
        calls.append(f"undo {ctx.name}")

    journal = MemoryJournal()
    journal.fail_at = 4  # create, intent a, intent fast; intent slow fails
    scene = Scene(
        "s",
        [
            Act("a", step, compensate=back),
            Chorus(
                "c",
                [Act("fast", step, compensate=back), Act("slow", step)],
            ),
            Act("after", step),
        ],
        saga=True,
    )
    with pytest.raises(JournalError, match="disk full"):
        await run_scene(scene, {}, journal=journal, run_id="r")
    # Branches start in any order, and their intents may share a write (group
    # commit); a branch runs only once its intent is written; nothing after.
    assert calls[0] == "a"
    assert {"fast", "slow"} & set(calls)
    assert "after" not in calls
    written = {e.step for e in journal.entries["r"] if e.kind == "ActStarted"}
    assert {c for c in calls if "undo" not in c} <= {p.split("/")[-1] for p in written}
    assert calls[-1] == "undo a"


async def test_cancelled_during_the_final_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The final record is written shielded: a cancel then still leaves a final status."""
    journal = MemoryJournal()

    async def last(ctx: StepContext, state: object) -> None:
        journal.gate = trio.Event()  # from here on, writes wait

    scene = Scene("s", [Act("last", last)])
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            with trio.move_on_after(1) as scope:
                result = await run_scene(scene, {}, journal=journal, run_id="r")
                assert result.ok  # it had finished; only its record was pending
            assert scope.cancel_called

        nursery.start_soon(run)
        await trio.sleep(2)  # the cancel came at 1.0, during the final write
        assert journal.gate is not None
        journal.gate.set()
    assert trio.current_time() == 2.0
    assert journal.records["r"].status is RunStatus.SUCCEEDED


async def test_run_scene_refuses_a_non_journal() -> None:
    """journal= must implement the Journal protocol."""
    with pytest.raises(TypeError, match=r"journal must implement trio_sagas\.Journal"):
        await run_scene(Scene("s"), {}, journal="sagas.db")  # type: ignore[arg-type]


async def test_recover_stale_after_spares_recently_written_runs(
    tmp_path: pathlib.Path,
) -> None:
    """With stale_after, a run written to recently (maybe alive elsewhere) is left alone."""
    undone: list[str] = []

    async def back(ctx: StepContext, state: object) -> None:
        undone.append(ctx.path)

    scene = Scene("s", [Act("a", ok, compensate=back)], saga=True)
    async with SQLiteJournal(tmp_path / "j.db") as journal:
        # What a process that died inside a's run leaves behind.
        with SQLiteJournal(tmp_path / "j.db") as dead:
            fence = await dead.create_run("r", scene="s", state=b"{}")
            await dead.append(
                fence,
                [
                    JournalEntry(
                        run_id="r", seq=0, kind="SceneStarted", step="s", at=0
                    ),
                    JournalEntry(
                        run_id="r", seq=1, kind="ActStarted", step="s/a", at=0
                    ),
                ],
            )
            await journal.expire_worker(dead.worker_id)
        report = await trio_sagas.recover(journal, [scene], stale_after=3600)
        (skipped,) = report.skipped
        assert skipped.reason == trio_sagas.HELD_ELSEWHERE
        assert undone == []
        report = await trio_sagas.recover(journal, [scene])
        assert [r.run_id for r in report] == ["r"]
        assert undone == ["s/a"]
        run = await journal.get_run("r")
        assert run is not None
        assert (run.status, run.owner) == (RunStatus.COMPENSATED, None)


async def test_sqlite_migrates_a_version_1_journal(tmp_path: pathlib.Path) -> None:
    """A journal written by version 1 (owner tokens, no leases) is migrated on
    open; its RUNNING runs have no live worker, so recover() takes them over."""
    from trio_sagas._journal import _sqlite

    db = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for statement in _sqlite._SCHEMA_V1:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {_sqlite.APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO runs (run_id, scene, status, owner, state, created_at, "
            "updated_at, last_seq) VALUES ('r', 's', 'running', 'old-token', X'7B7D', "
            "0, 0, 1)"
        )
        for seq, kind, step in ((0, "SceneStarted", "s"), (1, "ActStarted", "s/a")):
            conn.execute(
                "INSERT INTO events (run_id, seq, kind, step, at, written_at, data) "
                "VALUES ('r', ?, ?, ?, 0, 0, '{}')",
                (seq, kind, step),
            )
    undone: list[str] = []

    async def back(ctx: StepContext, state: object) -> None:
        undone.append(ctx.path)

    scene = Scene("s", [Act("a", ok, compensate=back)], saga=True)
    async with SQLiteJournal(db, create=False) as journal:
        report = await trio_sagas.recover(journal, [scene])
        run = await journal.get_run("r")
    assert [r.run_id for r in report] == ["r"]
    assert undone == ["s/a"]
    assert run is not None
    assert (run.status, run.epoch, run.claims) == (RunStatus.COMPENSATED, 1, 1)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
