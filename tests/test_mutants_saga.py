"""Direct tests for the durable undo scope that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import trio
import trio.testing

import trio_sagas
from trio_sagas import (
    JournalEntry,
    JSONCodec,
    RunDamagedError,
    RunRecord,
    RunStatus,
    Status,
    durable_undo,
    run_worker,
)
from trio_sagas._saga._claims import claim_and_load
from trio_sagas._saga._durable import DurableScope
from trio_sagas._saga._events import SagaEvent
from trio_sagas._saga._lease import LeaseKeeper

from .helpers import Declined
from .memory_journal import MemoryJournal

LOG: list[tuple[float, str]] = []


@durable_undo("mutants-release")
async def release(label: str) -> None:
    await trio.sleep(1)
    LOG.append((trio.current_time(), label))


@durable_undo("mutants-broken")
async def broken(label: str) -> None:
    LOG.append((trio.current_time(), f"fail {label}"))
    raise Declined(label)


class RecordingSink:
    """Notes every journal event and every settle; a settle takes half a second."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def emit(self, event_type: type[SagaEvent], at: float, **fields: Any) -> None:
        self.calls.append((event_type.__name__, at, fields["index"]))

    async def settle(self) -> None:
        await trio.sleep(0.5)
        self.calls.append(("settle", trio.current_time()))


async def test_registrations_are_numbered_one_by_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each registration takes the next journal index (0, 1, 2; after a restored 5, 6)."""
    sink = RecordingSink()
    scope = DurableScope("order/charge", sink)
    for label in "abc":
        scope.register(release, label)
    scope.restore(5, release, ("d",), None)
    scope.register(release, "e")
    assert [c[2] for c in sink.calls] == [0, 1, 2, 6]


async def test_each_completed_undo_is_settled_before_the_next_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """run() journals each success and waits for it to be durable before the next undo."""
    LOG.clear()
    sink = RecordingSink()
    scope = DurableScope("order/charge", sink)
    scope.register(release, "a")
    scope.register(release, "b")
    sink.calls.clear()
    with trio.fail_after(10):
        report = await scope.run()
    assert [(o.name, o.status) for o in report.outcomes] == [
        ("mutants-release", Status.SUCCEEDED),
        ("mutants-release", Status.SUCCEEDED),
    ]
    assert LOG == [(1.0, "b"), (2.5, "a")]
    assert sink.calls == [
        ("CompensationActionCompleted", 1.0, 1),
        ("settle", 1.5),
        ("CompensationActionCompleted", 2.5, 0),
        ("settle", 3.0),
    ]


async def test_a_failed_undo_is_not_journaled_as_completed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An undo that fails writes no CompensationActionCompleted (a recovery must retry it)."""
    LOG.clear()
    sink = RecordingSink()
    scope = DurableScope("order/charge", sink)
    scope.register(release, "a")
    scope.register(broken, "b")
    sink.calls.clear()
    with trio.fail_after(10):
        report = await scope.run()
    assert [o.status for o in report.outcomes] == [Status.FAILED, Status.SUCCEEDED]
    assert sink.calls == [("CompensationActionCompleted", 1.0, 0), ("settle", 1.5)]


async def test_without_a_sink_run_journals_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A durable scope with no sink runs its undos and reports them."""
    LOG.clear()
    scope = DurableScope("order/charge", None)
    scope.register(release, "a")
    with trio.fail_after(10):
        report = await scope.run()
    assert [o.status for o in report.outcomes] == [Status.SUCCEEDED]
    assert LOG == [(1.0, "a")]


async def test_clear_forgets_the_journal_indexes_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After clear(), forgetting a cleared index does nothing and the new undo keeps its index."""
    LOG.clear()
    sink = RecordingSink()
    scope = DurableScope("order/charge", sink)
    scope.register(release, "a")
    scope.register(release, "b")
    scope.clear()
    scope.register(release, "c")
    scope.forget(0)
    assert len(scope) == 1
    sink.calls.clear()
    with trio.fail_after(10):
        await scope.run()
    assert LOG == [(1.0, "c")]
    assert sink.calls == [("CompensationActionCompleted", 1.0, 2), ("settle", 1.5)]


def test_a_run_record_starts_at_epoch_zero_never_claimed() -> None:
    """A RunRecord built without epoch/claims is at epoch 0 with 0 claims (a fresh run)."""
    record = RunRecord("r-1", "order", RunStatus.RUNNING, None, "w-1", 1.0, 2.0, -1)
    assert (record.epoch, record.claims, record.worker) == (0, 0, "w-1")


def test_json_codec_takes_callable_hooks_and_refuses_nan() -> None:
    """JSONCodec accepts callable hooks (and uses them) and refuses NaN."""
    codec = JSONCodec(default=lambda value: sorted(value), object_hook=dict)
    assert codec.decode(codec.encode({"tags": {"b", "a"}})) == {"tags": ["a", "b"]}
    with pytest.raises(ValueError, match="JSON compliant"):
        JSONCodec().encode(math.nan)


class FakeLeases:
    """register/renew for a LeaseKeeper: numbered worker ids, scripted renewals."""

    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, float]] = []

    async def register(self) -> str:
        self.calls.append(("register", trio.current_time()))
        return f"w{sum(1 for c in self.calls if c[0] == 'register')}"

    async def renew(self, worker_id: str) -> bool:
        self.calls.append((f"renew {worker_id}", trio.current_time()))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_fresh_renews_a_lease_whose_local_deadline_passed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """fresh() after the local deadline gives the id up and registers anew (never revives it)."""
    fake = FakeLeases(True)
    keeper = LeaseKeeper(10.0, fake.register, fake.renew)
    with trio.fail_after(100):
        assert await keeper.ensure() == "w1"
        assert keeper.deadline == 9.0
        await trio.sleep(9.5)
        assert await keeper.fresh() == "w2"
    assert fake.calls == [("register", 0.0), ("register", 9.5)]
    assert keeper.deadline == 18.5


async def test_fresh_exactly_at_the_local_deadline_gives_the_id_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The local deadline is the first instant the id is no longer used:
    fresh() called exactly then registers a new id (the hold scopes' deadline
    has fired at that instant too)."""
    fake = FakeLeases()
    keeper = LeaseKeeper(10.0, fake.register, fake.renew)
    with trio.fail_after(100):
        assert await keeper.ensure() == "w1"
        await trio.sleep_until(keeper.deadline)
        assert trio.current_time() == 9.0
        assert await keeper.fresh() == "w2"
    assert fake.calls == [("register", 0.0), ("register", 9.0)]


async def test_a_failed_renewal_is_logged_and_moves_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that raises logs a warning and leaves the deadline as it was."""
    caplog.set_level(logging.DEBUG, logger="trio_sagas")
    fake = FakeLeases(OSError("disk gone"))
    keeper = LeaseKeeper(10.0, fake.register, fake.renew)
    with trio.fail_after(100):
        await keeper.ensure()
        await trio.sleep(5)
        await keeper.renew_once()
    assert keeper.deadline == 9.0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "lease renewal of worker 'w1' failed: OSError('disk gone')"
    ]


async def test_a_lapsed_lease_is_logged_and_registered_anew(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal answered 'lapsed' logs a warning and registers a new worker id."""
    caplog.set_level(logging.DEBUG, logger="trio_sagas")
    fake = FakeLeases(False)
    keeper = LeaseKeeper(10.0, fake.register, fake.renew)
    with trio.fail_after(100):
        await keeper.ensure()
        await trio.sleep(5)
        await keeper.renew_once()
    assert keeper.worker_id == "w2"
    assert keeper.deadline == 14.0
    assert fake.calls == [("register", 0.0), ("renew w1", 5.0), ("register", 5.0)]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "lease of worker 'w1' given up: the journal found it lapsed"
    ]


class NoClaims(MemoryJournal):
    """A journal a worker must not reach: claiming fails the test at once (no busy loop)."""

    async def claim_batch(self, *, limit: int, stale_after: float = 0.0) -> Any:
        raise AssertionError("the worker started polling")


@pytest.mark.parametrize("poll", [0, -1.0, math.inf])
async def test_run_worker_refuses_a_bad_poll_before_starting(
    autojump_clock: trio.testing.MockClock, poll: float
) -> None:
    """run_worker(poll=0 / negative / inf) is a ValueError naming 'poll', before any claim."""
    journal = NoClaims(lease=3.0)
    with trio.fail_after(10), pytest.raises(ValueError, match="poll"):
        await run_worker(journal, [], poll=poll)
    assert trio.current_time() == 0.0


async def test_an_outside_cancel_of_a_durable_run_logs_no_journal_failure(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A durable run cancelled from outside (its journal fine) raises a bare
    Cancelled and logs no "the journal failed" error."""

    async def slow(ctx: trio_sagas.StepContext, state: object) -> None:
        await trio.sleep(10)

    scene = trio_sagas.Scene("s", [trio_sagas.Act("a", slow)], saga=True)
    caplog.set_level(logging.ERROR, logger="trio_sagas")
    async with MemoryJournal() as journal:
        with trio.move_on_after(1) as scope:
            await trio_sagas.run_scene(scene, {}, journal=journal, run_id="r1")
    assert scope.cancelled_caught
    assert [
        r.getMessage() for r in caplog.records if "journal failed" in r.getMessage()
    ] == []


@pytest.mark.parametrize("steps", ["ab", b"ab"])
def test_scene_steps_given_as_text_are_refused_as_such(steps: object) -> None:
    """Scene(name, "ab") is a TypeError saying steps must be a sequence of
    steps (text is iterable, but never a list of steps)."""
    with pytest.raises(TypeError, match="steps must be a sequence of steps"):
        trio_sagas.Scene("s", steps)  # type: ignore[arg-type]


class Unbatched(MemoryJournal):
    """A journal without the batched calls (as PostgreSQL): recovery takes
    the per-run fallback. Run "bad"'s entries cannot be read."""

    claim_and_load = None  # type: ignore[assignment]
    read_events = None  # type: ignore[assignment]

    async def events(self, run_id: str) -> tuple[JournalEntry, ...]:
        if run_id == "bad":
            raise RunDamagedError(f"run {run_id!r}: seq 0 is not JSON", run_id)
        return await super().events(run_id)


async def test_the_claim_fallback_leaves_a_damaged_run_alone_with_a_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Without claim_and_load, a claimed run whose entries cannot be read is
    left out with exactly one warning naming it; the good runs come back."""
    caplog.set_level(logging.WARNING, logger="trio_sagas")
    dead = Unbatched()
    alive = Unbatched(store=dead.store)
    with trio.fail_after(10):
        async with dead, alive:
            for run_id in ("first", "bad", "last"):
                await dead.create_run(run_id, scene="s", state=b"{}")
            assert await alive.expire_worker(dead.worker_id)
            got = await claim_and_load(alive, limit=5)
    assert [c.record.run_id for c in got] == ["first", "last"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "recovery leaves a damaged run alone: run 'bad': seq 0 is not JSON"
    ]


class VanishesAfterClaim(Unbatched):
    """The fallback's get_run finds nothing for "gone" after its claim (the
    row deleted by hand in between)."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        if run_id == "gone":
            return None
        return await super().get_run(run_id)


async def test_the_claim_fallback_leaves_out_a_run_that_vanished_after_its_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without claim_and_load, by run id: a run claimed but then not found is
    left out (no record to go with its fence); the others come back."""
    dead = VanishesAfterClaim()
    alive = VanishesAfterClaim(store=dead.store)
    with trio.fail_after(10):
        async with dead, alive:
            for run_id in ("first", "gone", "last"):
                await dead.create_run(run_id, scene="s", state=b"{}")
            assert await alive.expire_worker(dead.worker_id)
            got = await claim_and_load(alive, ["first", "gone", "last"], limit=5)
    assert [c.record.run_id for c in got] == ["first", "last"]


def test_a_copy_of_a_durable_undo_is_not_one() -> None:
    """register_compensation refuses a functools.wraps wrapper of a durable
    undo: it carries the name, but a recovery would run the original."""
    import functools

    @functools.wraps(release)
    async def wrapper(label: str) -> None:
        await release(label)

    assert getattr(wrapper, "__trio_sagas_undo__", None) == "mutants-release"
    scope = DurableScope("s/a", None)
    with pytest.raises(TypeError, match="cannot be journaled"):
        scope.register(wrapper, "x")
    scope.register(release, "x")  # the original is taken
