"""Observer overhead: OpenTelemetry spans and structured logs on a saga (issue 17).

A 10-act in-memory saga on the success path (23 events, 12 spans per run),
``run_scene`` with an observer against the same ``run_scene`` without one,
interleaved rounds, medians, CPU time (``time.process_time``):

* ``SpanObserver`` on the OpenTelemetry SDK (a ``TracerProvider`` with no
  span processor: every span is built and ended, nothing is exported —
  exporting is the SDK's cost, the same for any instrumentation);
* ``LoggingObserver`` on a logger not enabled for INFO (the usual production
  setting for per-event logs);
* ``LoggingObserver`` writing every record to a ``NullHandler``;
* and ``SpanObserver`` against the bare saga *plus the same spans made
  directly with the SDK*: what our event-to-span mapping adds over the
  floor any OpenTelemetry instrumentation pays.

Per-item costs (µs per span, µs per event) are printed beside the ratios.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import trio
from _harness import compare, report
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import trio_sagas
from trio_sagas.otel import SpanObserver

STEPS = 10
RUNS = 200
EVENTS_PER_RUN = 2 + 2 * STEPS + 1  # SceneStarted, 2 per act, SceneCompleted, +1 slack
SPANS_PER_RUN = 2 + STEPS  # run, scene, acts


async def do(ctx: trio_sagas.StepContext, state: dict[str, int]) -> None:
    state["n"] += 1


SCENE = trio_sagas.Scene(
    "bench", [trio_sagas.Act(f"step{i}", do) for i in range(STEPS)], saga=True
)


def runs(observer: trio_sagas.Observer | None) -> None:
    async def main() -> None:
        for _ in range(RUNS):
            result = await trio_sagas.run_scene(
                SCENE, {"n": 0}, run_id="r", observer=observer
            )
            assert result.ok

    trio.run(main)


def sdk_only(tracer: Any) -> None:
    """No observer, plus the same spans made by hand: the floor of any tracing."""

    async def main() -> None:
        for _ in range(RUNS):
            result = await trio_sagas.run_scene(SCENE, {"n": 0}, run_id="r")
            assert result.ok
            run = tracer.start_span("saga run r", attributes={"trio_sagas.run_id": "r"})
            ctx = trace.set_span_in_context(run)
            scene = tracer.start_span("scene bench", context=ctx, attributes={"k": "r"})
            ctx = trace.set_span_in_context(scene)
            for i in range(STEPS):
                act = tracer.start_span(
                    f"act bench/step{i}",
                    context=ctx,
                    attributes={"trio_sagas.run_id": "r", "trio_sagas.step": "s"},
                )
                act.set_attributes({"trio_sagas.status": "succeeded", "a": 1})
                act.set_status(trace.Status(trace.StatusCode.OK))
                act.end()
            for span in (scene, run):
                span.set_status(trace.Status(trace.StatusCode.OK))
                span.end()

    trio.run(main)


def _logger(name: str, level: int, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(level)
    logger.addHandler(handler)
    return logger


def main() -> None:
    rounds = 3 if "--quick" in sys.argv else 11
    tracer = TracerProvider().get_tracer("bench")
    spans = SpanObserver(tracer)
    quiet = trio_sagas.LoggingObserver(
        _logger("bench.quiet", logging.WARNING, logging.NullHandler())
    )
    loud = trio_sagas.LoggingObserver(
        _logger("bench.loud", logging.INFO, logging.NullHandler())
    )
    rows = []
    extra = {}
    for case, observer, unit, per_run in (
        ("SpanObserver (SDK, no export) / no observer", spans, "span", SPANS_PER_RUN),
        (
            "LoggingObserver, logger disabled / no observer",
            quiet,
            "event",
            EVENTS_PER_RUN,
        ),
        ("LoggingObserver, NullHandler / no observer", loud, "event", EVENTS_PER_RUN),
    ):
        row = compare(
            f"{STEPS}-act saga: {case}",
            lambda observer=observer: runs(observer),
            lambda: runs(None),
            rounds=rounds,
        )
        rows.append(row)
        extra_us = (row["candidate_s"] - row["baseline_s"]) / (RUNS * per_run) * 1e6
        extra[f"{case}: us per {unit}"] = round(extra_us, 2)
        extra[f"{case}: us per run"] = round(
            (row["candidate_s"] - row["baseline_s"]) / RUNS * 1e6, 1
        )
    row = compare(
        f"{STEPS}-act saga: SpanObserver / same spans made directly with the SDK",
        lambda: runs(spans),
        lambda: sdk_only(tracer),
        rounds=rounds,
    )
    rows.append(row)
    extra["SpanObserver over the SDK's own cost: us per span"] = round(
        (row["candidate_s"] - row["baseline_s"]) / (RUNS * SPANS_PER_RUN) * 1e6, 2
    )
    report("otel", rows, extra)


if __name__ == "__main__":
    main()
