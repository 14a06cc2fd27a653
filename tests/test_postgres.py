"""PostgresJournal specifics against a real server: migrations, lost
connections and "commit outcome unknown", a server restart, bad arguments."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import psycopg
import pytest
import trio
import trio.testing

import trio_sagas
from trio_sagas import JournalEntry, JournalSchemaError, RunStatus

from .pg_server import PgServer

GUARD = 60


def entries(run_id: str, first: int, count: int = 1) -> list[JournalEntry]:
    return [
        JournalEntry(run_id, seq, "ActStarted", f"s/a{seq}", 0.0, {"n": seq})
        for seq in range(first, first + count)
    ]


def sql(server: PgServer, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a side connection (another process's view)."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def journal(server: PgServer, schema: str, **kwargs: Any) -> trio_sagas.PostgresJournal:
    kwargs.setdefault("lease", 5.0)
    return trio_sagas.PostgresJournal(server.dsn, schema=schema, **kwargs)


async def test_migrations_are_idempotent(pg_server: PgServer) -> None:
    """Opening a schema again migrates nothing and keeps the runs."""
    schema = pg_server.new_schema()
    with trio.fail_after(GUARD):
        async with journal(pg_server, schema) as first:
            await first.create_run("r", scene="s", state=b"{}")
        async with journal(pg_server, schema) as again:
            assert [r.run_id for r in await again.runs()] == ["r"]
    assert sql(pg_server, f'SELECT value FROM "{schema}".meta') == [("1",)]


async def test_concurrent_migrations_run_once(pg_server: PgServer) -> None:
    """Eight workers opening a fresh schema at once: one migrates, none fails."""
    schema = pg_server.new_schema()
    opened: list[str] = []

    async def open_one() -> None:
        async with journal(pg_server, schema) as j:
            opened.append(j.worker_id)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(open_one)
    assert len(set(opened)) == 8
    tables = sql(
        pg_server,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
        "ORDER BY 1",
        schema,
    )
    assert tables == [("events",), ("meta",), ("runs",), ("workers",)]


async def test_newer_or_foreign_schema_is_refused(pg_server: PgServer) -> None:
    """A schema of a newer version, or with tables not ours, is a JournalSchemaError."""
    newer, foreign = pg_server.new_schema(), pg_server.new_schema()
    with trio.fail_after(GUARD):
        async with journal(pg_server, newer):
            pass
    sql(pg_server, f"UPDATE \"{newer}\".meta SET value = '99'")
    sql(pg_server, f'CREATE SCHEMA "{foreign}"')
    sql(pg_server, f'CREATE TABLE "{foreign}".orders (id int)')
    for schema, match in [
        (newer, "version 99, newer"),
        (foreign, "did not make \\(orders\\)"),
    ]:
        j = journal(pg_server, schema)
        with trio.fail_after(GUARD):
            with pytest.raises(JournalSchemaError, match=match):
                await j.runs()
            await j.aclose()


def terminate(server: PgServer, role: str) -> int:
    """pg_terminate_backend every journal connection of *role*."""
    rows = sql(
        server,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s",
        f"trio-sagas {role}",
    )
    return len(rows)


async def test_killed_connections_are_reopened(pg_server: PgServer) -> None:
    """After pg_terminate_backend of every journal connection, appends, reads,
    claims and renewals go on (the append settles its unknown outcome)."""
    schema = pg_server.new_schema()
    with trio.fail_after(GUARD):
        async with journal(pg_server, schema, lease=1.0) as j:
            fence = await j.create_run("r", scene="s", state=b"{}")
            await j.append(fence, entries("r", 0))
            assert await j.workers()
            for role in ("writes", "control", "heartbeat"):
                assert terminate(pg_server, role) >= 1
            await j.append(fence, entries("r", 1))
            assert [e.seq for e in await j.events("r")] == [0, 1]
            await trio.sleep(0.5)  # a renewal on a new heartbeat connection
            assert j._keeper.last_error is None
            assert fence.worker == j.worker_id


async def test_commit_outcome_unknown_is_settled(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after the COMMIT went through: the append rereads
    last_seq, reports success, and nothing is written twice."""
    from trio_sagas._journal import _pg_resolve

    schema = pg_server.new_schema()
    real = _pg_resolve._write
    drops = [0]

    def committed_then_lost(statement: str, params: Any, conn: Any) -> Any:
        rows = real(statement, params, conn)
        if drops[0] == 0:
            drops[0] += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return rows

    with trio.fail_after(GUARD):
        async with journal(pg_server, schema) as j:
            fence = await j.create_run("r", scene="s", state=b"{}")
            monkeypatch.setattr(_pg_resolve, "_write", committed_then_lost)
            await j.append(fence, entries("r", 0, 2), state=b"1")
            assert drops == [1]
            assert [e.seq for e in await j.events("r")] == [0, 1]
            await j.append(fence, entries("r", 2), status=RunStatus.SUCCEEDED)
            record = await j.get_run("r")
            assert record is not None
            assert record.last_seq == 2


async def test_lost_before_commit_is_sent_again(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops before the statement ran: it is sent again, once."""
    from trio_sagas._journal import _pg_resolve

    schema = pg_server.new_schema()
    real = _pg_resolve._write
    calls = [0]

    def lost_then_ok(statement: str, params: Any, conn: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise psycopg.OperationalError("connection reset")
        return real(statement, params, conn)

    with trio.fail_after(GUARD):
        async with journal(pg_server, schema) as j:
            fence = await j.create_run("r", scene="s", state=b"{}")
            monkeypatch.setattr(_pg_resolve, "_write", lost_then_ok)
            await j.append(fence, entries("r", 0))
            assert calls == [2]
            assert [e.seq for e in await j.events("r")] == [0]


async def test_server_restart_is_survived(pg_server: PgServer) -> None:
    """pg_ctl restart -m immediate under an open journal: the next calls reconnect."""
    schema = pg_server.new_schema()
    with trio.fail_after(GUARD):
        async with journal(pg_server, schema, lease=10.0) as j:
            fence = await j.create_run("r", scene="s", state=b"{}")
            await j.append(fence, entries("r", 0))
            await trio.to_thread.run_sync(
                pg_server.pg_ctl, "-m", "immediate", "-w", "-t", "60", "restart"
            )
            await j.append(fence, entries("r", 1))
            assert [e.seq for e in await j.events("r")] == [0, 1]


async def test_unreachable_server_is_a_journal_error() -> None:
    """No server at the address: a JournalError, not a hang."""
    j = trio_sagas.PostgresJournal(
        "host=/nonexistent port=1 user=postgres dbname=postgres", lease=1.0
    )
    with trio.fail_after(GUARD):
        with pytest.raises(trio_sagas.JournalError, match="nonexistent"):
            await j.runs()
        await j.aclose()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dsn": 3}, TypeError, "dsn must be a str"),
        ({"dsn": ""}, ValueError, "dsn must be a non-empty"),
        ({"lease": 0}, ValueError, "lease must be > 0"),
        ({"lease": float("inf")}, ValueError, "lease must be a finite"),
        ({"lease": "5"}, TypeError, "lease must be a number"),
        ({"max_claims": 0}, ValueError, "max_claims must be an int >= 1"),
        ({"schema": "Bad-Name"}, ValueError, "schema must be a lower-case"),
        ({"schema": "pg_catalog"}, ValueError, "schema must be"),
        ({"schema": None}, TypeError, "schema must be a str"),
        ({"codec": object()}, TypeError, "codec must have"),
        ({"statement_timeout": -1}, ValueError, "statement_timeout"),
        ({"max_batch": 0}, ValueError, "max_batch"),
    ],
)
def test_bad_arguments_are_refused(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    """Bad constructor arguments: a TypeError or ValueError naming the argument."""
    kwargs = {"dsn": "dbname=x", **kwargs}
    with pytest.raises(error, match=match):
        trio_sagas.PostgresJournal(**kwargs)


async def test_a_lapsed_run_stops_and_another_worker_rolls_it_back(
    pg_server: PgServer,
) -> None:
    """run_scene on worker A loses its lease mid-step: A runs no undo and raises;
    recover() on worker B claims the run (epoch 2) and compensates it."""
    schema = pg_server.new_schema()
    undone: list[str] = []
    started = trio.Event()

    async def do(ctx: trio_sagas.StepContext, state: Any) -> None:
        pass

    async def slow(ctx: trio_sagas.StepContext, state: Any) -> None:
        started.set()
        await trio.sleep_forever()

    async def undo(ctx: trio_sagas.StepContext, state: Any) -> None:
        undone.append(ctx.name)

    scene = trio_sagas.Scene(
        "order",
        saga=True,
        steps=[
            trio_sagas.Act("reserve", run=do, compensate=undo),
            trio_sagas.Act("charge", run=slow, compensate=undo),
        ],
    )
    with trio.fail_after(GUARD):
        async with (
            journal(pg_server, schema, lease=1.0) as a,
            journal(pg_server, schema, lease=1.0) as b,
        ):
            async with trio.open_nursery() as nursery:

                async def run_on_a() -> None:
                    with pytest.raises(trio_sagas.RunClaimedError, match="lease"):
                        await trio_sagas.run_scene(scene, {}, journal=a, run_id="o")

                nursery.start_soon(run_on_a)
                await started.wait()
                await b.expire_worker(a.worker_id)
            assert undone == []
            report = await trio_sagas.recover(b, scenes={"order": scene})
            assert [r.status for r in report.results] == [trio_sagas.Status.FAILED]
            record = await b.get_run("o")
            assert record is not None
            assert (record.status, record.epoch) == (RunStatus.COMPENSATED, 2)
            assert sorted(undone) == ["charge", "reserve"]


async def test_lapsed_worker_registers_anew(pg_server: PgServer) -> None:
    """A lapsed lease is never revived: the next use registers a new worker id."""
    schema = pg_server.new_schema()
    with trio.fail_after(GUARD):
        async with journal(pg_server, schema) as a, journal(pg_server, schema) as b:
            first = a.worker_id
            await b.expire_worker(first)
            fence = await a.create_run("r2", scene="s", state=b"{}")
            assert a.worker_id == fence.worker != first
            ids = {w.worker_id: w for w in await b.workers()}
            assert ids[first].expires_at <= ids[fence.worker].started_at
            await a.append(fence, entries("r2", 0))


async def test_virtual_clock_arms_no_local_deadline(
    pg_server: PgServer, mock_clock: trio.testing.MockClock
) -> None:
    """Under a virtual clock trio time is not the server's: no local deadline
    is armed, so virtual time many leases on in a held scope cancels nothing.

    The clock is jumped by hand (no autojump): an autojump clock leaps to the
    next deadline -- the test's own hang guard -- whenever the loop idles
    while a statement runs in its thread, which a loaded machine made this
    test do. The lease is long in real time, so it cannot lapse meanwhile.
    """
    schema = pg_server.new_schema()
    async with journal(pg_server, schema, lease=60.0) as j:
        async with j.hold() as scope:
            assert scope.deadline == math.inf
            fence = await j.create_run("r", scene="s", state=b"{}")
            with scope:
                mock_clock.jump(100 * 60.0)
                await trio.lowlevel.checkpoint()
                await j.append(fence, entries("r", 0))
        assert not scope.cancelled_caught
        assert [e.seq for e in await j.events("r")] == [0]


async def test_outside_cancellation_is_a_bare_cancelled(pg_server: PgServer) -> None:
    """Cancelling around the journal's block, or a hold() block, raises a plain
    trio.Cancelled through them (never a group), and the worker row is gone."""
    schema = pg_server.new_schema()
    with trio.fail_after(GUARD):
        with trio.move_on_after(0.3) as outer:
            async with journal(pg_server, schema) as j:
                await trio.sleep(10)
        assert outer.cancelled_caught
        loose = journal(pg_server, schema)
        with trio.move_on_after(0.3) as inner:
            async with loose.hold():
                await trio.sleep(10)
        assert inner.cancelled_caught
        assert [w.worker_id for w in await loose.workers()] == [loose.worker_id]
        await loose.aclose()
        assert j.worker_id == ""


@pytest.mark.parametrize("entered", [True, False])
async def test_outside_cancel_rollback_longer_than_the_lease_completes(
    pg_server: PgServer, entered: bool
) -> None:
    """A run cancelled from outside rolls back shielded; the heartbeat is
    shielded too, so an undo longer than the lease still commits COMPENSATED."""
    schema = pg_server.new_schema()
    started = trio.Event()

    async def do(ctx: trio_sagas.StepContext, state: Any) -> None:
        pass

    async def block(ctx: trio_sagas.StepContext, state: Any) -> None:
        started.set()
        await trio.sleep_forever()

    async def slow_undo(ctx: trio_sagas.StepContext, state: Any) -> None:
        await trio.sleep(1.5)  # three times the lease

    scene = trio_sagas.Scene(
        "order",
        saga=True,
        steps=[
            trio_sagas.Act("a", run=do, compensate=slow_undo),
            trio_sagas.Act("b", run=block),
        ],
    )
    j = journal(pg_server, schema, lease=0.5)
    with trio.fail_after(GUARD):
        async with contextlib.AsyncExitStack() as stack:
            if entered:
                await stack.enter_async_context(j)
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    with pytest.raises(trio.Cancelled):
                        await trio_sagas.run_scene(scene, {}, journal=j, run_id="r")

                nursery.start_soon(run)
                await started.wait()
                nursery.cancel_scope.cancel()
            record = await j.get_run("r")
            assert record is not None
            assert record.status is RunStatus.COMPENSATED
            kinds = [e.kind for e in await j.events("r")]
            assert kinds.count("CompensationStepCompleted") == 1
        if not entered:
            await j.aclose()


@pytest.mark.parametrize("lost", ["after commit", "before commit"])
async def test_create_run_outcome_unknown_is_settled(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    """create_run (group-committed with appends) whose connection drops: a
    creation that landed is found by the reread, one that did not is sent
    again; either way the run exists once, at epoch 1, held by its creator."""
    from trio_sagas._journal import _pg_resolve

    schema = pg_server.new_schema()
    real = _pg_resolve._write
    calls = [0]

    def drop_once(statement: str, params: Any, conn: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            if lost == "after commit":
                real(statement, params, conn)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(statement, params, conn)

    with trio.fail_after(GUARD):
        async with journal(pg_server, schema) as j:
            await j.workers()  # migrated and registered before the fault
            monkeypatch.setattr(_pg_resolve, "_write", drop_once)
            fence = await j.create_run("r", scene="s", state=b"{}")
            assert (fence.worker, fence.epoch) == (j.worker_id, 1)
            assert calls == [1 if lost == "after commit" else 2]
            await j.append(fence, entries("r", 0))
            record = await j.get_run("r")
            assert record is not None
            assert (record.epoch, record.last_seq) == (1, 0)


async def test_bytes_and_text_survive_the_batch_encoding(pg_server: PgServer) -> None:
    """States, values and texts of every byte and character go through the
    JSON-encoded batch statement unchanged (bytes travel as hex)."""
    schema = pg_server.new_schema()
    state = bytes(range(256))
    value = b"\x00\xff\\x00'\""
    step = "s/ä ✓ \"quoted\" \\ 'tick'"
    with trio.fail_after(GUARD):
        async with journal(pg_server, schema) as j:
            fence = await j.create_run("r ✓", scene="scène", state=state)
            entry = JournalEntry(
                "r ✓", 0, "ActCompleted", step, 1 / 3, {"k": "v\n\t"}, value
            )
            await j.append(fence, [entry], state=state[::-1])
            record = await j.get_run("r ✓")
            assert record is not None
            assert (record.scene, record.state) == ("scène", state[::-1])
            (back,) = await j.events("r ✓")
            assert (back.step, back.at, back.data, back.value) == (
                step,
                1 / 3,
                {"k": "v\n\t"},
                value,
            )


class ScriptedLeases:
    """register/renew for the shared LeaseKeeper; renew waits for the test."""

    def __init__(self) -> None:
        self.registered = 0
        self.renewals: list[float] = []
        self.answer: bool | Exception = True
        self.gate: trio.Event | None = None

    async def register(self) -> str:
        self.registered += 1
        return f"w{self.registered}"

    async def renew(self, worker_id: str) -> bool:
        self.renewals.append(trio.current_time())
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_keeper_ignores_a_renewal_raced_by_its_own_give_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A renewal in flight when a write gave its id up (PostgreSQL's case: the
    server refused create_run) moves neither the new id's deadline nor scopes."""
    from trio_sagas._saga._lease import LeaseKeeper

    fake = ScriptedLeases()
    keeper = LeaseKeeper(9.0, fake.register, fake.renew)
    with trio.fail_after(GUARD):
        assert await keeper.ensure() == "w1"
        fake.gate = trio.Event()
        async with trio.open_nursery() as nursery:
            await trio.sleep(1)
            nursery.start_soon(keeper.renew_once)  # sent at t=1 for w1
            await trio.sleep(1)
            await keeper.abandon("w1", "the server refused create_run")
            assert await keeper.ensure() == "w2"  # registered at t=2
            fake.gate.set()
        assert keeper.worker_id == "w2"
        assert keeper.deadline == 2.0 + 9.0 - 0.9  # w2's own, not w1's renewal's


def last_error(keeper: Any) -> Exception | None:
    """The keeper's last renewal error (read anew: no narrowing across awaits)."""
    error: Exception | None = keeper.last_error
    return error


async def test_keeper_retries_a_failed_renewal_sooner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The heartbeat renews every lease/3, and lease/10 after a renewal failed
    (kept as last_error until one succeeds)."""
    from trio_sagas._saga._lease import LeaseKeeper

    fake = ScriptedLeases()
    fake.answer = OSError("no route")
    keeper = LeaseKeeper(30.0, fake.register, fake.renew)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.heartbeat)
            await trio.sleep(14)
            assert fake.renewals == [10.0, 13.0]
            assert isinstance(last_error(keeper), OSError)
            fake.answer = True
            await trio.sleep(3)
            assert last_error(keeper) is None
            await trio.sleep(10)
            keeper.stop()
        assert fake.renewals == [10.0, 13.0, 16.0, 26.0]


async def test_create_run_cancelled_while_queued_creates_nothing(
    pg_server: PgServer,
) -> None:
    """A create_run still queued for the group commit when its caller is
    cancelled never happens; one a leader already took completes."""
    schema = pg_server.new_schema()
    created: list[str] = []

    async def create(j: trio_sagas.PostgresJournal, run_id: str) -> None:
        await j.create_run(run_id, scene="s", state=b"{}")
        created.append(run_id)

    with trio.fail_after(GUARD):
        async with journal(pg_server, schema) as j:
            await j.workers()  # migrated and registered
            await j._writes.limiter.acquire()  # the leader's batch waits for it
            async with trio.open_nursery() as nursery:
                nursery.start_soon(create, j, "a")
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(create, j, "b")
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
                j._writes.limiter.release()
            # "a" was taken: its caller gets the verdict (the cancellation
            # comes at its next checkpoint); "b" was withdrawn.
            assert created == ["a"]
            assert [r.run_id for r in await j.runs()] == ["a"]
            await j.create_run("b", scene="s", state=b"{}")
