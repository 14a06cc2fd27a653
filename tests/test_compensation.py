"""Compensation scopes, step contexts and SagaError."""

from __future__ import annotations

import functools
import math

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_sagas import (
    DEFAULT_COMPENSATION_TIMEOUT,
    AttemptRecord,
    BudgetKind,
    CancellationScope,
    CancelReason,
    Classification,
    CompensationPolicy,
    CompensationReport,
    CompensationScope,
    Outcome,
    RetryPolicy,
    SagaError,
    Status,
    StepContext,
)

from .helpers import run_virtual


class Log:
    """Records (time, label) pairs from undo actions."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, str]] = []

    async def undo(self, label: str, seconds: float = 1.0) -> str:
        await trio.sleep(seconds)
        self.entries.append((trio.current_time(), label))
        return f"undone {label}"

    async def fail(self, label: str) -> None:
        self.entries.append((trio.current_time(), f"fail {label}"))
        raise RuntimeError(f"cannot undo {label}")

    async def hang(self) -> None:
        await trio.sleep(math.inf)


def test_register_validates() -> None:
    """Sync callables and bad names are refused at registration."""
    scope = CompensationScope()

    def sync_undo() -> None:
        pass

    with pytest.raises(
        TypeError,
        match=r"fn must be an async function, got the sync callable "
        r"'test_register_validates\.<locals>\.sync_undo'",
    ):
        scope.register(sync_undo)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must be an async callable, got 3"):
        scope.register(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be a non-empty str, got ''"):
        scope.register(Log().undo, "x", name="")
    assert len(scope) == 0


def test_register_accepts_partials_and_async_callables() -> None:
    """functools.partial of an async function and objects with async __call__ work."""

    class Undo:
        async def __call__(self) -> None:
            pass

    scope = CompensationScope()
    scope.register(functools.partial(Log().undo, "a", seconds=2))
    scope.register(Undo())
    assert scope.names == (
        "Log.undo",
        "test_register_accepts_partials_and_async_callables.<locals>.Undo",
    )


def test_absorb_clear_len() -> None:
    """absorb moves actions keeping order; clear forgets; len/has_actions report."""
    log = Log()
    a, b = CompensationScope(), CompensationScope()
    a.register(log.undo, "1", name="one")
    b.register(log.undo, "2", name="two")
    b.register(log.undo, "3", name="three")
    a.absorb(b)
    assert a.names == ("one", "two", "three")
    assert (len(a), len(b), a.has_actions, b.has_actions) == (3, 0, True, False)
    with pytest.raises(ValueError, match="cannot absorb itself"):
        a.absorb(a)
    with pytest.raises(TypeError, match="other must be a CompensationScope"):
        a.absorb([])  # type: ignore[arg-type]
    a.clear()
    assert not a.has_actions
    assert repr(a) == "<trio_sagas.CompensationScope with 0 action(s)>"


def tried_once(start: float, end: float) -> dict[str, object]:
    """The attributes of an action that succeeded at its first try."""
    record = AttemptRecord(
        retry_index=0,
        hedge_index=0,
        attempt=1,
        status=Status.SUCCEEDED,
        classification=Classification.SUCCESS,
        started_at=start,
        finished_at=end,
    )
    return {"attempts": (record,), "classification": Classification.SUCCESS}


async def test_sequential_reverse_order_and_report(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Actions run once each, last registered first, and the report says so."""
    log = Log()
    scope = CompensationScope()
    for label in "abc":
        scope.register(log.undo, label, name=f"undo-{label}")
    report = await scope.run()
    assert log.entries == [(1.0, "c"), (2.0, "b"), (3.0, "a")]
    assert report == CompensationReport(
        (
            Outcome(
                "undo-c",
                Status.SUCCEEDED,
                value="undone c",
                started_at=0.0,
                finished_at=1.0,
                attributes=tried_once(0.0, 1.0),
            ),
            Outcome(
                "undo-b",
                Status.SUCCEEDED,
                value="undone b",
                started_at=1.0,
                finished_at=2.0,
                attributes=tried_once(1.0, 2.0),
            ),
            Outcome(
                "undo-a",
                Status.SUCCEEDED,
                value="undone a",
                started_at=2.0,
                finished_at=3.0,
                attributes=tried_once(2.0, 3.0),
            ),
        )
    )
    assert report.ok
    assert report.errors == ()
    assert not scope.has_actions
    assert await scope.run() == CompensationReport()


async def test_continues_past_failure(autojump_clock: trio.testing.MockClock) -> None:
    """A failing action is reported and the others still run."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "a", name="a")
    scope.register(log.fail, "b", name="b")
    scope.register(log.undo, "c", name="c")
    report = await scope.run()
    assert log.entries == [(1.0, "c"), (1.0, "fail b"), (2.0, "a")]
    assert [o.status for o in report.outcomes] == [
        Status.SUCCEEDED,
        Status.FAILED,
        Status.SUCCEEDED,
    ]
    assert not report.ok
    assert [str(e) for e in report.errors] == ["cannot undo b"]
    assert [o.name for o in report.failed] == ["b"]


async def test_shielded_from_outer_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An outer cancel neither aborts nor shortens a rollback; it is felt after."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "a", 5.0, name="a")
    scope.register(log.undo, "b", 5.0, name="b")
    report = None
    with trio.CancelScope() as outer:
        outer.cancel(reason="caller gave up")
        report = await scope.run()
        await trio.lowlevel.checkpoint()
        pytest.fail(
            "the outer cancel must be delivered after the run"
        )  # pragma: no cover
    assert outer.cancelled_caught
    assert report is not None
    assert report.ok
    assert log.entries == [(5.0, "b"), (10.0, "a")]


async def test_per_try_timeout(autojump_clock: trio.testing.MockClock) -> None:
    """A hung action times out per try with a TimeoutError and STEP_TIMEOUT cause."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "after", name="after")
    scope.register(log.hang, name="hang")
    report = await scope.run(timeout=4)
    hang, _after = report.outcomes
    assert (hang.status, hang.started_at, hang.finished_at) == (
        Status.TIMED_OUT,
        0.0,
        4.0,
    )
    assert isinstance(hang.error, TimeoutError)
    assert str(hang.error) == "compensation 'hang' timed out after 4.0 s (try 1)"
    assert hang.cause is not None
    assert hang.cause.reason is CancelReason.STEP_TIMEOUT
    assert hang.cause.triggered_by == "hang"
    assert log.entries == [(5.0, "after")]
    assert report.errors == (hang.error,)


async def test_default_timeout_bounds_a_hung_rollback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With no timeout given, a try is still bounded by the default."""
    scope = CompensationScope()
    scope.register(Log().hang, name="hang")
    report = await scope.run()
    assert report.outcomes[0].status is Status.TIMED_OUT
    assert trio.current_time() == DEFAULT_COMPENSATION_TIMEOUT


@pytest.mark.parametrize("timeout", [-1, -0.5, math.nan, 0])
async def test_bad_timeout(timeout: float) -> None:
    """Negative, NaN or zero timeouts are refused (a zero one would skip every undo)."""
    scope = CompensationScope()
    with pytest.raises(ValueError, match="timeout must be > 0 seconds"):
        await scope.run(timeout=timeout)


async def test_bad_policy_and_retry() -> None:
    """Wrong policy or retry types are TypeErrors."""
    scope = CompensationScope()
    with pytest.raises(TypeError, match="policy must be a CompensationPolicy"):
        await scope.run("parallel")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry must be a RetryPolicy or None, got 3"):
        await scope.run(retry=3)  # type: ignore[arg-type]


async def test_retry_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """A failing action is retried per the policy, backing off exponentially."""
    tries: list[float] = []

    async def flaky() -> str:
        tries.append(trio.current_time())
        if len(tries) < 3:
            raise ConnectionError("down")
        return "ok"

    scope = CompensationScope()
    scope.register(flaky, name="flaky")
    policy = RetryPolicy(
        max_attempts=4, initial_backoff=1, multiplier=2, max_backoff=60
    )
    report = await scope.run(retry=policy)
    assert tries == [0.0, 1.0, 3.0]
    assert report.outcomes[0].value == "ok"
    assert len(report.outcomes[0].attributes["attempts"]) == 3  # type: ignore[arg-type]


async def test_retry_exhausted_keeps_last_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the last try the final error is reported, with the try count."""
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"try {calls}")

    scope = CompensationScope()
    scope.register(broken, name="broken")
    report = await scope.run(retry=RetryPolicy(max_attempts=2, initial_backoff=0.5))
    (only,) = report.outcomes
    assert (only.status, str(only.error), len(only.attributes["attempts"])) == (  # type: ignore[arg-type]
        Status.FAILED,
        "try 2",
        2,
    )
    assert trio.current_time() == 0.5


async def test_retry_budget_denial_stops_tries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A retry budget that says no ends the tries and is recorded."""
    asked: list[BudgetKind] = []

    class NoBudget:
        def try_acquire(self, kind: BudgetKind) -> bool:
            asked.append(kind)
            return False

    scope = CompensationScope()
    scope.register(Log().fail, "x", name="x")
    report = await scope.run(retry=RetryPolicy(max_attempts=5, budget=NoBudget()))
    assert asked == [BudgetKind.RETRY]
    attributes = report.outcomes[0].attributes
    assert (len(attributes["attempts"]), attributes["reason"]) == (  # type: ignore[arg-type]
        1,
        "budget_denied",
    )


async def test_parallel_policy(autojump_clock: trio.testing.MockClock) -> None:
    """PARALLEL runs all actions at once; the report lists them in reverse order."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "a", 3.0, name="a")
    scope.register(log.fail, "b", name="b")
    scope.register(log.undo, "c", 5.0, name="c")
    report = await scope.run(CompensationPolicy.PARALLEL)
    assert trio.current_time() == 5.0
    assert [o.name for o in report.outcomes] == ["c", "b", "a"]
    assert [o.finished_at for o in report.outcomes] == [5.0, 0.0, 3.0]
    assert sorted(log.entries) == [(0.0, "fail b"), (3.0, "a"), (5.0, "c")]


async def test_concurrent_runs_never_run_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A second run waits for the first and runs only what was added since."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "a", name="a")
    scope.register(log.undo, "b", name="b")
    reports: dict[str, CompensationReport] = {}

    async def run(key: str) -> None:
        reports[key] = await scope.run()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "first")
        await trio.testing.wait_all_tasks_blocked()
        scope.register(log.undo, "late", name="late")
        nursery.start_soon(run, "second")
        nursery.start_soon(run, "third")
    assert log.entries == [(1.0, "b"), (2.0, "a"), (3.0, "late")]
    assert [o.name for o in reports["first"].outcomes] == ["b", "a"]
    assert sorted(len(reports[k].outcomes) for k in ("second", "third")) == [0, 1]


async def test_base_exception_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only Exception is contained; a BaseException from an action propagates."""

    class Fatal(BaseException):
        pass

    async def fatal() -> None:
        raise Fatal

    scope = CompensationScope()
    scope.register(fatal, name="fatal")
    with pytest.raises(Fatal):
        await scope.run()


# -- Hypothesis: exactly-once and reverse order -------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, 2)),
        st.tuples(st.just("absorb"), st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.just("run"), st.integers(0, 2)),
        st.tuples(st.just("clear"), st.integers(0, 2)),
    ),
    max_size=40,
)


@given(ops=_ops)
def test_exactly_once_reverse_order_property(ops: list[tuple[object, ...]]) -> None:
    """For any register/absorb/run/clear sequence over three scopes: every action
    runs at most once, each run is in reverse registration order, and an action
    runs iff it was registered and not cleared before a run took it."""
    ran: list[int] = []
    runs: list[list[int]] = []
    model: list[list[int]] = [[], [], []]

    async def action(ident: int) -> None:
        ran.append(ident)

    async def main() -> None:
        scopes = [CompensationScope() for _ in range(3)]
        counter = 0
        for op in ops:
            kind, i = op[0], op[1]
            assert isinstance(i, int)
            if kind == "register":
                scopes[i].register(action, counter)
                model[i].append(counter)
                counter += 1
            elif kind == "absorb":
                j = op[2]
                assert isinstance(j, int)
                if i != j:
                    scopes[i].absorb(scopes[j])
                    model[i].extend(model[j])
                    model[j] = []
            elif kind == "clear":
                scopes[i].clear()
                model[i] = []
            else:
                before = len(ran)
                await scopes[i].run()
                runs.append(ran[before:])
                assert ran[before:] == model[i][::-1]
                model[i] = []
            assert [len(s) for s in scopes] == [len(m) for m in model]

    run_virtual(main)
    assert len(ran) == len(set(ran))


# -- StepContext -----------------------------------------------------------------


def test_step_context_defaults_and_child() -> None:
    """A context has its own scope; a child shares deps and cancellation, not undo."""
    deps = {"db": object()}
    node = CancellationScope("app")
    ctx = StepContext("order", cancellation=node, deps=deps)
    child = ctx.child("charge")
    assert (ctx.path, child.path, child.name) == ("order", "order/charge", "charge")
    assert child.deps is deps
    assert child.cancellation is node
    assert child.compensation is not ctx.compensation
    assert ctx.result is None
    # Outside a saga run the key is the path (always a str; see StepContext).
    assert (ctx.idempotency_key, child.idempotency_key) == ("order", "order/charge")
    ctx.register_compensation(Log().undo, "x", name="x")
    assert ctx.compensation.names == ("x",)
    assert not child.compensation.has_actions


def test_step_context_validation() -> None:
    """Bad names, scopes and cancellation nodes are refused."""
    with pytest.raises(ValueError, match="contain no '/'"):
        StepContext("a/b")
    with pytest.raises(TypeError, match="compensation must be a CompensationScope"):
        StepContext("a", compensation=[])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cancellation must be a CancellationScope"):
        StepContext("a", cancellation="app")  # type: ignore[arg-type]


def test_step_context_uses_given_scope() -> None:
    """A scope passed in is used as is."""
    scope = CompensationScope()
    assert StepContext("a", compensation=scope).compensation is scope


# -- SagaError -------------------------------------------------------------------


def test_saga_error_members_and_except_star() -> None:
    """SagaError holds (original, *compensation errors); except* matches the original."""
    original = ValueError("declined")
    undo_error = RuntimeError("refund failed")
    report = CompensationReport((Outcome("refund", Status.FAILED, error=undo_error),))
    error = SagaError(original, [undo_error], report=report)
    assert error.exceptions == (original, undo_error)
    assert (error.original, error.compensation_errors, error.report) == (
        original,
        (undo_error,),
        report,
    )
    assert (
        str(error)
        == "ValueError: declined; then 1 compensation action(s) failed (2 sub-exceptions)"
    )
    caught: list[tuple[Exception | ExceptionGroup[Exception], ...]] = []
    try:
        raise error
    except* ValueError as group:
        caught.append(group.exceptions)
    except* RuntimeError as group:
        caught.append(group.exceptions)
    assert caught == [(original,), (undo_error,)]


def test_saga_error_raises_group() -> None:
    """pytest.RaisesGroup sees the exact members."""
    with pytest.RaisesGroup(ValueError, RuntimeError):
        raise SagaError(ValueError(), [RuntimeError()])


def test_saga_error_validation() -> None:
    """An original that is not an Exception or no compensation errors are refused."""
    with pytest.raises(TypeError, match="original must be an Exception"):
        SagaError(KeyboardInterrupt(), [RuntimeError()])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compensation_errors must not be empty"):
        SagaError(ValueError(), [])
    custom = SagaError(
        ValueError(), [RuntimeError()], message="order 42 rolled back badly"
    )
    assert custom.message == "order 42 rolled back badly"


async def _nursery_whose_cleanup_fails() -> None:
    async def child() -> None:
        try:
            await trio.sleep(math.inf)
        finally:
            raise ValueError("close failed while cancelled")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
        await trio.sleep(math.inf)


async def test_timeout_with_failing_cleanup_is_a_failure_not_an_escape(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A try that times out while its own nursery fails in cleanup is FAILED; later actions still run."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "after", name="after")
    scope.register(_nursery_whose_cleanup_fails, name="nursery")
    report = await scope.run(timeout=5)
    first, second = report.outcomes
    assert (first.name, first.status) == ("nursery", Status.FAILED)
    assert isinstance(first.error, ExceptionGroup)
    assert first.finished_at == 5.0
    assert (second.name, second.status) == ("after", Status.SUCCEEDED)
    assert log.entries == [(6.0, "after")]


async def test_interrupted_run_keeps_what_did_not_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A BaseException mid-run leaves the interrupted and later actions registered."""

    class Stop(BaseException):
        pass

    log = Log()

    async def interrupt() -> None:
        raise Stop

    scope = CompensationScope()
    scope.register(log.undo, "a", name="a")
    scope.register(interrupt, name="interrupt")
    scope.register(log.undo, "c", name="c")
    with pytest.raises(Stop):
        await scope.run()
    assert log.entries == [(1.0, "c")]
    assert scope.names == ("a", "interrupt")


async def test_reentrant_run_fails_the_action_instead_of_hanging(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An action calling run() on its own scope fails at once (it would wait for itself)."""
    scope = CompensationScope()

    async def action() -> None:
        await scope.run()

    scope.register(action, name="reentrant")
    report = await scope.run(CompensationPolicy.PARALLEL)
    (outcome,) = report.outcomes
    assert outcome.status is Status.FAILED
    assert "called from one of that scope's own actions" in str(outcome.error)
    assert trio.current_time() == 0.0


def test_trusted_context_sets_every_field() -> None:
    """The hot-path constructor writes every StepContext field (and nothing else)."""
    import attrs

    from trio_sagas._context import _CONTEXT_FIELDS

    assert set(_CONTEXT_FIELDS) == {f.name for f in attrs.fields(StepContext)}
    ctx = StepContext._trusted("a", path="p/a", deps=1, idempotency_key="k")
    assert (ctx.name, ctx.path, ctx.deps, ctx.idempotency_key, ctx.result) == (
        "a",
        "p/a",
        1,
        "k",
        None,
    )
    assert isinstance(ctx.compensation, CompensationScope)
    assert ctx.cancellation is None


def test_both_hot_path_constructors_fill_every_slot() -> None:
    """_trusted and forward_context leave no StepContext slot unset (an unset
    slot would be an AttributeError on first read)."""
    import attrs

    from trio_sagas._context import forward_context

    built = (
        StepContext._trusted("a", path="p/a", deps=1, idempotency_key="k"),
        forward_context("a", "p/a", 1, "run"),
    )
    for ctx in built:
        assert type(ctx) is StepContext
        for field in attrs.fields(StepContext):
            getattr(ctx, field.name)  # raises AttributeError if never written
    assert built[1].run_id == "run"
    assert built[1].result is None


async def test_interrupted_parallel_run_keeps_pending_actions_for_the_next_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """KeyboardInterrupt mid-run: shielded peers finish, the interrupted undo stays for the next run."""
    log = Log()
    interrupts = [KeyboardInterrupt()]

    async def slow(label: str) -> None:
        await trio.sleep(5)
        await log.undo(label)

    async def flaky() -> None:
        await trio.sleep(1)
        if interrupts:
            raise interrupts.pop()
        await log.undo("flaky")

    scope = CompensationScope()
    scope.register(log.undo, "quick", name="quick")
    scope.register(slow, "slow", name="slow")
    scope.register(flaky, name="flaky")
    with trio.fail_after(60):
        with pytest.RaisesGroup(
            KeyboardInterrupt, allow_unwrapped=True, flatten_subgroups=True
        ):
            await scope.run(CompensationPolicy.PARALLEL)
        # The shielded peers ran to their end; the interrupted one is kept.
        assert log.entries == [(1.0, "quick"), (6.0, "slow")]
        assert scope.names == ("flaky",)
        report = await scope.run()
    assert [(o.name, o.status) for o in report.outcomes] == [
        ("flaky", Status.SUCCEEDED)
    ]
    assert log.entries[-1] == (8.0, "flaky")
    assert not scope.has_actions


def test_step_context_run_id_forward_key_and_typed_deps() -> None:
    """run_id and forward_key are fields; the key is always a str; deps keep their type."""

    class Deps:
        ledger: list[str]

        def __init__(self) -> None:
            self.ledger = []

    ctx: StepContext[Deps] = StepContext(
        "charge", deps=Deps(), run_id="order-42", path="order/charge"
    )
    ctx.deps.ledger.append("typed")  # no cast: deps is a Deps
    assert ctx.idempotency_key == "order-42/order/charge"
    assert ctx.forward_key is None
    child = ctx.child("fee")
    assert (child.run_id, child.path, child.idempotency_key) == (
        "order-42",
        "order/charge/fee",
        "order-42/order/charge/fee",
    )
    undo = StepContext(
        "charge",
        run_id="order-42",
        idempotency_key="order-42/charge#compensate",
        forward_key="order-42/charge",
    )
    assert (undo.idempotency_key, undo.forward_key) == (
        "order-42/charge#compensate",
        "order-42/charge",
    )


def test_step_context_makes_its_scope_on_first_use() -> None:
    """No compensation scope exists until one is asked for (the saga hot path)."""
    ctx = StepContext._trusted("a", path="a", deps=None, idempotency_key=None)
    assert ctx._pending_compensation() is None
    assert ctx._compensation is None
    scope = ctx.compensation
    assert ctx.compensation is scope
    assert ctx._pending_compensation() is None  # a scope, but nothing in it


def test_saga_error_from_report() -> None:
    """from_report: members are the original then the report's errors, in run order."""
    boom = ValueError("boom")
    undo_error = RuntimeError("undo failed")
    report = CompensationReport(
        (
            Outcome("ok", Status.SUCCEEDED),
            Outcome("bad", Status.FAILED, error=undo_error),
            Outcome("stopped", Status.FAILED, error=KeyboardInterrupt()),
        )
    )
    error = SagaError.from_report(boom, report)
    assert error.original is boom
    assert error.report is report
    assert error.compensation_errors[0] is undo_error
    assert isinstance(error.compensation_errors[1], RuntimeError)
    assert "KeyboardInterrupt" in str(error.compensation_errors[1])
    assert str(error).startswith("ValueError: boom; then 2 compensation action(s)")
    with pytest.raises(ValueError, match="report must hold a failed compensation"):
        SagaError.from_report(boom, CompensationReport())
