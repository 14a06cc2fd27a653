"""The hedged retry executor: the public entry point and what it keeps between calls.

The work of one call lives in :mod:`._call` (the retry loop and the attempt
timeline) and :mod:`._group` (one retry group, hedged or not). Between
calls the executor keeps only its configuration and a bounded number of
latency windows (least recently used first out).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, final

from .._events import Emitter, Observer
from .._outcome import Outcome
from .._retry import AttemptInfo, Classifier, RetryPolicy, default_classifier
from .._validate import (
    check_async,
    check_int,
    check_label,
    check_optional_sync_callable,
    check_str,
    check_sync_observer,
    check_type,
    describe_callable,
)
from ._call import Call
from ._latency import LatencyWindow
from ._trigger import HedgeTrigger, TriggerRegistry


@final
class Executor:
    """Runs an async operation under a RetryPolicy, hedged.

    One executor may serve any number of concurrent calls. For calls whose
    hedge trigger reads latencies (a :class:`~trio_sagas.LatencyTrigger`,
    or any trigger without ``uses_latency = False``), it keeps a
    :class:`LatencyWindow` per call name, fed by those calls. It keeps at
    most *max_windows* of them: when a new name needs one, the window of
    the name least recently used goes (its samples are forgotten). Calls
    that do not hedge, or hedge on a fixed delay, keep no window.

    Args:
        triggers: Named triggers that :attr:`HedgePolicy.trigger` refers to
            (a registry, or a mapping to build one from).
        classifier: ``classifier(result) -> Classification | Classified``
            for each attempt's :mod:`outcome` result, used for every policy
            that has no ``classifier`` of its own (a policy's wins). Default:
            a value is SUCCESS, an exception RETRYABLE. It must be sync and
            quick; an exception it raises makes the attempt ABORT.
        observer: Receives every event (sync; errors are isolated); a
            sequence of observers is accepted too.
        rng: Random source for backoff jitter (seed it for reproducible runs).
        latency_window: Samples kept per window.
        max_windows: Latency windows kept at most (least recently used out).
    """

    __slots__ = (
        "_classifier",
        "_emit",
        "_max_windows",
        "_rng",
        "_triggers",
        "_window_size",
        "_windows",
    )

    def __init__(
        self,
        *,
        triggers: TriggerRegistry | Mapping[str, HedgeTrigger] | None = None,
        classifier: Classifier | None = None,
        observer: Observer | Sequence[Observer] | None = None,
        rng: random.Random | None = None,
        latency_window: int = 1000,
        max_windows: int = 1000,
    ) -> None:
        if triggers is None:
            triggers = TriggerRegistry()
        elif isinstance(triggers, Mapping):
            triggers = TriggerRegistry(triggers)
        elif not isinstance(triggers, TriggerRegistry):
            raise TypeError(
                f"triggers must be a TriggerRegistry, a mapping or None, got {triggers!r}"
            )
        check_optional_sync_callable(classifier, "classifier")
        check_sync_observer(observer)
        if rng is not None:
            check_type(rng, random.Random, "rng")
        self._window_size = check_int(latency_window, "latency_window", minimum=1)
        self._max_windows = check_int(max_windows, "max_windows", minimum=1)
        self._triggers = triggers
        self._classifier = classifier
        self._emit = Emitter(observer)
        self._rng = rng
        self._windows: OrderedDict[str, LatencyWindow] = OrderedDict()

    def __repr__(self) -> str:
        return f"<trio_sagas.Executor triggers={list(self._triggers)!r}>"

    @property
    def triggers(self) -> TriggerRegistry:
        """The registry named triggers are looked up in."""
        return self._triggers

    def latency(self, name: str) -> LatencyWindow | None:
        """The latency window of calls named *name*, or None if none is kept.

        Reading it does not count as a use for the least-recently-used order.

        Raises:
            TypeError: *name* is not a string.
        """
        return self._windows.get(check_str(name, "name", allow_empty=True))

    def _window(self, name: str) -> LatencyWindow:
        windows = self._windows
        window = windows.get(name)
        if window is None:
            if len(windows) >= self._max_windows:
                windows.popitem(last=False)
            window = windows[name] = LatencyWindow(size=self._window_size)
        else:
            windows.move_to_end(name)
        return window

    async def run(
        self,
        op: Callable[[AttemptInfo], Awaitable[Any]],
        *,
        policy: RetryPolicy,
        name: str | None = None,
    ) -> Outcome[Any]:
        """Run ``await op(attempt_info)`` per *policy* until it succeeds or gives up.

        Args:
            op: An async function taking an :class:`AttemptInfo`.
            policy: Retries, backoff, hedging, budgets and (optionally) the
                classifier.
            name: The call's name (events, outcome, latency window);
                defaults to the function's qualified name.

        Returns:
            An :class:`~trio_sagas.Outcome`: SUCCEEDED with the winner's
            value, or FAILED with the deciding attempt's error (and value, if
            a result was classified as a failure). ``attributes`` holds
            ``"attempts"`` (the :class:`AttemptRecord` timeline),
            ``"retry_groups"``, ``"classification"`` (the last group's
            result), ``"reason"`` when it failed (the classifier's reason,
            ``"retries_exhausted"``, ``"non_retryable"``, ``"abort"``,
            ``"budget_denied"``, ``"budget_error"`` or ``"trigger_error"``),
            and ``"missing_trigger"`` when the policy's trigger was not found.

        Raises:
            trio.Cancelled: the caller's scope was cancelled; every attempt
                was stopped at once and nothing is retried.
            TypeError: *op* is not an async function, *policy* is not a
                :class:`~trio_sagas.RetryPolicy` or *name* not a string.
            ValueError: *name* is empty.
        """
        check_async(op, "op")
        check_type(policy, RetryPolicy, "policy")
        name = describe_callable(op) if name is None else check_label(name, "name")
        classifier = policy.classifier or self._classifier or default_classifier
        call = Call(
            op=op,
            policy=policy,
            name=name,
            classifier=classifier,
            emit=self._emit,
            rng=self._rng,
            triggers=self._triggers,
            window_for=self._window,
        )
        return await call.run()
