"""What a saga run tells its steps (run id, path, keys), typed deps, and
drawing a run read back from a journal."""

from __future__ import annotations

import pathlib
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import trio_sagas
from trio_sagas import Act, Scene, StepContext

from .memory_journal import MemoryJournal


@attrs.define
class Deps:
    seen: list[tuple[str, str | None, str, str, str | None]] = attrs.field(factory=list)
    fail: bool = True


def _note(ctx: StepContext[Deps], what: str) -> None:
    ctx.deps.seen.append(
        (what, ctx.run_id, ctx.path, ctx.idempotency_key, ctx.forward_key)
    )


async def _charge(ctx: StepContext[Deps], state: Any) -> str:
    _note(ctx, "charge")
    return "ch-1"


async def _refund(ctx: StepContext[Deps], state: Any) -> None:
    _note(ctx, "refund")


async def _ship(ctx: StepContext[Deps], state: Any) -> None:
    _note(ctx, "ship")
    if ctx.deps.fail:
        raise RuntimeError("no truck")


SCENE: Scene[Deps] = Scene(
    "order",
    [Act("charge", _charge, compensate=_refund), Act("ship", _ship)],
    saga=True,
)


async def test_runner_fills_run_id_path_and_forward_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Forward steps get run_id, path and their key; the undo gets the forward key."""
    with trio.fail_after(10):
        deps = Deps()
        result = await trio_sagas.run_scene(SCENE, {}, deps=deps, run_id="o-1")
    assert result.compensation is not None
    assert result.compensation.ok
    assert deps.seen == [
        ("charge", "o-1", "order/charge", "o-1/order/charge", None),
        ("ship", "o-1", "order/ship", "o-1/order/ship", None),
        (
            "refund",
            "o-1",
            "order/charge",
            "o-1/order/charge#compensate",
            "o-1/order/charge",
        ),
    ]


async def test_recovery_undo_gets_the_same_keys(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An undo run by recover() (another process, in effect) sees the same
    run id, path and forward key as one run by the live run would."""
    with trio.fail_after(10):
        journal = MemoryJournal()
        deps = Deps(fail=False)
        await trio_sagas.run_scene(SCENE, {}, deps=deps, journal=journal, run_id="o-2")
        # Cut after: create, ActStarted(charge), ActStarted(ship) with charge done.
        crashed = journal.as_after(3)
        deps.seen.clear()
        report = await trio_sagas.recover(crashed, [SCENE], deps=deps)
    assert [r.run_id for r in report.results] == ["o-2"]
    assert ("refund", "o-2", "order/charge", "o-2/order/charge#compensate",
            "o-2/order/charge") in deps.seen  # fmt: skip


def test_a_journaled_run_is_drawn_from_its_entries(tmp_path: pathlib.Path) -> None:
    """render_timeline draws a run read back from a SQLite journal, from its
    entries or from timeline_from_entries; both give the same picture."""

    async def main() -> tuple[trio_sagas.JournalEntry, ...]:
        async with trio_sagas.SQLiteJournal(tmp_path / "j.db") as journal:
            with trio.fail_after(30):
                await trio_sagas.run_scene(
                    SCENE, {}, deps=Deps(), journal=journal, run_id="o-3"
                )
                return await journal.events("o-3")

    # The real clock: SQLite writes wait for a thread (the steps never sleep).
    entries = trio.run(main)
    spans = trio_sagas.timeline_from_entries(entries)
    assert [(s.name, s.status.value) for s in spans] == [
        ("order/charge", "succeeded"),
        ("order/ship", "failed"),
        ("order/charge (undo)", "succeeded"),
    ]
    drawn = trio_sagas.render_timeline(entries, width=8, ascii_only=True)
    assert drawn == trio_sagas.render_timeline(spans, width=8, ascii_only=True)
    assert drawn.splitlines()[1].startswith("order/ship          |")
    # The same walk: an undo is a span of kind "undo" (drawn "(undo)").
    assert [
        s.label + (" (undo)" if s.kind == "undo" else "")
        for s in trio_sagas.timeline_spans(entries)
    ] == [s.name for s in spans]


def test_timeline_from_entries_refuses_other_items() -> None:
    """Anything but JournalEntry items is a TypeError naming the argument."""
    with pytest.raises(TypeError, match=r"entries\[\.\.\.\] must be a JournalEntry"):
        trio_sagas.timeline_from_entries([object()])  # type: ignore[list-item]
    assert trio_sagas.timeline_from_entries([]) == []


def _static_checks() -> None:  # pragma: no cover - checked by mypy, never run
    """mypy (nox -s typing) fails if these lines stop being errors: a scene
    of typed deps refuses other deps, and an annotated scene refuses a step
    of other deps (warn_unused_ignores turns a lost error into a failure)."""

    async def other(ctx: StepContext[int], state: Any) -> None: ...

    async def wrong() -> None:
        await trio_sagas.run_scene(SCENE, {}, deps="not deps")  # type: ignore[misc]

    _: Scene[Deps] = Scene("m", [Act("a", other)])  # type: ignore[arg-type]
    del wrong
