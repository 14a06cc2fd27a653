"""Direct tests for compensation behaviours that planted bugs slipped past (tools/MUTANTS.md)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_sagas import CompensationPolicy, CompensationScope, Status, StepContext


class Log:
    """Undo actions that take a second and note when they finished."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, str]] = []

    async def undo(self, label: str) -> None:
        await trio.sleep(1)
        self.entries.append((trio.current_time(), label))


async def test_a_cancelled_caller_waiting_for_a_run_still_runs_its_actions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run called under a cancelled scope while another runs waits for it, then undoes what is left."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "a", name="a")
    reports: list[list[str]] = []

    async def late_caller() -> None:
        scope.register(log.undo, "late", name="late")
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            report = await scope.run()
            reports.append([o.name for o in report.outcomes])

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scope.run)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(late_caller)
    assert log.entries == [(1.0, "a"), (2.0, "late")]
    assert reports == [["late"]]
    assert not scope.has_actions


@pytest.mark.parametrize("policy", list(CompensationPolicy))
async def test_run_under_a_cancelled_scope_returns_its_report(
    autojump_clock: trio.testing.MockClock, policy: CompensationPolicy
) -> None:
    """Under an already-cancelled scope, run() still runs every action and returns the report."""
    log = Log()
    scope = CompensationScope()
    scope.register(log.undo, "a", name="a")
    scope.register(log.undo, "b", name="b")
    with trio.fail_after(10):
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            report = await scope.run(policy)
    assert [(o.name, o.status) for o in report.outcomes] == [
        ("b", Status.SUCCEEDED),
        ("a", Status.SUCCEEDED),
    ]
    expected_end = 2.0 if policy is CompensationPolicy.SEQUENTIAL_REVERSE else 1.0
    assert trio.current_time() == expected_end
    assert sorted(label for _, label in log.entries) == ["a", "b"]


def test_step_context_takes_only_its_name_positionally() -> None:
    """StepContext('charge', 'x') is a TypeError: every field but the name is keyword-only."""
    with pytest.raises(TypeError):
        StepContext("charge", "x")  # type: ignore[call-arg, arg-type, unused-ignore]
    # None is a valid value of every other field: refused only for its position.
    with pytest.raises(TypeError, match="positional"):
        StepContext("charge", None)  # type: ignore[call-arg, unused-ignore]
    ctx = StepContext("charge", path="order/charge", result=3)
    assert (ctx.name, ctx.path, ctx.result) == ("charge", "order/charge", 3)


def test_step_context_has_no_instance_dict() -> None:
    """A StepContext is slotted: a misspelt attribute is an AttributeError, not a silent new field."""
    ctx = StepContext("charge")
    with pytest.raises(AttributeError):
        ctx.reslt = 3  # type: ignore[attr-defined]
    assert not hasattr(ctx, "__dict__")
