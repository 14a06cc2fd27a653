"""Ignition services: ordered shutdown, values handed to dependents, retried checks,
bare Cancelled from outside, and FAIL_FAST on timeouts and cancelled scopes."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from trio_sagas import (
    CancellationScope,
    CancelReason,
    ExecutionMode,
    HedgePolicy,
    Ignition,
    IgnitionPolicy,
    Outcome,
    RetryPolicy,
    StagePolicy,
    Status,
)


class Boom(Exception):
    """The failure the test signals raise."""


async def ok(delay: float, value: object = None) -> object:
    await trio.sleep(delay)
    return value


class Journal:
    """A stand-in for a journal: writes are refused once it is closed."""

    def __init__(self) -> None:
        self.closed = False
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        if self.closed:
            raise RuntimeError(f"journal is closed: {text!r} lost")
        self.writes.append(text)


def recorder() -> tuple[list[tuple[float, str]], Any]:
    log: list[tuple[float, str]] = []

    def note(what: str) -> None:
        log.append((trio.current_time(), what))

    return log, note


# -- ordered shutdown ----------------------------------------------------------


async def test_shutdown_stops_dependents_before_their_dependency(
    autojump_clock: MockClock,
) -> None:
    """Cancelling the nursery: the sagas' cleanup runs and ends before the journal's starts."""
    log, note = recorder()

    @asynccontextmanager
    async def open_journal() -> AsyncIterator[Journal]:
        await trio.sleep(0.5)
        journal = Journal()
        note("journal open")
        try:
            yield journal
        finally:
            note("journal closing")
            with trio.CancelScope(shield=True):
                await trio.sleep(0.1)
            journal.closed = True
            note("journal closed")

    async def saga_service(
        *,
        deps: Mapping[str, Any],
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        journal: Journal = deps["journal"]
        task_status.started("sagas ready")
        try:
            await trio.sleep_forever()
        finally:
            # A rollback that writes to the journal while shutting down.
            note("sagas rolling back")
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
                journal.write("compensated")
            note("sagas stopped")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
            ignition.add_context("journal", open_journal)
            ignition.add("sagas", saga_service, depends_on=["journal"])
            result = await ignition.run(nursery=nursery)
            assert result.ok
            assert result.outcomes["sagas"].value == "sagas ready"
            journal = result.outcomes["journal"].value
            assert isinstance(journal, Journal)
            await trio.sleep(10)
            nursery.cancel_scope.cancel(reason="shutting down")
    assert log == [
        (0.5, "journal open"),
        (10.5, "sagas rolling back"),
        (11.5, "sagas stopped"),
        (11.5, "journal closing"),
        (11.6, "journal closed"),
    ]
    assert journal.writes == ["compensated"]
    assert trio.current_time() == 11.6


async def test_shutdown_order_follows_the_graph_not_the_add_order(
    autojump_clock: MockClock,
) -> None:
    """a <- b <- c, and d beside them: c stops, then b, then a; d stops at once."""
    log, note = recorder()

    def service(name: str, cleanup: float) -> Any:
        async def run(*, task_status: trio.TaskStatus[str]) -> None:
            task_status.started(name)
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(cleanup)
                note(f"{name} stopped")

        return run

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
            ignition.add("c", service("c", 1), depends_on=["b"])
            ignition.add("a", service("a", 1))
            ignition.add("d", service("d", 0.5))
            ignition.add("b", service("b", 1), depends_on=["a"])
            assert (await ignition.run(nursery=nursery)).ok
            nursery.cancel_scope.cancel()
    assert log == [
        (0.5, "d stopped"),
        (1, "c stopped"),
        (2, "b stopped"),
        (3, "a stopped"),
    ]


@pytest.mark.parametrize("mode", [ExecutionMode.SEQUENTIAL, ExecutionMode.STAGED])
async def test_shutdown_in_reverse_start_order_without_a_graph(
    autojump_clock: MockClock, mode: ExecutionMode
) -> None:
    """SEQUENTIAL and STAGED: later services stop before earlier ones."""
    log, note = recorder()

    async def service(name: str, *, task_status: trio.TaskStatus[str]) -> None:
        task_status.started(name)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
            note(f"{name} stopped")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ignition = Ignition(mode=mode)
            for stage, name in enumerate(("first", "second", "third")):
                ignition.add(
                    name,
                    service,
                    name,
                    stage=stage if mode is ExecutionMode.STAGED else 0,
                )
            assert (await ignition.run(nursery=nursery)).ok
            nursery.cancel_scope.cancel()
    assert log == [(1, "third stopped"), (2, "second stopped"), (3, "first stopped")]


async def test_shutdown_reason_reaches_the_service(autojump_clock: MockClock) -> None:
    """The service sees the reason the nursery was cancelled with."""
    reasons: list[str | None] = []

    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            reasons.append(exc.reason)
            raise

    async with trio.open_nursery() as nursery:
        ignition = Ignition()
        ignition.add("svc", service)
        await ignition.run(nursery=nursery)
        nursery.cancel_scope.cancel(reason="deploy finished")
    assert reasons == ["deploy finished"]


async def test_service_scope_cancel_is_not_delayed_by_dependents(
    autojump_clock: MockClock,
) -> None:
    """Cancelling a service's own scope stops it at once, dependents or not."""
    log, note = recorder()
    scope = CancellationScope("db")

    async def service(name: str, *, task_status: trio.TaskStatus[str]) -> None:
        task_status.started(name)
        try:
            await trio.sleep_forever()
        finally:
            note(f"{name} stopped")

    async with trio.open_nursery() as nursery:
        ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
        ignition.add("db", service, "db", scope=scope)
        ignition.add("api", service, "api", depends_on=["db"])
        await ignition.run(nursery=nursery)
        await trio.sleep(1)
        scope.cancel()
        await trio.sleep(1)
        note("api still up")
        nursery.cancel_scope.cancel()
    assert log == [(1, "db stopped"), (2, "api still up"), (2, "api stopped")]


async def test_service_failing_in_its_cleanup_is_reported(
    autojump_clock: MockClock,
) -> None:
    """A service that raises while being stopped: the caller's nursery sees that error."""

    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            raise Boom("cleanup failed")

    with pytest.RaisesGroup(pytest.RaisesExc(Boom, match="cleanup failed")):
        async with trio.open_nursery() as nursery:
            ignition = Ignition()
            ignition.add("svc", service)
            await ignition.run(nursery=nursery)
            nursery.cancel_scope.cancel()


async def test_context_service_value_and_bad_factories(
    autojump_clock: MockClock,
) -> None:
    """add_context: ready with __aenter__'s value; a factory returning no context fails."""

    @asynccontextmanager
    async def pool(size: int) -> AsyncIterator[list[int]]:
        yield list(range(size))

    def not_a_context() -> object:
        return 42

    async with trio.open_nursery() as nursery:
        ignition = Ignition()
        ignition.add_context("pool", pool, 3, timeout=1)
        ignition.add_context("broken", not_a_context)  # type: ignore[arg-type]
        result = await ignition.run(nursery=nursery)
        nursery.cancel_scope.cancel()
    assert result.outcomes["pool"].value == [0, 1, 2]
    broken = result.outcomes["broken"]
    assert broken.status is Status.FAILED
    assert isinstance(broken.error, TypeError)
    assert "must return an async context manager, got 42" in str(broken.error)


def test_context_and_service_validation() -> None:
    """add_context refuses async factories; a service refuses a retry policy."""

    async def factory() -> None:
        pass

    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()

    ignition = Ignition()
    with pytest.raises(TypeError, match="factory must be a sync callable"):
        ignition.add_context("x", factory)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="factory must be a callable, got 3"):
        ignition.add_context("x", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry given for the service 'svc'"):
        ignition.add("svc", service, retry=RetryPolicy())
    with pytest.raises(ValueError, match="retried, never hedged"):
        ignition.add("x", factory, retry=RetryPolicy(hedge=HedgePolicy()))
    assert ignition.names == ()


# -- values handed to dependents ----------------------------------------------------


async def test_dependents_receive_their_dependencies_values(
    autojump_clock: MockClock,
) -> None:
    """A signal with a deps parameter gets its dependencies' values by name, read-only."""
    seen: list[Mapping[str, Any]] = []

    async def report(*, deps: Mapping[str, Any]) -> str:
        seen.append(deps)
        return f"{deps['database']}+{deps['cache']}"

    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    ignition.add("database", ok, 1, "pg")
    ignition.add("cache", ok, 2, "redis")
    ignition.add("report", report, depends_on=["database", "cache"])
    ignition.add("alone", report)
    result = await ignition.run()
    assert result.outcomes["report"].value == "pg+redis"
    assert [dict(deps) for deps in seen] == [{}, {"database": "pg", "cache": "redis"}]
    with pytest.raises(TypeError):
        seen[1]["x"] = 1  # type: ignore[index]


# -- retried warm-up checks --------------------------------------------------------


async def test_retry_a_failing_warm_up_check(autojump_clock: MockClock) -> None:
    """A check failing twice succeeds on the third try, after backoffs on the trio clock."""
    tries: list[float] = []

    async def check() -> str:
        tries.append(trio.current_time())
        await trio.sleep(0.5)
        if len(tries) < 3:
            raise ConnectionError("not yet")
        return "warm"

    ignition = Ignition()
    ignition.add(
        "cache",
        check,
        retry=RetryPolicy(max_attempts=5, initial_backoff=1, multiplier=2),
    )
    result = await ignition.run()
    outcome = result.outcomes["cache"]
    assert outcome.status is Status.SUCCEEDED
    assert outcome.value == "warm"
    records = outcome.attributes["attempts"]
    assert isinstance(records, tuple)
    assert [record.started_at for record in records] == [0, 1.5, 4.0]
    assert tries == [0, 1.5, 4.0]
    assert (outcome.started_at, outcome.finished_at) == (0, 4.5)


async def test_retry_exhausted_fails_with_the_last_error(
    autojump_clock: MockClock,
) -> None:
    """Out of tries: FAILED with the last error; dependents are skipped."""
    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1
        raise Boom(f"try {calls}")

    ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
    ignition.add("cache", check, retry=RetryPolicy(max_attempts=2, initial_backoff=1))
    ignition.add("api", ok, 1, depends_on=["cache"])
    result = await ignition.run()
    cache = result.outcomes["cache"]
    assert cache.status is Status.FAILED
    assert str(cache.error) == "try 2"
    tries = cache.attributes["attempts"]
    assert isinstance(tries, tuple)
    assert len(tries) == 2
    assert cache.finished_at == 1
    assert result.outcomes["api"].status is Status.SKIPPED


async def test_retry_bounded_by_the_signal_timeout(autojump_clock: MockClock) -> None:
    """The signal's timeout bounds every try and backoff together (hard: cancelled)."""
    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        raise Boom("down")

    ignition = Ignition(cancel_individual_on_timeout=True)
    ignition.add(
        "cache",
        check,
        timeout=3.5,
        retry=RetryPolicy(max_attempts=10, initial_backoff=1, multiplier=1),
    )
    result = await ignition.run()
    outcome = result.outcomes["cache"]
    assert outcome.status is Status.TIMED_OUT
    assert outcome.cause is not None
    assert outcome.cause.reason is CancelReason.STEP_TIMEOUT
    assert outcome.finished_at == 3.5
    assert calls == 2


# -- FAIL_FAST stops at any unsuccessful signal -------------------------------------


@pytest.mark.parametrize("with_nursery", [False, True])
@pytest.mark.parametrize("hard", [False, True])
async def test_fail_fast_stops_at_a_timeout(
    autojump_clock: MockClock, hard: bool, with_nursery: bool
) -> None:
    """FAIL_FAST: a signal that times out (soft or hard) stops the run like a failure."""
    ignition = Ignition(
        mode=ExecutionMode.DEPENDENCY_AWARE,
        policy=IgnitionPolicy.FAIL_FAST,
        cancel_individual_on_timeout=hard,
    )
    peer_ended: list[float] = []

    async def peer() -> None:
        try:
            await trio.sleep(5)
        finally:
            peer_ended.append(trio.current_time())

    ignition.add("slow", ok, 10, timeout=1)
    ignition.add("peer", peer)
    ignition.add("after", ok, 1, depends_on=["peer"])
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            result = await ignition.run(nursery=nursery if with_nursery else None)
            await trio.testing.wait_all_tasks_blocked()
            # The stopped peer was cancelled at once, in the caller's nursery too.
            assert peer_ended == [1]
            nursery.cancel_scope.cancel()
    statuses = {name: o.status for name, o in result.outcomes.items()}
    assert statuses == {
        "slow": Status.TIMED_OUT,
        "peer": Status.CANCELLED,
        "after": Status.SKIPPED,
    }
    for name in ("peer", "after"):
        cause = result.outcomes[name].cause
        assert cause is not None
        assert cause.reason is CancelReason.STEP_TIMEOUT
        assert cause.triggered_by == "slow"
    assert result.duration == 1
    assert trio.current_time() == 1


async def test_fail_fast_stops_at_a_cancelled_scope(autojump_clock: MockClock) -> None:
    """FAIL_FAST: a signal whose scope was cancelled stops the run (SCOPE_CANCELLED)."""
    bundle = CancellationScope("bundle")
    ignition = Ignition(mode=ExecutionMode.SEQUENTIAL, policy=IgnitionPolicy.FAIL_FAST)
    ignition.add("first", ok, 1)
    ignition.add("in-bundle", ok, 5, scope=bundle)
    ignition.add("last", ok, 1)

    async def operator() -> None:
        await trio.sleep(2)
        bundle.cancel(CancelReason.MANUAL, triggered_by="operator")

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(operator)
            result = await ignition.run()
    statuses = {name: o.status for name, o in result.outcomes.items()}
    assert statuses == {
        "first": Status.SUCCEEDED,
        "in-bundle": Status.CANCELLED,
        "last": Status.SKIPPED,
    }
    last = result.outcomes["last"].cause
    assert last is not None
    assert last.reason is CancelReason.SCOPE_CANCELLED
    assert last.triggered_by == "in-bundle"
    assert result.duration == 2


async def test_stage_fail_fast_stops_at_a_timeout(autojump_clock: MockClock) -> None:
    """StagePolicy.FAIL_FAST: a timed-out signal stops the stage at once."""
    ignition = Ignition(mode=ExecutionMode.STAGED, stage_policy=StagePolicy.FAIL_FAST)
    ignition.add("slow", ok, 10, timeout=1, stage=0)
    ignition.add("peer", ok, 5, stage=0)
    ignition.add("next", ok, 1, stage=1)
    with trio.fail_after(20):
        result = await ignition.run()
    assert [o.status for o in result.outcomes.values()] == [
        Status.TIMED_OUT,
        Status.CANCELLED,
        Status.SKIPPED,
    ]
    assert result.duration == 1


# -- cancelled from outside: a bare trio.Cancelled -------------------------------------


@pytest.mark.parametrize("with_nursery", [False, True])
async def test_outside_cancel_raises_a_bare_cancelled(
    autojump_clock: MockClock, with_nursery: bool
) -> None:
    """run() cancelled from outside raises trio.Cancelled itself, never a group of them."""
    caught: list[BaseException] = []

    async def main(nursery: trio.Nursery | None) -> None:
        ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE, global_timeout=None)
        ignition.add("a", ok, 10)
        ignition.add("b", ok, 10)
        ignition.add("c", ok, 1, depends_on=["a"])
        with trio.CancelScope() as scope:
            try:
                await ignition.run(nursery=nursery)
            except trio.Cancelled as exc:
                caught.append(exc)
                raise
        assert scope.cancelled_caught

    async def cancel_soon(scope: trio.CancelScope) -> None:
        await trio.sleep(1)
        scope.cancel(reason="operator pressed stop")

    with trio.fail_after(20):
        async with trio.open_nursery() as outer:
            with trio.CancelScope() as run_scope:
                outer.start_soon(cancel_soon, run_scope)
                async with trio.open_nursery() as signals:
                    await main(signals if with_nursery else None)
    assert len(caught) == 1
    assert type(caught[0]) is trio.Cancelled
    assert trio.current_time() == 1
    assert not math.isinf(trio.current_time())


async def test_a_service_cancelled_before_it_ran_does_not_hold_shutdown(
    autojump_clock: MockClock,
) -> None:
    """A dependent service stopped in the turn it was spawned: shutdown still ends."""
    log, note = recorder()

    async def service(name: str, *, task_status: trio.TaskStatus[str]) -> None:
        note(f"{name} starting")
        await trio.sleep(1)
        task_status.started(name)
        try:
            await trio.sleep_forever()
        finally:
            note(f"{name} stopped")

    def stop_after_base(finished: Outcome[Any], results: Mapping[str, Any]) -> bool:
        # Called once base is ready, after its dependent 'api' was spawned.
        return finished.name != "base"

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ignition = Ignition(
                mode=ExecutionMode.DEPENDENCY_AWARE, policy=stop_after_base
            )
            ignition.add("base", service, "base")
            ignition.add("api", service, "api", depends_on=["base"])
            result = await ignition.run(nursery=nursery)
            await trio.testing.wait_all_tasks_blocked()
            # Checked before the shutdown: on this bug the shutdown would wait,
            # shielded, for 'api' forever, which no fail_after can interrupt;
            # setting it here lets the test fail by name instead.
            stopped = ignition._signals["api"].stopped
            assert stopped is not None
            api_stopped = stopped.is_set()
            stopped.set()
            nursery.cancel_scope.cancel()
    assert api_stopped
    api = result.outcomes["api"]
    assert api.status is Status.CANCELLED
    assert api.started_at == 1
    assert log == [(0, "base starting"), (1, "base stopped")]


@st.composite
def service_dags(draw: st.DrawFn) -> list[tuple[list[int], int]]:
    """Services in topological order: (dependencies, cleanup seconds)."""
    size = draw(st.integers(1, 12))
    nodes = []
    for index in range(size):
        deps = (
            draw(st.lists(st.integers(0, index - 1), max_size=3, unique=True))
            if index
            else []
        )
        nodes.append((deps, draw(st.integers(0, 3))))
    return nodes


@settings(max_examples=100)
@given(dag=service_dags(), reverse=st.booleans())
def test_property_shutdown_respects_every_dependency(
    dag: list[tuple[list[int], int]], reverse: bool
) -> None:
    """Random service graphs: every dependent's cleanup ends before its dependency's starts."""
    began: dict[str, float] = {}
    ended: dict[str, float] = {}

    async def service(
        name: str, cleanup: int, *, task_status: trio.TaskStatus[str]
    ) -> None:
        task_status.started(name)
        try:
            await trio.sleep_forever()
        finally:
            began[name] = trio.current_time()
            with trio.CancelScope(shield=True):
                await trio.sleep(cleanup)
            ended[name] = trio.current_time()

    async def main() -> None:
        with trio.fail_after(1000):
            async with trio.open_nursery() as nursery:
                ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
                order = range(len(dag))
                for index in reversed(order) if reverse else order:
                    deps, cleanup = dag[index]
                    ignition.add(
                        f"s{index}",
                        service,
                        f"s{index}",
                        cleanup,
                        depends_on=[f"s{d}" for d in deps],
                    )
                assert (await ignition.run(nursery=nursery)).ok
                nursery.cancel_scope.cancel()

    trio.run(main, clock=MockClock(autojump_threshold=0))
    assert set(ended) == {f"s{index}" for index in range(len(dag))}
    for index, (deps, _) in enumerate(dag):
        for dep in deps:
            assert ended[f"s{index}"] <= began[f"s{dep}"]
    # Nothing waits longer than it must: each cleanup starts when its last
    # dependent ended (or at once).
    for index in range(len(dag)):
        dependents = [j for j, (deps, _) in enumerate(dag) if index in deps]
        expected = max((ended[f"s{j}"] for j in dependents), default=0)
        assert began[f"s{index}"] == expected


# -- cancelled at each await ----------------------------------------------------------


async def test_run_in_an_already_cancelled_scope_starts_nothing(
    autojump_clock: MockClock,
) -> None:
    """run() entered under a cancelled scope: a bare Cancelled, no signal ran."""
    ran: list[str] = []

    async def work() -> None:
        ran.append("work")

    ignition = Ignition()
    ignition.add("a", work)
    with trio.CancelScope() as scope:
        scope.cancel(reason="already shutting down")
        with pytest.raises(trio.Cancelled) as caught:
            await ignition.run()
        assert type(caught.value) is trio.Cancelled
        raise caught.value
    assert scope.cancelled_caught
    assert ran == []


async def test_fail_fast_during_a_retry_backoff_stops_the_retries(
    autojump_clock: MockClock,
) -> None:
    """A peer fails while a check waits to retry: it ends CANCELLED and is not tried again."""
    tries: list[float] = []

    async def flaky() -> None:
        tries.append(trio.current_time())
        raise ConnectionError("not yet")

    async def peer() -> None:
        await trio.sleep(1.5)
        raise Boom("peer down")

    ignition = Ignition(policy=IgnitionPolicy.FAIL_FAST)
    ignition.add(
        "flaky",
        flaky,
        retry=RetryPolicy(max_attempts=10, initial_backoff=1, multiplier=1),
    )
    ignition.add("peer", peer)
    with trio.fail_after(20):
        result = await ignition.run()
    flaky_outcome = result.outcomes["flaky"]
    assert flaky_outcome.status is Status.CANCELLED
    assert flaky_outcome.cause is not None
    assert flaky_outcome.cause.triggered_by == "peer"
    assert tries == [0, 1]
    assert trio.current_time() == 1.5


async def test_fail_fast_while_a_service_starts_stops_it(
    autojump_clock: MockClock,
) -> None:
    """A peer fails while a service is starting: the service is stopped and CANCELLED."""
    log, note = recorder()

    async def slow_service(*, task_status: trio.TaskStatus[None]) -> None:
        try:
            await trio.sleep(5)
            task_status.started()
            await trio.sleep_forever()
        finally:
            note("service cleaned up")

    async def peer() -> None:
        await trio.sleep(1)
        raise Boom("peer down")

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            ignition = Ignition(policy=IgnitionPolicy.FAIL_FAST)
            ignition.add("svc", slow_service)
            ignition.add("peer", peer)
            result = await ignition.run(nursery=nursery)
    svc = result.outcomes["svc"]
    assert svc.status is Status.CANCELLED
    assert svc.cause is not None
    assert svc.cause.reason is CancelReason.STEP_FAILED
    assert svc.cause.triggered_by == "peer"
    assert log == [(1, "service cleaned up")]
    assert trio.current_time() == 1


async def test_services_and_deps_are_recognised_through_wrappers(
    autojump_clock: MockClock,
) -> None:
    """task_status and deps are found behind functools.wraps decorators and partials."""

    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)

        return wrapper

    @logged
    async def service(*, task_status: trio.TaskStatus[str]) -> None:
        task_status.started("up")
        await trio.sleep_forever()

    async def uses(prefix: str, *, deps: Mapping[str, Any]) -> str:
        return prefix + str(deps["svc"])

    async with trio.open_nursery() as nursery:
        ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
        ignition.add("svc", service)
        ignition.add("user", functools.partial(uses, "is "), depends_on=["svc"])
        result = await ignition.run(nursery=nursery)
        nursery.cancel_scope.cancel()
    assert result.outcomes["svc"].value == "up"
    assert result.outcomes["user"].value == "is up"


async def test_retry_honours_the_policy_classifier(autojump_clock: MockClock) -> None:
    """A classifier calling an error non-retryable ends the check after one try."""
    import outcome as outcome_lib

    from trio_sagas import Classification

    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError("bad credentials")

    def classify(result: outcome_lib.Outcome[object]) -> Classification:
        if isinstance(result, outcome_lib.Error) and isinstance(
            result.error, PermissionError
        ):
            return Classification.NON_RETRYABLE
        return Classification.RETRYABLE

    ignition = Ignition()
    ignition.add("db", check, retry=RetryPolicy(max_attempts=5, classifier=classify))
    result = await ignition.run()
    db = result.outcomes["db"]
    assert db.status is Status.FAILED
    assert isinstance(db.error, PermissionError)
    assert calls == 1
    assert trio.current_time() == 0


async def test_several_observers_and_none(autojump_clock: MockClock) -> None:
    """observer= takes a sequence (each gets every event); a bad member is a TypeError."""
    first: list[str] = []
    second: list[str] = []
    ignition = Ignition(
        observer=[
            lambda event: first.append(type(event).__name__),
            lambda event: second.append(type(event).__name__),
        ]
    )
    ignition.add("a", ok, 1)
    await ignition.run()
    assert first == second == ["SignalStarted", "SignalCompleted", "IgnitionCompleted"]
    with pytest.raises(
        TypeError, match=r"observer\[1\] must be a callable or None, got 3"
    ):
        Ignition(observer=[print, 3])  # type: ignore[list-item]
    assert (
        repr(Ignition())
        == "<trio_sagas.Ignition PARALLEL IgnitionPolicy.BEST_EFFORT signals=0>"
    )


async def test_a_service_outlives_dependents_behind_a_finished_signal(
    autojump_clock: MockClock,
) -> None:
    """journal <- migrations (done) <- api: the journal still outlives the api."""
    log, note = recorder()

    async def service(
        name: str, cleanup: float, *, task_status: trio.TaskStatus[str]
    ) -> None:
        task_status.started(name)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(cleanup)
            note(f"{name} stopped")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            ignition = Ignition(mode=ExecutionMode.DEPENDENCY_AWARE)
            ignition.add("journal", service, "journal", 0)
            ignition.add("migrations", ok, 1, depends_on=["journal"])
            ignition.add("api", service, "api", 2, depends_on=["migrations"])
            assert (await ignition.run(nursery=nursery)).ok
            nursery.cancel_scope.cancel()
    assert log == [(3, "api stopped"), (3, "journal stopped")]
