"""OpenTelemetry spans from trio-sagas events (the ``otel`` extra).

``pip install '.[otel]'`` (from a checkout) brings ``opentelemetry-api`` only; the
application configures the SDK and exporter as usual and passes a tracer::

    from trio_sagas.otel import SpanObserver

    observer = SpanObserver(trace.get_tracer("shop"))
    await trio_sagas.run_scene(scene, state, observer=observer)

Parentage comes from the event stream, never from a "current span": a step's
parent is the span of its enclosing scene or chorus (by step path and run
id), an undo's the rollback of its scene, a hedge attempt's its retry group.
So concurrent Chorus branches, concurrent runs and retroactive events nest
correctly. Only a *root* (a saga run, a hedged call, an ignition) joins the
trace that is current where it starts, e.g. the request being served.

Span times come from the events' trio-clock ``at`` (mapped once per
``trio.run`` onto the wall clock), so an attempt reported when it ends still
gets its real start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, final

import trio

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ModuleNotFoundError as _error:  # pragma: no cover - the extra is missing
    raise ModuleNotFoundError(
        "trio_sagas.otel needs opentelemetry-api: pip install opentelemetry-api"
    ) from _error

from ._events import Event
from ._otel import _hedge
from ._otel._common import PREFIX as _PREFIX
from ._otel._common import STATUS as _STATUS
from ._otel._common import cause_attributes as _cause_attributes
from ._otel._common import parent_path as _parent_path
from ._outcome import CancelCause, Status, describe_error
from ._validate import check_type

__all__ = ["SpanObserver"]


@final
class SpanObserver:
    """An observer turning saga, hedge and ignition events into OpenTelemetry spans.

    Spans (names, then the attributes besides ``trio_sagas.run_id`` /
    ``trio_sagas.step``):

    * ``saga run <run id>`` — a whole run, rollback included; a recovery or
      :func:`~trio_sagas.compensate_run` of a run is one too
      (``trio_sagas.recovery``);
    * ``scene <path>``, ``chorus <path>``, ``act <path>``
      (``trio_sagas.attempts``, ``trio_sagas.idempotency_key``);
    * ``compensation <scene path>`` and ``undo <step path>`` under it;
    * ``hedged call <name>`` > ``retry group <n>`` > ``attempt <n>``
      (``trio_sagas.hedge.*``: retry/hedge index, attempt, classification,
      trigger);
    * ``ignition`` > ``signal <name>`` (``trio_sagas.stage``).

    Status: OK for succeeded, ERROR (with the error's description, and the
    exception recorded) for failed or timed out, UNSET for cancelled or
    skipped; ``trio_sagas.status`` always says which. A cancellation's cause
    is in ``trio_sagas.cancel.origin`` / ``.reason`` / ``.triggered_by`` /
    ``.message``.

    A hedged call has no "call finished" event: its span ends when a group
    succeeds or fails without a retry, else (retries exhausted, budget denied)
    at the end of its last group once the next call of that name starts or
    :meth:`close` runs. Concurrent hedged calls (and ignitions) need distinct
    names to be told apart.

    Args:
        tracer: An :class:`opentelemetry.trace.Tracer`.
    """

    __slots__ = (
        "_calls",
        "_ignitions",
        "_last_context",
        "_last_parent",
        "_offset",
        "_root",
        "_runs",
        "_spans",
        "_tracer",
    )

    def __init__(self, tracer: trace.Tracer) -> None:
        check_type(tracer, trace.Tracer, "tracer")
        self._tracer = tracer
        # (run_id, path) -> span; (run_id, None) is the run.
        self._spans: dict[tuple[str, str | None], Any] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, _hedge._Call] = {}
        self._ignitions: dict[str, int] = {}
        self._root: object = None
        self._offset = 0
        self._last_parent: Any = None
        self._last_context: Any = None

    def __repr__(self) -> str:
        return f"trio_sagas.otel.SpanObserver({self._tracer!r})"

    # -- time --------------------------------------------------------------

    def _ns(self, at: float) -> int:
        # One offset per trio.run: each run's clock has its own origin.
        try:
            root: object = trio.lowlevel.current_root_task()
        except RuntimeError:  # outside trio.run: `at` is on no trio clock
            root = None
        if root is not self._root or root is None:
            self._root = root
            now = 0.0 if root is None else trio.current_time()
            self._offset = time.time_ns() - round(now * 1e9)
        return self._offset + round(at * 1e9)

    # -- spans -------------------------------------------------------------

    def _start(
        self, name: str, parent: Any, at: float, attributes: Mapping[str, Any]
    ) -> Any:
        if parent is None:
            ctx = otel_context.get_current()
        elif parent is self._last_parent:
            ctx = self._last_context  # siblings in a row: one Context for all
        else:
            ctx = trace.set_span_in_context(parent)
            self._last_parent, self._last_context = parent, ctx
        return self._tracer.start_span(
            name, context=ctx, start_time=self._ns(at), attributes=dict(attributes)
        )

    def _end(
        self,
        span: Any,
        at: float,
        status: Status,
        *,
        error: BaseException | None = None,
        cause: CancelCause | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        final = {_PREFIX + "status": status.value}
        if cause is not None:
            final.update(_cause_attributes(cause))
        if attributes:
            final.update(attributes)
        span.set_attributes(final)
        code = _STATUS[status]
        if code is trace.StatusCode.ERROR:
            description = describe_error(error) if error is not None else status.value
            if error is not None:
                span.record_exception(error, timestamp=self._ns(at))
            span.set_status(trace.Status(code, description))
        elif code is trace.StatusCode.OK:
            span.set_status(trace.Status(code))
        span.end(end_time=self._ns(at))

    def __call__(self, event: Event) -> None:
        """Turn *event* into span starts and ends."""
        handler = _HANDLERS.get(type(event).__name__)
        if handler is not None:
            handler(self, event)

    def close(self) -> None:
        """End every span still open (runs, calls and groups cut short)."""
        for call in list(self._calls.values()):
            for retry_index, group in list(call.pending.items()):
                if group.attempts:
                    call.group_done(self, retry_index, group)
            call.finish(self)
        self._calls.clear()
        for key, span in list(self._spans.items()):
            if span.is_recording():
                span.end()
            del self._spans[key]
        self._runs.clear()

    # -- sagas -------------------------------------------------------------

    def _run_span(self, event: Any, path: str) -> Any:
        run_id = event.run_id
        span = self._spans.get((run_id, None))
        if span is None:
            recovery = type(event).__name__ != "SceneStarted"
            span = self._start(
                f"saga run {run_id}",
                None,
                event.at,
                {
                    _PREFIX + "run_id": run_id,
                    _PREFIX + "scene": path.split("/", 1)[0],
                    _PREFIX + "recovery": recovery,
                },
            )
            self._spans[(run_id, None)] = span
            self._runs[run_id] = {"saga": False, "failed": None, "recovery": recovery}
        return span

    def _step_start(self, event: Any, kind: str, path: str) -> None:
        parent_path = _parent_path(path)
        if parent_path is None:
            parent = self._run_span(event, path)
        else:
            parent = self._spans.get((event.run_id, parent_path)) or self._run_span(
                event, path
            )
        attributes = {_PREFIX + "run_id": event.run_id, _PREFIX + "step": path}
        if kind == "act":
            attributes[_PREFIX + "idempotency_key"] = f"{event.run_id}/{path}"
        self._spans[(event.run_id, path)] = self._start(
            f"{kind} {path}", parent, event.at, attributes
        )

    def _step_end(self, event: Any, path: str, status: Status, **options: Any) -> None:
        span = self._spans.pop((event.run_id, path), None)
        if span is not None:
            self._end(span, event.at, status, **options)

    def _finish_run(
        self, event: Any, status: Status, error: BaseException | None = None
    ) -> None:
        span = self._spans.pop((event.run_id, None), None)
        run = self._runs.pop(event.run_id, None)
        if span is None or run is None:
            return
        if run["failed"] is not None:
            status, error = run["failed"]
        self._end(span, event.at, status, error=error)

    def _scene_started(self, event: Any) -> None:
        if _parent_path(event.scene) is None:
            self._run_span(event, event.scene)
            self._runs[event.run_id]["saga"] = event.saga
        self._step_start(event, "scene", event.scene)

    def _scene_completed(self, event: Any) -> None:
        self._step_end(event, event.scene, Status.SUCCEEDED)
        if _parent_path(event.scene) is None:
            self._finish_run(event, Status.SUCCEEDED)

    def _scene_failed(self, event: Any) -> None:
        self._step_end(
            event,
            event.scene,
            event.status,
            error=event.error,
            cause=event.cause,
            attributes={_PREFIX + "failed_step": event.step},
        )
        if _parent_path(event.scene) is None:
            run = self._runs.get(event.run_id)
            if run is not None:
                run["failed"] = (event.status, event.error)
                if not run["saga"]:
                    self._finish_run(event, event.status)

    def _act_completed(self, event: Any) -> None:
        self._step_end(
            event,
            event.step,
            Status.SUCCEEDED,
            attributes={_PREFIX + "attempts": event.attempts},
        )

    def _act_failed(self, event: Any) -> None:
        self._step_end(
            event,
            event.step,
            event.status,
            error=event.error,
            attributes={_PREFIX + "attempts": event.attempts},
        )

    def _act_cancelled(self, event: Any) -> None:
        self._step_end(event, event.step, Status.CANCELLED, cause=event.cause)

    def _chorus_completed(self, event: Any) -> None:
        self._step_end(
            event,
            event.step,
            Status.SUCCEEDED,
            attributes={_PREFIX + "failed_branches": list(event.failed)},
        )

    def _chorus_failed(self, event: Any) -> None:
        self._step_end(
            event,
            event.step,
            event.status,
            error=event.error,
            attributes={_PREFIX + "failed_branches": list(event.failed)},
        )

    def _compensation_started(self, event: Any) -> None:
        parent_path = _parent_path(event.scene)
        parent = (
            self._run_span(event, event.scene)
            if parent_path is None
            else self._spans.get((event.run_id, parent_path))
            or self._run_span(event, event.scene)
        )
        key = (event.run_id, "#compensation " + event.scene)
        self._spans[key] = self._start(
            f"compensation {event.scene}",
            parent,
            event.at,
            {
                _PREFIX + "run_id": event.run_id,
                _PREFIX + "scene": event.scene,
                _PREFIX + "steps_to_undo": list(event.steps_to_undo),
            },
        )
        for step in event.steps_to_undo:
            run = self._runs.setdefault(event.run_id, {"saga": True, "failed": None})
            run.setdefault("undo_parent", {})[step] = key

    def _compensation_completed(self, event: Any) -> None:
        span = self._spans.pop((event.run_id, "#compensation " + event.scene), None)
        if span is not None:
            self._end(
                span,
                event.at,
                Status.SUCCEEDED if event.ok else Status.FAILED,
                attributes={_PREFIX + "ok": event.ok},
            )
        if _parent_path(event.scene) is None:
            run = self._runs.get(event.run_id, {})
            # A recovery succeeds when its rollback does; a run that rolled
            # back still failed.
            ok = run.get("recovery", False) and event.ok
            self._finish_run(event, Status.SUCCEEDED if ok else Status.FAILED)

    def _undo_started(self, event: Any) -> None:
        # The rollback that lists this step, or the group (a nested scene or
        # chorus) it is part of: an undone group's steps are undone one by one.
        undo_parents = self._runs.get(event.run_id, {}).get("undo_parent", {})
        parent = None
        path: str | None = event.step
        while parent is None and path is not None:
            key = undo_parents.get(path)
            parent = None if key is None else self._spans.get(key)
            path = _parent_path(path)
        if parent is None:
            parent = self._run_span(event, event.step)
        self._spans[(event.run_id, "#undo " + event.step)] = self._start(
            f"undo {event.step}",
            parent,
            event.at,
            {
                _PREFIX + "run_id": event.run_id,
                _PREFIX + "step": event.step,
                _PREFIX + "idempotency_key": f"{event.run_id}/{event.step}#compensate",
            },
        )

    def _undo_completed(self, event: Any) -> None:
        self._step_end(
            event,
            "#undo " + event.step,
            Status.SUCCEEDED,
            attributes={_PREFIX + "attempts": event.attempts},
        )

    def _undo_failed(self, event: Any) -> None:
        self._step_end(
            event,
            "#undo " + event.step,
            Status.FAILED,
            error=event.error,
            attributes={_PREFIX + "attempts": event.attempts},
        )


_HANDLERS: dict[str, Any] = {
    "SceneStarted": SpanObserver._scene_started,
    "SceneCompleted": SpanObserver._scene_completed,
    "SceneFailed": SpanObserver._scene_failed,
    "ActStarted": lambda self, e: self._step_start(e, "act", e.step),
    "ActCompleted": SpanObserver._act_completed,
    "ActFailed": SpanObserver._act_failed,
    "ActCancelled": SpanObserver._act_cancelled,
    "ChorusStarted": lambda self, e: self._step_start(e, "chorus", e.step),
    "ChorusCompleted": SpanObserver._chorus_completed,
    "ChorusFailed": SpanObserver._chorus_failed,
    "CompensationStarted": SpanObserver._compensation_started,
    "CompensationCompleted": SpanObserver._compensation_completed,
    "CompensationStepStarted": SpanObserver._undo_started,
    "CompensationStepCompleted": SpanObserver._undo_completed,
    "CompensationStepFailed": SpanObserver._undo_failed,
    "AttemptFinished": _hedge.attempt_finished,
    "HedgeSpawned": _hedge.hedge_spawned,
    "SignalStarted": _hedge.signal_started,
    "IgnitionCompleted": _hedge.ignition_completed,
}
"""Event type name -> handler: the one table to adapt when events change."""
