"""SpanObserver: exact OpenTelemetry span trees, checked with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import trio_sagas
from trio_sagas import (
    Act,
    Chorus,
    ChorusMode,
    Executor,
    HedgePolicy,
    Ignition,
    RetryPolicy,
    Scene,
    StepContext,
)
from trio_sagas.otel import SpanObserver


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """An in-memory exporter behind a private tracer provider."""
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def _observer(exporter: InMemorySpanExporter) -> SpanObserver:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return SpanObserver(provider.get_tracer("test"))


def tree(spans: Sequence[ReadableSpan]) -> list[str]:
    """One line per span, indented under its parent: name, status, trio times."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context is not None}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent if parent in ids else None, []).append(span)
    roots = by_parent.get(None, [])
    t0 = min(s.start_time or 0 for s in spans)
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        start = ((span.start_time or 0) - t0) / 1e9
        end = ((span.end_time or 0) - t0) / 1e9
        status = span.status.status_code.name
        lines.append(f"{'  ' * depth}{span.name} [{status}] {start:g}..{end:g}")
        assert span.context is not None
        children = by_parent.get(span.context.span_id, [])
        for child in sorted(children, key=lambda s: (s.start_time or 0, s.name)):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda s: (s.start_time or 0, s.name)):
        walk(root, 0)
    return lines


def _attrs(spans: Sequence[ReadableSpan], name: str) -> dict[str, Any]:
    (span,) = [s for s in spans if s.name == name]
    return dict(span.attributes or {})


async def _ok(ctx: StepContext, state: Any) -> None:
    await trio.sleep(1)


async def _declined(ctx: StepContext, state: Any) -> None:
    await trio.sleep(1)
    raise ValueError("card declined")


async def test_compensated_saga(
    exporter: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    """A saga whose last act fails: run > scene > acts, run > compensation > undos."""
    scene = Scene(
        "order",
        [
            Act("reserve", _ok, compensate=_ok),
            Act("charge", _ok, compensate=_ok),
            Act("ship", _declined),
        ],
        saga=True,
    )
    with trio.fail_after(60):
        await trio_sagas.run_scene(
            scene, {}, run_id="o-1", observer=_observer(exporter)
        )
    spans = exporter.get_finished_spans()
    assert tree(spans) == [
        "saga run o-1 [ERROR] 0..5",
        "  scene order [ERROR] 0..3",
        "    act order/reserve [OK] 0..1",
        "    act order/charge [OK] 1..2",
        "    act order/ship [ERROR] 2..3",
        "  compensation order [OK] 3..5",
        "    undo order/charge [OK] 3..4",
        "    undo order/reserve [OK] 4..5",
    ]
    ship = _attrs(spans, "act order/ship")
    assert ship["trio_sagas.run_id"] == "o-1"
    assert ship["trio_sagas.step"] == "order/ship"
    assert ship["trio_sagas.idempotency_key"] == "o-1/order/ship"
    assert ship["trio_sagas.attempts"] == 1
    assert ship["trio_sagas.status"] == "failed"
    (failed,) = [s for s in spans if s.name == "act order/ship"]
    assert failed.status.description == "ValueError: card declined"
    assert [e.name for e in failed.events] == ["exception"]
    undo = _attrs(spans, "undo order/charge")
    assert undo["trio_sagas.idempotency_key"] == "o-1/order/charge#compensate"


async def test_chorus_with_a_failing_branch(
    exporter: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    """Branches nest under their chorus; the cancelled sibling carries its cause."""

    async def slow(ctx: StepContext, state: Any) -> None:
        await trio.sleep(5)

    scene = Scene(
        "notify",
        [
            Chorus(
                "send",
                [Act("email", slow), Act("sms", _declined)],
                mode=ChorusMode.FAIL_FAST,
            )
        ],
    )
    with trio.fail_after(60):
        await trio_sagas.run_scene(
            scene, {}, run_id="n-1", observer=_observer(exporter)
        )
    spans = exporter.get_finished_spans()
    assert tree(spans) == [
        "saga run n-1 [ERROR] 0..1",
        "  scene notify [ERROR] 0..1",
        "    chorus notify/send [ERROR] 0..1",
        "      act notify/send/email [UNSET] 0..1",
        "      act notify/send/sms [ERROR] 0..1",
    ]
    email = _attrs(spans, "act notify/send/email")
    assert email["trio_sagas.status"] == "cancelled"
    assert email["trio_sagas.cancel.origin"] == "internal"
    assert email["trio_sagas.cancel.triggered_by"] == "notify/send/sms"


async def test_hedged_call_where_the_hedge_wins(
    exporter: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    """Primary slow, hedge fast: both attempts are children of retry group 0."""
    observer = _observer(exporter)
    executor = Executor(observer=observer)

    async def op(info: trio_sagas.AttemptInfo) -> str:
        await trio.sleep(10 if info.hedge_index == 0 else 1)
        return "ok"

    policy = RetryPolicy(max_attempts=1, hedge=HedgePolicy(max_hedges=2, delay=2))
    with trio.fail_after(60):
        result = await executor.run(op, name="fetch", policy=policy)
    assert result.ok
    spans = exporter.get_finished_spans()
    assert tree(spans) == [
        "hedged call fetch [OK] 0..3",
        "  retry group 0 [OK] 0..3",
        "    attempt 1 [UNSET] 0..3",
        "    attempt 2 [OK] 2..3",
    ]
    primary = _attrs(spans, "attempt 1")
    assert primary["trio_sagas.cancel.reason"] == "winner"
    assert primary["trio_sagas.hedge.hedge_index"] == 0
    hedge = _attrs(spans, "attempt 2")
    assert hedge["trio_sagas.hedge.hedge_index"] == 1
    assert hedge["trio_sagas.hedge.trigger"] == "fixed_delay"
    assert hedge["trio_sagas.hedge.classification"] == "success"


async def test_ignition_dag_with_a_skipped_branch(
    exporter: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    """A failed dependency skips its dependant: the skipped signal is a zero-length span."""
    ignition = Ignition(
        mode=trio_sagas.ExecutionMode.DEPENDENCY_AWARE, observer=_observer(exporter)
    )

    async def db() -> None:
        await trio.sleep(1)

    async def cache() -> None:
        await trio.sleep(2)
        raise OSError("cache unreachable")

    async def api() -> None:
        await trio.sleep(1)

    ignition.add("db", db)
    ignition.add("cache", cache)
    ignition.add("api", api, depends_on=["db", "cache"])
    with trio.fail_after(60):
        await ignition.run()
    spans = exporter.get_finished_spans()
    assert tree(spans) == [
        "ignition [ERROR] 0..2",
        "  signal cache [ERROR] 0..2",
        "  signal db [OK] 0..1",
        "  signal api [UNSET] 2..2",
    ]
    api_attrs = _attrs(spans, "signal api")
    assert api_attrs["trio_sagas.status"] == "skipped"


def test_bad_tracer() -> None:
    """A tracer that is not an OpenTelemetry Tracer is a TypeError naming it."""
    with pytest.raises(TypeError, match="tracer must be a Tracer, got 'x'"):
        SpanObserver("x")  # type: ignore[arg-type]


def test_root_joins_the_current_trace(exporter: InMemorySpanExporter) -> None:
    """A run started under an application span becomes its child."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    observer = SpanObserver(tracer)
    scene = Scene("s", [Act("a", _ok)])

    async def main() -> None:
        with tracer.start_as_current_span("request"):
            await trio_sagas.run_scene(scene, {}, run_id="r", observer=observer)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    spans = exporter.get_finished_spans()
    assert [line.split(" [")[0] for line in tree(spans)] == [
        "request",
        "  saga run r",
        "    scene s",
        "      act s/a",
    ]
    assert isinstance(trace.get_tracer_provider(), trace.TracerProvider)


async def test_concurrent_runs_and_retries(
    exporter: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    """Two runs at once keep separate trees; a retried call has one group per try."""
    observer = _observer(exporter)
    executor = Executor(observer=observer)
    tries = 0

    async def flaky(info: trio_sagas.AttemptInfo) -> str:
        nonlocal tries
        tries += 1
        await trio.sleep(1)
        if tries == 1:
            raise ConnectionError("reset")
        return "ok"

    async def call(ctx: StepContext, state: Any) -> None:
        outcome = await executor.run(
            flaky, name="pay", policy=RetryPolicy(max_attempts=3, initial_backoff=1)
        )
        outcome.unwrap()

    scene = Scene("s", [Act("a", _ok)])
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: trio_sagas.run_scene(scene, {}, run_id="r1", observer=observer)
            )
            nursery.start_soon(
                lambda: trio_sagas.run_scene(scene, {}, run_id="r2", observer=observer)
            )
        await call(None, None)  # type: ignore[arg-type]
    observer.close()
    lines = tree(exporter.get_finished_spans())
    assert lines == [
        "saga run r1 [OK] 0..1",
        "  scene s [OK] 0..1",
        "    act s/a [OK] 0..1",
        "saga run r2 [OK] 0..1",
        "  scene s [OK] 0..1",
        "    act s/a [OK] 0..1",
        "hedged call pay [OK] 1..4",
        "  retry group 0 [ERROR] 1..2",
        "    attempt 1 [ERROR] 1..2",
        "  retry group 1 [OK] 3..4",
        "    attempt 2 [OK] 3..4",
    ]


async def test_recovery_is_a_run_of_its_own(
    exporter: InMemorySpanExporter, tmp_path: Any
) -> None:
    """compensate_run of a failed durable run: a recovery span with its undos."""

    async def instant(ctx: StepContext, state: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def declined(ctx: StepContext, state: Any) -> None:
        raise ValueError("card declined")

    scene = Scene(
        "plain", [Act("reserve", instant, compensate=instant), Act("charge", declined)]
    )
    # Real clock: the journal works in threads, which a mock clock jumps past.
    with trio_sagas.SQLiteJournal(tmp_path / "j.db") as journal, trio.fail_after(60):
        await trio_sagas.run_scene(scene, {}, run_id="p-1", journal=journal)
        await trio_sagas.compensate_run(
            journal, "p-1", [scene], observer=_observer(exporter)
        )
    spans = exporter.get_finished_spans()
    assert [line.split(" ..")[0].rsplit(" ", 1)[0] for line in tree(spans)] == [
        "saga run p-1 [OK]",
        "  compensation plain [OK]",
        "    undo plain/reserve [OK]",
    ]
    assert _attrs(spans, "saga run p-1")["trio_sagas.recovery"] is True


# Random scene trees: ("act", fails) | ("scene", saga, children) | ("chorus", children)
_act_spec = st.tuples(st.just("act"), st.integers(0, 4).map(lambda n: n == 0))


def _spec(depth: int) -> st.SearchStrategy[tuple[Any, ...]]:
    if depth == 0:
        return _act_spec
    children = st.lists(_spec(depth - 1), min_size=1, max_size=3)
    return st.one_of(
        _act_spec,
        st.tuples(st.just("scene"), st.booleans(), children),
        st.tuples(st.just("chorus"), children),
    )


def _build(spec: tuple[Any, ...], name: str) -> Act | Scene | Chorus:
    if spec[0] == "act":
        return Act(name, _declined if spec[1] else _ok, compensate=_ok)
    children = [_build(child, f"n{i}") for i, child in enumerate(spec[-1])]
    if spec[0] == "scene":
        return Scene(name, children, saga=spec[1])
    return Chorus(name, children)


@given(
    top_saga=st.booleans(),
    steps=st.lists(_spec(2), min_size=1, max_size=3),
)
def test_span_tree_mirrors_the_event_stream(
    top_saga: bool, steps: list[tuple[Any, ...]]
) -> None:
    """Any scene tree: one span per step that started, all ended, nested by path."""
    exporter = InMemorySpanExporter()
    scene = Scene(
        "top", [_build(s, f"s{i}") for i, s in enumerate(steps)], saga=top_saga
    )
    events: list[trio_sagas.Event] = []
    span_observer = _observer(exporter)

    async def main() -> trio_sagas.SagaResult:
        with trio.fail_after(600):
            return await trio_sagas.run_scene(
                scene,
                {},
                run_id="r",
                observer=trio_sagas.observers(span_observer, events.append),
            )

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    # Every step that started has exactly one span, every undo too; all ended.
    started = sorted(
        f"act {e.step}" for e in events if isinstance(e, trio_sagas.ActStarted)
    ) + sorted(
        f"undo {e.step}"
        for e in events
        if isinstance(e, trio_sagas.CompensationStepStarted)
    )
    names = [s.name for s in spans]
    assert (
        sorted(n for n in names if n.startswith("act "))
        + sorted(n for n in names if n.startswith("undo "))
        == started
    )
    assert all(s.end_time is not None for s in spans)
    # One root: the run, ERROR exactly when the run failed.
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == ["saga run r"]
    assert (roots[0].status.status_code is trace.StatusCode.ERROR) == (not result.ok)
    for span in spans:
        if span.parent is None:
            continue
        parent = by_id[span.parent.span_id]
        kind, _, path = span.name.partition(" ")
        if kind in ("act", "scene", "chorus") and "/" in path:
            # Nested by step path: the parent is the enclosing scene or chorus.
            assert parent.name.partition(" ")[2] == path.rpartition("/")[0]
        elif kind == "undo":
            assert parent.name.startswith("compensation ")
        # A child never starts before its parent.
        assert (span.start_time or 0) >= (parent.start_time or 0)
