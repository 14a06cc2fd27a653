"""Logs and traces from one saga run: LoggingObserver and SpanObserver together.

``python examples/observability.py`` runs an order saga whose last step
fails, with :func:`trio_sagas.observers` sending every event both to
:class:`trio_sagas.LoggingObserver` (printed as JSON lines, the way a JSON
log formatter would ship them) and, when ``opentelemetry-sdk`` is installed
(``pip install '.[otel]' opentelemetry-sdk`` from a checkout), to
:class:`trio_sagas.otel.SpanObserver`, whose spans are printed as a tree.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import trio
import trio.testing

import trio_sagas
from trio_sagas import Act, Chorus, Scene, StepContext


class JSONLines(logging.Formatter):
    """One JSON object per record: the message and the event's saga_* fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k.startswith("saga_")}
        return json.dumps(
            {"level": record.levelname, "msg": record.getMessage(), **fields}
        )


async def step(ctx: StepContext, state: dict[str, Any]) -> None:
    await trio.sleep(1)


async def charge(ctx: StepContext, state: dict[str, Any]) -> None:
    await trio.sleep(1)
    raise ValueError("card declined")


SCENE = Scene(
    "order",
    [
        Act("reserve", step, compensate=step),
        Chorus("notify", [Act("email", step), Act("sms", step)]),
        Act("charge", charge),
    ],
    saga=True,
)


def tracing() -> tuple[trio_sagas.Observer | None, Any]:
    """A SpanObserver on an in-memory exporter, or (None, None) without the SDK."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ModuleNotFoundError:
        return None, None
    from trio_sagas.otel import SpanObserver

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return SpanObserver(provider.get_tracer("shop")), exporter


def print_tree(spans: Any) -> None:
    """Spans indented under their parents, with status and trio-clock times."""
    children: dict[Any, list[Any]] = {}
    for span in spans:
        children.setdefault(span.parent.span_id if span.parent else None, []).append(
            span
        )
    t0 = min(span.start_time for span in spans)

    def show(span: Any, depth: int) -> None:
        start, end = ((t - t0) / 1e9 for t in (span.start_time, span.end_time))
        name = f"{'  ' * depth}{span.name}"
        print(f"{name:<30} {span.status.status_code.name:<6} {start:g}s..{end:g}s")
        for kid in sorted(
            children.get(span.context.span_id, []), key=lambda s: (s.start_time, s.name)
        ):
            show(kid, depth + 1)

    for root in children[None]:
        show(root, 0)


async def main() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONLines())
    events = logging.getLogger("trio_sagas.events")
    events.addHandler(handler)
    events.setLevel(logging.WARNING)  # failures only; INFO shows every event

    spans, exporter = tracing()
    observer = trio_sagas.observers(trio_sagas.LoggingObserver(), spans)
    print("-- logs (WARNING and above)")
    result = await trio_sagas.run_scene(SCENE, {}, run_id="order-9", observer=observer)
    print(f"-- result: {result.status.value} at {result.failed_step}")
    if exporter is None:
        print("-- traces: install opentelemetry-sdk to see the span tree")
    else:
        print("-- span tree")
        print_tree(exporter.get_finished_spans())


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
