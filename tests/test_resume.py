"""Roll-forward recovery: Scene(on_crash=OnCrash.RESUME) runs are finished by
recover()/run_worker, on virtual time with a journal in memory cut after any
write (a crash at that point)."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_sagas import (
    Act,
    Chorus,
    ChorusMode,
    OnCrash,
    RetryPolicy,
    RunResumed,
    RunStatus,
    Scene,
    SceneCompleted,
    StepContext,
    Uncertain,
    recover,
    render_timeline,
    run_scene,
    run_worker,
    timeline_spans,
)

from .helpers import Declined, was_failing
from .memory_journal import MemoryJournal
from .test_saga_property import _nodes

ONCE = RetryPolicy(max_attempts=1)


class Shop:
    """Acts that log each run and undo with its idempotency key."""

    def __init__(self, pace: float = 1.0) -> None:
        self.log: list[str] = []
        self.fail: set[str] = set()
        self.pace = pace  # seconds per nominal second of an act (real-clock tests)

    def act(self, name: str, seconds: float = 1, **options: Any) -> Act:
        async def run(ctx: StepContext, state: dict[str, Any]) -> str:
            self.log.append(f"run {ctx.idempotency_key}")
            await trio.sleep(seconds * self.pace)
            if name in self.fail:
                raise Declined(f"{name} declined")
            state[name] = state.get(name, 0) + 1
            return f"{name}-receipt"

        async def compensate(ctx: StepContext, state: dict[str, Any]) -> None:
            self.log.append(f"undo {ctx.idempotency_key} result={ctx.result}")
            state.pop(name, None)

        return Act(name, run, compensate=compensate, **options)

    def runs(self) -> list[str]:
        return [line.split()[1] for line in self.log if line.startswith("run ")]

    def undos(self) -> list[str]:
        return [line.split()[1] for line in self.log if line.startswith("undo ")]


def order(shop: Shop, **uncertain: Any) -> Scene:
    """Five steps: a, a chorus (b1, b2), a nested saga (c1, c2), d, e."""
    act = shop.act
    return Scene(
        "order",
        [
            act("a", **uncertain),
            Chorus("pack", [act("b1", 2), act("b2", 3)]),
            Scene("ship", [act("c1"), act("c2", **uncertain)], saga=True),
            act("d"),
            act("e"),
        ],
        saga=True,
        on_crash=OnCrash.RESUME,
    )


async def crashed_at(scene: Scene, writes: int) -> MemoryJournal:
    """Run *scene* on a memory journal; the journal as it was after *writes*."""
    journal = MemoryJournal()
    await run_scene(scene, {}, journal=journal, run_id="r")
    return journal.as_after(writes)


async def total_writes(scene: Scene) -> int:
    journal = MemoryJournal()
    await run_scene(scene, {}, journal=journal, run_id="r")
    return len(journal.writes)


async def test_resume_at_every_write(autojump_clock: trio.testing.MockClock) -> None:
    """Cut after every write: the resumed run ends with the uncrashed state; no
    completed act runs again; an uncertain act runs again under its own key."""
    with trio.fail_after(600):
        writes = await total_writes(order(Shop()))
        for cut in range(1, writes):
            first = Shop()
            journal = await crashed_at(order(first), cut)
            before = await journal.events("r")
            completed = [e.step for e in before if e.kind == "ActCompleted"]
            ended = set(completed)
            uncertain = [
                e.step for e in before if e.kind == "ActStarted" and e.step not in ended
            ]
            second = Shop()
            report = await recover(journal, [order(second)])
            (result,) = report.results
            assert result.ok, (cut, result)
            assert result.state == {
                k: 1 for k in ("a", "b1", "b2", "c1", "c2", "d", "e")
            }
            (run,) = await journal.runs()
            assert run.status is RunStatus.SUCCEEDED
            resumed = [e for e in result.events if isinstance(e, RunResumed)]
            assert len(resumed) == 1
            assert resumed[0].restored == tuple(completed)
            assert resumed[0].uncertain == tuple(uncertain)
            again = set(second.runs())
            assert not again & {f"r/{p}" for p in completed}, cut
            assert {f"r/{p}" for p in uncertain} <= again
            all_acts = {"a", "pack/b1", "pack/b2", "ship/c1", "ship/c2", "d", "e"}
            assert again | {f"r/{p}" for p in completed} == {
                f"r/order/{a}" for a in all_acts
            }
            # The default, Uncertain.COMPENSATE: its try undone, then run again.
            assert sorted(second.undos()) == sorted(
                f"r/{p}#compensate" for p in uncertain
            )


async def test_uncertain_retry_keeps_the_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Uncertain.RETRY: the act runs again, once, with the same idempotency key."""
    first, second = Shop(), Shop()
    journal = await crashed_at(order(first, uncertain=Uncertain.RETRY), 2)
    (result,) = await recover(journal, [order(second, uncertain=Uncertain.RETRY)])
    assert result.ok
    assert first.runs()[0] == second.runs()[0] == "r/order/a"
    assert Counter(second.runs())["r/order/a"] == 1
    assert second.undos() == []


async def test_uncertain_compensate_undoes_then_runs_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Uncertain.COMPENSATE (the default): undo the uncertain try (result None),
    then run the act again."""
    second = Shop()
    journal = await crashed_at(order(Shop()), 2)  # a's intent: a uncertain
    (result,) = await recover(journal, [order(second)])
    assert result.ok
    assert second.log[:2] == ["undo r/order/a#compensate result=None", "run r/order/a"]


async def test_failure_after_resume_rolls_back_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A step failing after the resume: every completed act, before the crash
    and after it, is undone once, in reverse completion order."""
    first = Shop()
    journal = await crashed_at(order(first, uncertain=Uncertain.RETRY), 9)
    before = await journal.events("r")
    completed = [e.step for e in before if e.kind == "ActCompleted"]
    assert "order/pack/b1" in completed
    second = Shop()
    second.fail.add("e")
    (result,) = await recover(journal, [order(second, uncertain=Uncertain.RETRY)])
    assert not result.ok
    assert result.failed_step == "order/e"
    assert result.state == {}
    (run,) = await journal.runs()
    assert run.status is RunStatus.COMPENSATED
    undone = [k.removesuffix("#compensate") for k in second.undos()]
    # e was uncertain (Uncertain.COMPENSATE): its try undone before it ran again.
    assert undone[0] == "r/order/e"
    assert len(undone) == len(set(undone)) == 7
    assert undone[1:4] == ["r/order/d", "r/order/ship/c2", "r/order/ship/c1"]
    assert undone[-1] == "r/order/a"
    assert set(undone[-3:-1]) == {"r/order/pack/b1", "r/order/pack/b2"}


async def test_chorus_resumes_only_unfinished_branches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A crash inside the chorus: the finished branch is restored, the other
    runs again; the time is that of the unfinished branch only."""
    first = Shop()
    scene = order(first)
    journal = MemoryJournal()
    await run_scene(scene, {}, journal=journal, run_id="r")
    # The write that holds b1's completion (b2 still running).
    cut = next(
        i
        for i in range(1, len(journal.writes) + 1)
        if any(
            e.kind == "ActCompleted" and e.step == "order/pack/b1"
            for e in journal.as_after(i).entries["r"]
        )
    )
    crashed = journal.as_after(cut)
    second = Shop()
    start = trio.current_time()
    (result,) = await recover(crashed, [order(second)])
    assert result.ok
    assert "r/order/pack/b1" not in second.runs()
    assert second.runs()[0] == "r/order/pack/b2"
    # b2 (its uncertain try undone in no time, then 3 s); c1, c2, d, e: 1 s each
    assert trio.current_time() - start == 3 + 4


async def test_nested_scene_resumes_where_it_stood(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A crash inside the nested saga after c1: only c2, d, e run again."""
    first = Shop()
    journal = MemoryJournal()
    await run_scene(order(first), {}, journal=journal, run_id="r")
    cut = next(
        i
        for i in range(1, len(journal.writes) + 1)
        if any(
            e.kind == "ActCompleted" and e.step == "order/ship/c1"
            for e in journal.as_after(i).entries["r"]
        )
    )
    second = Shop()
    (result,) = await recover(journal.as_after(cut), [order(second)])
    assert result.ok
    assert second.runs()[-3:] == ["r/order/ship/c2", "r/order/d", "r/order/e"]
    assert "r/order/ship/c1" not in second.runs()


async def test_a_failing_run_is_rolled_back_not_resumed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run that was failing when its process died is rolled back, even with
    on_crash=RESUME."""
    first = Shop()
    first.fail.add("d")
    journal = MemoryJournal()
    await run_scene(order(first), {}, journal=journal, run_id="r")
    cut = next(
        i
        for i in range(1, len(journal.writes) + 1)
        if any(e.kind == "ActFailed" for e in journal.as_after(i).entries["r"])
    )
    second = Shop()
    (result,) = await recover(journal.as_after(cut), [order(second)])
    assert not result.ok
    assert not any(isinstance(e, RunResumed) for e in result.events)
    assert not second.runs()


def tolerant_order(shop: Shop) -> Scene:
    """``a``, a PARTIAL_SUCCESS chorus (``b1`` fails, ``b2`` succeeds), ``d``, ``e``."""
    act = shop.act
    return Scene(
        "order",
        [
            act("a"),
            Chorus("pack", [act("b1"), act("b2", 2)], mode=ChorusMode.PARTIAL_SUCCESS),
            act("d"),
            act("e"),
        ],
        saga=True,
        on_crash=OnCrash.RESUME,
    )


def first_cut_after(journal: MemoryJournal, kind: str, step: str) -> int:
    """The fewest writes after which the journal holds a *kind* entry of *step*."""
    return next(
        i
        for i in range(1, len(journal.writes) + 1)
        if any(
            e.kind == kind and e.step == step for e in journal.as_after(i).entries["r"]
        )
    )


async def test_a_failure_a_completed_chorus_tolerated_does_not_stop_a_resume(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A PARTIAL_SUCCESS chorus completed with a failed branch, then the process
    died in ``d``: the run is resumed (not rolled back) and succeeds; the failed
    branch and the completed acts do not run again, nothing is undone."""
    first = Shop()
    first.fail.add("b1")
    journal = MemoryJournal()
    uncrashed = await run_scene(tolerant_order(first), {}, journal=journal, run_id="r")
    assert uncrashed.ok
    cut = first_cut_after(journal, "ActStarted", "order/d")
    second = Shop()
    (result,) = await recover(journal.as_after(cut), [tolerant_order(second)])
    assert result.ok
    assert result.state == {"a": 1, "b2": 1, "d": 1, "e": 1} == uncrashed.state
    (resumed,) = [e for e in result.events if isinstance(e, RunResumed)]
    assert resumed.restored == ("order/a", "order/pack/b2")
    assert resumed.uncertain == ("order/d",)
    assert second.runs() == ["r/order/d", "r/order/e"]
    assert second.undos() == ["r/order/d#compensate"]  # Uncertain.COMPENSATE


async def test_a_failed_branch_before_its_chorus_completed_rolls_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The process died after ``b1`` failed and before the chorus completed:
    whether the chorus would have tolerated it is not journaled, so the run
    was failing and is rolled back."""
    first = Shop()
    first.fail.add("b1")
    journal = MemoryJournal()
    await run_scene(tolerant_order(first), {}, journal=journal, run_id="r")
    cut = first_cut_after(journal, "ActFailed", "order/pack/b1")
    crashed = journal.as_after(cut)
    assert "ChorusCompleted" not in [e.kind for e in crashed.entries["r"]]
    second = Shop()
    (result,) = await recover(crashed, [tolerant_order(second)])
    assert not result.ok
    assert not any(isinstance(e, RunResumed) for e in result.events)
    assert second.runs() == []
    assert second.undos()[-1] == "r/order/a#compensate"


async def test_roll_back_stays_the_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without on_crash, a crashed run is rolled back as before."""
    first = Shop()
    scene = Scene("order", [first.act("a"), first.act("b")], saga=True)
    assert scene.on_crash is OnCrash.ROLL_BACK
    journal = await crashed_at(scene, 3)
    second = Shop()
    (result,) = await recover(
        journal, [Scene("order", [second.act("a"), second.act("b")], saga=True)]
    )
    assert not result.ok
    assert second.runs() == []
    assert second.undos() == ["r/order/b#compensate", "r/order/a#compensate"]


async def test_resume_twice(autojump_clock: trio.testing.MockClock) -> None:
    """A resumed run whose process dies too is resumed again: no act that
    completed in either earlier process runs in the third."""
    journal = await crashed_at(order(Shop()), 4)
    await recover(journal, [order(Shop())])
    partial = journal.as_after(4 + 3)  # the second process died after 3 writes
    entries = await partial.events("r")
    assert [e.kind for e in entries].count("RunResumed") == 1
    completed = {e.step for e in entries if e.kind == "ActCompleted"}
    third = Shop()
    (result,) = await recover(partial, [order(third)])
    assert result.ok
    assert result.state == {k: 1 for k in ("a", "b1", "b2", "c1", "c2", "d", "e")}
    assert not {f"r/{p}" for p in completed} & set(third.runs())
    (resumed,) = [e for e in result.events if isinstance(e, RunResumed)]
    assert set(resumed.restored) == completed
    assert resumed.previous_owner is not None
    seqs = [e.seq for e in await partial.events("r")]
    assert seqs == list(range(len(seqs)))


async def test_run_worker_resumes(autojump_clock: trio.testing.MockClock) -> None:
    """run_worker finishes a crashed RESUME run: SUCCEEDED, state complete."""
    first = Shop()
    journal = await crashed_at(order(first), 6)
    second = Shop()
    done = trio.Event()

    def observe(event: object) -> None:
        if isinstance(event, SceneCompleted) and event.scene == "order":
            done.set()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    run_worker, journal, [order(second)], observer=observe
                )
            )
            await done.wait()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    run = await journal.get_run("r")
    assert run is not None
    assert run.status is RunStatus.SUCCEEDED
    assert journal.codec.decode(run.state) == {  # type: ignore[arg-type]
        k: 1 for k in ("a", "b1", "b2", "c1", "c2", "d", "e")
    }
    kinds = [e.kind for e in await journal.events("r")]
    assert kinds.count("RunResumed") == 1


def test_bad_options() -> None:
    """on_crash must be an OnCrash; uncertain an Uncertain or its value."""

    async def ok(ctx: StepContext, state: object) -> None:
        pass

    with pytest.raises(TypeError, match="on_crash must be a OnCrash, got 'resume'"):
        Scene("s", on_crash="resume")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uncertain must be"):
        Act("a", ok, uncertain="maybe")
    assert Act("a", ok, uncertain="retry").uncertain is Uncertain.RETRY
    assert Act("a", ok).uncertain is Uncertain.COMPENSATE


# -- the property ------------------------------------------------------------------


class _Tree:
    """Builds a scene tree from specs; counts runs and undos by path."""

    def __init__(self) -> None:
        self.names = (f"n{i}" for i in itertools.count())
        self.runs: list[str] = []
        self.undone: list[str] = []

    def build(self, spec: tuple[Any, ...]) -> Act | Scene | Chorus:
        name = next(self.names)
        if spec[0] == "act":
            _, seconds, fails, _undo_fails = spec

            async def run(ctx: StepContext, state: dict[str, int]) -> str:
                assert ctx.idempotency_key == f"r/{ctx.path}"
                self.runs.append(ctx.path)
                await trio.sleep(seconds)
                if fails:
                    raise ValueError(ctx.path)
                state[ctx.path] = state.get(ctx.path, 0) + 1
                return ctx.path

            async def compensate(ctx: StepContext, state: dict[str, int]) -> None:
                assert ctx.result in (None, ctx.path)
                self.undone.append(ctx.path)
                state.pop(ctx.path, None)

            return Act(
                name,
                run,
                compensate=compensate,
                compensation_retry=ONCE,
                uncertain=Uncertain.RETRY,
            )
        if spec[0] == "scene":
            return Scene(name, [self.build(c) for c in spec[2]], saga=spec[1])
        return Chorus(name, [self.build(c) for c in spec[2]], mode=spec[1])

    def top(self, children: list[tuple[Any, ...]]) -> Scene:
        steps = [self.build(c) for c in children]
        return Scene("top", steps, saga=True, on_crash=OnCrash.RESUME)


@settings(deadline=None, max_examples=60)
@given(
    children=st.lists(_nodes(2), min_size=1, max_size=4),
    cut=st.floats(0, 1),
)
# Found on Python 3.12: a resumed run whose FAIL_FAST chorus fails cancels the
# sibling mid-run, and that sibling (its effect may have happened) is undone.
@example(
    children=[
        (
            "scene",
            False,
            [
                (
                    "chorus",
                    ChorusMode.FAIL_FAST,
                    [("act", 1, True, False), ("act", 2, True, True)],
                )
            ],
        )
    ],
    cut=0.0,
)
# Found by a mutation run: a FAIL_FAST sibling fails at the instant an act's
# intent is journaled; the act is cancelled before its run begins.
@example(
    children=[
        (
            "chorus",
            ChorusMode.FAIL_FAST,
            [
                ("scene", True, [("act", 2, False, False), ("act", 1, True, False)]),
                ("act", 2, True, False),
                ("act", 3, True, False),
            ],
        )
    ],
    cut=0.0,
)
def test_resume_property(children: list[tuple[Any, ...]], cut: float) -> None:
    """Cut a random RESUME saga's journal after any write: recovery never runs a
    completed act again, runs an uncertain one at most once more, finishes a
    run that would succeed with the uncrashed state, and rolls back every
    completed act (before and after the crash) of a run that fails."""
    first, second = _Tree(), _Tree()
    box: dict[str, Any] = {}

    async def main() -> None:
        journal = MemoryJournal()
        uncrashed = await run_scene(
            first.top(children), {}, journal=journal, run_id="r"
        )
        box["uncrashed"] = uncrashed
        writes = len(journal.writes)
        cut_at = round(cut * (writes - 1)) + 1
        crashed = journal.as_after(cut_at)
        box["before"] = await crashed.events("r")
        box["report"] = await recover(crashed, [second.top(children)])
        (box["run"],) = await crashed.runs()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    before = box["before"]
    completed = [e.step for e in before if e.kind == "ActCompleted"]
    failing = was_failing((e.kind, e.step) for e in before)
    run = box["run"]
    if not box["report"].results:
        assert run.status is not RunStatus.RUNNING  # it had finished
        return
    (result,) = box["report"].results
    resumed = any(isinstance(e, RunResumed) for e in result.events)
    assert resumed == (not failing)
    if not resumed:
        return
    assert not set(second.runs) & set(completed), "a completed act ran again"
    assert len(second.runs) == len(set(second.runs)), "an act ran twice after resume"
    if box["uncrashed"].ok:
        assert result.ok
        assert run.status is RunStatus.SUCCEEDED
        assert result.state == box["uncrashed"].state
        # Failed acts before the crash were tolerated (else no resume): they
        # ran in the first process, and not again.
        tolerated = [e.step for e in before if e.kind == "ActFailed"]
        assert sorted([*completed, *tolerated, *second.runs]) == sorted(first.runs)
        assert second.undone == []
        return
    assert not result.ok
    assert run.status in (RunStatus.COMPENSATED, RunStatus.NEEDS_INTERVENTION)
    done_after = [e.step for e in result.events if type(e).__name__ == "ActCompleted"]
    # An act cancelled after its run began (a FAIL_FAST sibling failed) may
    # have done its work: a durable run undoes it too, as after a crash. One
    # cancelled before its run began (its intent still waiting for a
    # sibling's write) did nothing: the runner knows it and undoes nothing.
    cancelled_after = [
        e.step
        for e in result.events
        if type(e).__name__ == "ActCancelled" and e.step in second.runs
    ]
    everything = set(completed) | set(done_after) | set(cancelled_after)
    assert len(second.undone) == len(set(second.undone)), "an act was undone twice"
    assert set(second.undone) == everything
    assert result.state == {}


async def test_timeline_shows_both_processes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The journal's entries of a resumed run draw both processes' work: the
    dead one's, the cut-short act, a mark, then the new one's."""
    journal = await crashed_at(order(Shop(), uncertain=Uncertain.RETRY), 8)
    (result,) = await recover(journal, [order(Shop(), uncertain=Uncertain.RETRY)])
    assert result.ok
    spans = timeline_spans(await journal.events("r"))
    (owner,) = [
        e.data["owner"] for e in await journal.events("r") if e.kind == "RunResumed"
    ]
    drawn = [(s.label, s.kind, s.status.name) for s in spans]
    assert drawn == [
        ("order/a", "run", "SUCCEEDED"),
        ("order/pack/b1", "run", "SUCCEEDED"),
        ("order/pack/b2", "run", "SUCCEEDED"),
        ("order/ship/c1", "run", "SUCCEEDED"),
        ("order/ship/c2", "run", "SUCCEEDED"),
        ("order/d (interrupted)", "run", "CANCELLED"),  # cut short by the crash
        (f"resumed by {owner}", "skip", "SKIPPED"),
        ("order/d", "undo", "SUCCEEDED"),  # uncertain: undone, then run again
        ("order/d", "run", "SUCCEEDED"),
        ("order/e", "run", "SUCCEEDED"),
    ]
    # The memory journal stores no write times: the new process's clock goes
    # on from the dead one's last write (6 s).
    assert [(s.start, s.end) for s in spans[5:]] == [
        (6.0, 6.0),
        (6.0, 6.0),
        (6.0, 6.0),
        (6.0, 7.0),
        (7.0, 8.0),
    ]
    assert f"resumed by {owner}" in render_timeline(await journal.events("r"))


async def test_cancelled_resume_rolls_back_and_raises_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """recover() cancelled while a resumed run goes on: a bare Cancelled reaches
    the caller after every completed act was undone (a run cancelled from
    outside rolls back, resumed or not)."""
    journal = await crashed_at(order(Shop(), uncertain=Uncertain.RETRY), 6)
    before = [e.step for e in await journal.events("r") if e.kind == "ActCompleted"]
    assert before  # some acts completed before the crash
    second = Shop()
    with trio.move_on_after(1.5) as scope:  # the resumed run is mid-step then
        with pytest.raises(trio.Cancelled):  # bare, not in a group
            await recover(journal, [order(second, uncertain=Uncertain.RETRY)])
    assert scope.cancel_called
    (run,) = await journal.runs()
    assert run.status is RunStatus.COMPENSATED
    assert journal.codec.decode(run.state) == {}  # type: ignore[arg-type]
    assert {f"r/{p}#compensate" for p in before} <= set(second.undos())
    # Only an uncertain act (Uncertain.COMPENSATE) is undone twice: its
    # uncertain try before it ran again, and that run in the rollback.
    entries = await journal.events("r")
    resumed = next(e for e in entries if e.kind == "RunResumed")
    (uncertain,) = resumed.data["uncertain"]
    twice = [k for k, n in Counter(second.undos()).items() if n > 1]
    assert twice in ([], [f"r/{uncertain}#compensate"])


async def test_failed_undo_of_an_uncertain_act_fails_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Uncertain.COMPENSATE whose undo fails for good: the act is not run again;
    the run fails there and rolls back what completed; NEEDS_INTERVENTION."""
    journal = await crashed_at(order(Shop()), 2)  # a uncertain

    async def broken(ctx: StepContext, state: object) -> None:
        raise RuntimeError("cannot undo")

    second = Shop()
    scene = order(second)
    first = scene.steps[0]
    assert isinstance(first, Act)
    a = attrs.evolve(first, compensate=broken, compensation_retry=ONCE)
    scene = Scene("order", [a, *scene.steps[1:]], saga=True, on_crash=OnCrash.RESUME)
    (result,) = await recover(journal, [scene])
    assert not result.ok
    assert result.failed_step == "order/a"
    assert second.runs() == []
    (run,) = await journal.runs()
    assert run.status is RunStatus.NEEDS_INTERVENTION
