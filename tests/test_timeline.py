"""Timelines: spans from runs, plain-text Gantt, optional matplotlib plot."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sagas import (
    Act,
    JournalEntry,
    Outcome,
    Scene,
    Span,
    Status,
    StepContext,
    open_err_group,
    render_timeline,
    run_scene,
    timeline_from_entries,
    timeline_spans,
)
from trio_sagas._journal_entries import wall_times
from trio_sagas._saga import _events as se


async def _saga() -> object:
    async def work(ctx: StepContext, state: object) -> None:
        await trio.sleep(2)

    async def undo(ctx: StepContext, state: object) -> None:
        await trio.sleep(1)

    async def fails(ctx: StepContext, state: object) -> None:
        await trio.sleep(1)
        raise ValueError("declined")

    scene = Scene(
        "order",
        [Act("reserve", work, compensate=undo), Act("charge", fails)],
        saga=True,
    )
    return await run_scene(scene, None)


async def test_saga_spans(autojump_clock: trio.testing.MockClock) -> None:
    """A saga gives one span per act and per undo, in event order."""
    result = await _saga()
    assert timeline_spans(result) == [
        Span("order/reserve", 0.0, 2.0, Status.SUCCEEDED),
        Span("order/charge", 2.0, 3.0, Status.FAILED),
        Span("order/reserve", 3.0, 4.0, Status.SUCCEEDED, kind="undo"),
    ]


async def test_saga_text_timeline(autojump_clock: trio.testing.MockClock) -> None:
    """The text Gantt scales spans to the width and names status and times."""
    result = await _saga()
    assert render_timeline(result, width=8, ascii_only=True) == "\n".join(
        [
            "order/reserve        |####    | 0..2 succeeded",
            "order/charge         |    XX  | 2..3 failed",
            "order/reserve (undo) |      ##| 3..4 succeeded",
            "                      0      4",
        ]
    )
    assert "████" in render_timeline(result, width=8)


async def test_error_group_timeline(autojump_clock: trio.testing.MockClock) -> None:
    """An error group's outcomes draw as spans, with the cancel cause named."""

    async def sleeper() -> None:
        await trio.sleep(math.inf)

    async def fails() -> None:
        await trio.sleep(2)
        raise KeyError("k")

    with pytest.raises(KeyError):
        async with open_err_group(name="g") as group:
            group.start_soon(sleeper, name="peer")
            group.start_soon(fails, name="fails")
    assert render_timeline(group, width=8, ascii_only=True) == "\n".join(
        [
            "peer  |--------| 0..2 cancelled  step_failed",
            "fails |XXXXXXXX| 0..2 failed",
            "       0      2",
        ]
    )


def test_records_without_start_are_skips() -> None:
    """A record that never started is a zero-length skip span."""
    skipped: Outcome[None] = Outcome("late", Status.SKIPPED, finished_at=3.0)
    assert timeline_spans([skipped]) == [
        Span("late", 3.0, 3.0, Status.SKIPPED, kind="skip")
    ]
    assert render_timeline([]) == "(nothing ran)"


def test_bad_input() -> None:
    """Unknown sources and tiny widths are refused."""
    with pytest.raises(TypeError, match="cannot draw a timeline of 3"):
        timeline_spans(3)
    with pytest.raises(TypeError, match="it has no Status"):
        timeline_spans([object()])
    with pytest.raises(ValueError, match="width must be an int >= 8, got 2"):
        render_timeline([], width=2)
    with pytest.raises(TypeError, match="width must be an int >= 8, got nan"):
        render_timeline([], width=math.nan)  # type: ignore[arg-type]


async def test_plot_timeline(
    autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
) -> None:
    """With matplotlib a PNG is written; without it the error says which extra to install."""
    from trio_sagas import plot_timeline

    result = await _saga()
    target = tmp_path / "saga.png"
    if importlib.util.find_spec("matplotlib") is None:
        with pytest.raises(
            ModuleNotFoundError,
            match="plot_timeline needs matplotlib: pip install matplotlib",
        ):
            plot_timeline(result, str(target))
    else:
        import matplotlib

        backend = matplotlib.get_backend()
        plot_timeline(result, str(target), title="order")
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # The caller's backend is theirs: drawing never switches it.
        assert matplotlib.get_backend() == backend


def test_docs_show_the_example_output() -> None:
    """docs/timelines.rst shows exactly what examples/timelines.py prints."""
    import subprocess
    import sys

    root = pathlib.Path(__file__).parent.parent
    printed = subprocess.run(
        [sys.executable, str(root / "examples" / "timelines.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    page = (root / "docs" / "timelines.rst").read_text()
    block = page.split(":name: timelines-output\n\n", 1)[1].split(
        "\n\nThe same runs", 1
    )[0]
    shown = [line[4:] for line in block.split("\n")]
    assert [line.rstrip() for line in printed.rstrip("\n").split("\n")] == shown


# -- a journaled run read back: one walk over its entries ----------------------


def _entry(
    seq: int, kind: type, step: str, at: float, wall: float, **data: object
) -> JournalEntry:
    # Kinds named from the event classes, as the journal writes them.
    return JournalEntry("r", seq, kind.__name__, step, at, data, None, wall)


def _resumed_run() -> list[JournalEntry]:
    """A run resumed by a second process: the first dies in ``s/b``, the
    second (its trio clock at 9000) resumes it 30 s of wall time later."""
    return [
        _entry(0, se.SceneStarted, "s", 100.0, 1000.0),
        _entry(1, se.ActStarted, "s/a", 100.0, 1000.0),
        _entry(2, se.ActCompleted, "s/a", 101.0, 1001.0),
        _entry(3, se.ActStarted, "s/b", 101.0, 1001.0),
        _entry(4, se.CompensationStepStarted, "s/x", 101.5, 1001.5),
        _entry(5, se.RunResumed, "s", 9000.0, 1031.0, owner="worker-2-abcdef"),
        _entry(6, se.CompensationStepStarted, "s/b", 9000.0, 1031.0),
        _entry(7, se.CompensationStepCompleted, "s/b", 9000.5, 1031.5),
        _entry(8, se.ActStarted, "s/b", 9000.5, 1031.5),
        _entry(9, se.ActFailed, "s/b", 9002.5, 1033.5, status="TIMED_OUT"),
    ]


def test_a_resumed_run_is_drawn_on_the_wall_clock() -> None:
    """Both processes on one axis (the outage shows): the work the crash cut
    short ends interrupted at the dead process's last write, the mark sits
    at the new process's first, and a timed-out act keeps its status."""
    spans = timeline_spans(_resumed_run())
    assert [(s.label, s.kind, s.status, s.start, s.end) for s in spans] == [
        ("s/a", "run", Status.SUCCEEDED, 0.0, 1.0),
        ("s/b (interrupted)", "run", Status.CANCELLED, 1.0, 1.5),
        ("s/x (interrupted)", "undo", Status.CANCELLED, 1.5, 1.5),
        ("resumed by worker-2", "skip", Status.SKIPPED, 31.0, 31.0),
        ("s/b", "undo", Status.SUCCEEDED, 31.0, 31.5),
        ("s/b", "run", Status.TIMED_OUT, 31.5, 33.5),
    ]


def test_entries_and_their_named_spans_draw_alike() -> None:
    """render_timeline draws a run's entries (as `show` does) exactly as it
    draws timeline_from_entries' records of them."""
    entries = _resumed_run()
    named = timeline_from_entries(entries)
    assert [s.name for s in named] == [
        "s/a",
        "s/b (interrupted)",
        "s/x (interrupted) (undo)",
        "resumed by worker-2",
        "s/b (undo)",
        "s/b",
    ]
    drawn = render_timeline(entries, width=12, ascii_only=True)
    assert drawn == render_timeline(named, width=12, ascii_only=True)
    assert drawn.splitlines()[3] == (
        "resumed by worker-2      |           .| 31..31 skipped"
    )


def test_entries_without_write_times_follow_on_the_trio_clock() -> None:
    """Entries nobody stamped (written_at 0): each process goes on from the
    last entry of the one before, the mark between them."""
    entries = [attrs.evolve(e, written_at=0.0) for e in _resumed_run()]
    spans = timeline_spans(entries)
    assert [(s.label, s.start, s.end) for s in spans] == [
        ("s/a", 0.0, 1.0),
        ("s/b (interrupted)", 1.0, 1.5),
        ("s/x (interrupted)", 1.5, 1.5),
        ("resumed by worker-2", 1.5, 1.5),
        ("s/b", 1.5, 2.0),
        ("s/b", 2.0, 4.0),
    ]


def test_a_process_on_a_virtual_clock_never_starts_before_the_last() -> None:
    """A resuming process whose trio clock ran ahead of the wall clock (a
    virtual clock) would be placed before the dead one's last write: it
    starts there instead."""
    entries = [
        _entry(0, se.ActStarted, "s/a", 0.0, 1000.0),
        _entry(1, se.ActCompleted, "s/a", 5.0, 1000.1),
        _entry(2, se.ActStarted, "s/b", 5.0, 1000.1),
        _entry(3, se.RunResumed, "s", 0.0, 1000.3, owner="w2"),
        _entry(4, se.ActStarted, "s/b", 0.0, 1000.3),
        _entry(5, se.ActCompleted, "s/b", 4.0, 1000.4),
    ]
    spans = timeline_spans(entries)
    assert [(s.label, s.start, s.end) for s in spans] == [
        ("s/a", 0.0, 5.0),
        ("s/b (interrupted)", 5.0, 5.0),
        ("resumed by w2", 5.0, 5.0),
        ("s/b", 5.0, 9.0),
    ]


def test_journal_walk_refuses_other_items() -> None:
    """A sequence of entries with a stranger in it is a TypeError naming it."""
    entries = [*_resumed_run(), object()]
    with pytest.raises(TypeError, match=r"entries\[\.\.\.\] must be a JournalEntry"):
        timeline_spans(entries)


@st.composite
def _journaled_runs(draw: st.DrawFn) -> list[JournalEntry]:
    """Entries of 1-3 processes, each with its own trio clock; every process
    after the first resumes (RunResumed) or rolls back, after an outage."""
    entries: list[JournalEntry] = []
    wall = 1000.0
    for process in range(draw(st.integers(1, 3))):
        at = draw(st.floats(0, 1e6, allow_nan=False))
        if process:
            wall += draw(st.floats(6, 600))
            if draw(st.booleans()):
                entries.append(
                    _entry(len(entries), se.RunResumed, "s", at, wall, owner="w")
                )
        for index in range(draw(st.integers(0, 5))):
            step = f"s/{process}.{index}"
            undo = draw(st.booleans())
            start = se.CompensationStepStarted if undo else se.ActStarted
            ends = (
                [se.CompensationStepCompleted, se.CompensationStepFailed]
                if undo
                else [se.ActCompleted, se.ActFailed, se.ActCancelled]
            )
            entries.append(_entry(len(entries), start, step, at, wall))
            if draw(st.booleans()):  # else: left open (the process dies)
                took = draw(st.sampled_from([0.0, 0.5, 2.0]))
                # A virtual clock runs ahead of the wall clock.
                at, wall = at + took, wall + draw(st.sampled_from([took, 0.001]))
                entries.append(
                    _entry(len(entries), draw(st.sampled_from(ends)), step, at, wall)
                )
    return entries


@given(_journaled_runs())
@settings(max_examples=200, deadline=None)
def test_every_started_step_is_one_span(entries: list[JournalEntry]) -> None:
    """Whatever the processes: one span per started step (ended or
    interrupted), one mark per RunResumed, none ending before it starts,
    none before the run's first entry, in start order."""
    spans = timeline_spans(entries)
    times = wall_times(entries)
    assert times == sorted(times)  # the axis never goes back
    kinds = [e.kind for e in entries]
    started = kinds.count("ActStarted") + kinds.count("CompensationStepStarted")
    marks = [s for s in spans if s.kind == "skip"]
    assert len(marks) == kinds.count("RunResumed")
    assert len(spans) - len(marks) == started
    assert all(0.0 <= s.start <= s.end for s in spans)
    assert [s.start for s in spans] == sorted(s.start for s in spans)
    ended = {e.step for e in entries if "Started" not in e.kind}
    interrupted = {s.label.removesuffix(" (interrupted)") for s in spans}
    assert {e.step for e in entries if e.kind.endswith("Started")} - ended <= (
        interrupted
    )
