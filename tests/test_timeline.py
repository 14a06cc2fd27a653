"""Timelines: spans from runs, plain-text Gantt, optional matplotlib plot."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import pytest
import trio
import trio.testing

from trio_sagas import (
    Act,
    Outcome,
    Scene,
    Span,
    Status,
    StepContext,
    open_err_group,
    render_timeline,
    run_scene,
    timeline_spans,
)


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
