"""Hypothesis: over random scene trees, rollback undoes exactly the completed
steps, each once, in reverse completion order (free within a Chorus), and the
event stream is well-formed."""

from __future__ import annotations

import itertools
from typing import Any

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_sagas import (
    Act,
    ActCancelled,
    ActCompleted,
    ActFailed,
    ActStarted,
    Chorus,
    ChorusMode,
    CompensationCompleted,
    CompensationStarted,
    CompensationStepCompleted,
    CompensationStepFailed,
    CompensationStepStarted,
    Event,
    RetryPolicy,
    SagaResult,
    Scene,
    SceneCompleted,
    SceneFailed,
    SceneStarted,
    StepContext,
    run_scene,
)

from .helpers import no_task_leaks as _no_task_leaks

ONCE = RetryPolicy(max_attempts=1)

# Specs: ("act", seconds, fails, undo_fails) | ("scene", saga, children) |
# ("chorus", mode, children). PARTIAL_SUCCESS branches are acts only, so a
# failed branch that the chorus forgives never hides completed work.
# An act fails one time in six, and its undo fails one time in two.
_act = st.tuples(
    st.just("act"),
    st.integers(1, 4),
    st.integers(0, 5).map(lambda n: n == 0),
    st.booleans(),
)


def _nodes(depth: int) -> st.SearchStrategy[tuple[Any, ...]]:
    if depth == 0:
        return _act
    children = st.lists(_nodes(depth - 1), min_size=1, max_size=3)
    scene = st.tuples(st.just("scene"), st.booleans(), children)
    chorus = st.one_of(
        st.tuples(
            st.sampled_from(["chorus"]),
            st.sampled_from([ChorusMode.FAIL_FAST, ChorusMode.FAIL_AFTER_ALL]),
            children,
        ),
        st.tuples(
            st.just("chorus"),
            st.just(ChorusMode.PARTIAL_SUCCESS),
            st.lists(_act, min_size=1, max_size=3),
        ),
    )
    return st.one_of(_act, scene, chorus)


class _Builder:
    def __init__(self) -> None:
        self.names = (f"n{i}" for i in itertools.count())
        self.kinds: dict[str, str] = {}  # name -> "act" | "scene" | "chorus"
        self.undone: list[str] = []

    def build(self, spec: tuple[Any, ...]) -> Act | Scene | Chorus:
        name = next(self.names)
        self.kinds[name] = spec[0]
        if spec[0] == "act":
            _, seconds, fails, undo_fails = spec

            async def run(ctx: StepContext, state: object) -> None:
                await trio.sleep(seconds)
                if fails:
                    raise ValueError(ctx.path)

            async def compensate(ctx: StepContext, state: object) -> None:
                self.undone.append(ctx.path)
                if undo_fails:
                    raise RuntimeError(ctx.path)

            return Act(name, run, compensate=compensate, compensation_retry=ONCE)
        if spec[0] == "scene":
            return Scene(name, [self.build(c) for c in spec[2]], saga=spec[1])
        return Chorus(name, [self.build(c) for c in spec[2]], mode=spec[1])


def _lowest_common_kind(builder: _Builder, a: str, b: str) -> str:
    pa, pb = a.split("/"), b.split("/")
    common = [x for x, y in zip(pa, pb, strict=False) if x == y]
    return builder.kinds.get(common[-1], "scene")


@given(children=st.lists(_nodes(2), min_size=1, max_size=4))
def test_rollback_property(children: list[tuple[Any, ...]]) -> None:
    """Exactly the completed acts are undone, once each, in reverse completion order."""
    builder = _Builder()
    top = Scene("top", [builder.build(c) for c in children], saga=True)
    builder.kinds["top"] = "scene"
    events: list[Event] = []
    box: dict[str, SagaResult] = {}

    async def main() -> None:
        with _no_task_leaks():
            box["result"] = await run_scene(top, None, observer=events.append)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    result = box["result"]

    completed = [e.step for e in events if isinstance(e, ActCompleted)]
    undone = [e.step for e in events if isinstance(e, CompensationStepStarted)]
    assert undone == builder.undone  # the events tell the truth about the calls
    assert len(undone) == len(set(undone)), "an act was undone twice"
    if result.ok:
        assert undone == []
    else:
        assert sorted(undone) == sorted(completed)
    order = {step: i for i, step in enumerate(completed)}
    position = {step: i for i, step in enumerate(undone)}
    for x, y in itertools.combinations(undone, 2):
        if _lowest_common_kind(builder, x, y) == "chorus":
            continue  # parallel branches: any order
        if order[x] < order[y]:
            assert position[y] < position[x], (
                f"{y} completed after {x} but was undone first"
            )
    _check_well_formed(events)


def _check_well_formed(events: list[Event]) -> None:
    seqs = [e.seq for e in events]  # type: ignore[attr-defined]
    assert seqs == list(range(len(events)))
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    open_acts: set[str] = set()
    open_undos: set[str] = set()
    depth = 0
    scenes = 0
    for event in events:
        if isinstance(event, ActStarted):
            assert event.step not in open_acts
            open_acts.add(event.step)
        elif isinstance(event, (ActCompleted, ActFailed, ActCancelled)):
            open_acts.remove(event.step)
        elif isinstance(event, CompensationStepStarted):
            open_undos.add(event.step)
        elif isinstance(event, (CompensationStepCompleted, CompensationStepFailed)):
            open_undos.remove(event.step)
        elif isinstance(event, CompensationStarted):
            depth += 1
        elif isinstance(event, CompensationCompleted):
            depth -= 1
            assert depth >= 0
        elif isinstance(event, SceneStarted):
            scenes += 1
        elif isinstance(event, (SceneCompleted, SceneFailed)):
            scenes -= 1
    assert not open_acts
    assert not open_undos
    assert depth == 0
    assert scenes == 0
