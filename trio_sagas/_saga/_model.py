"""Saga step definitions: Act, Scene, Chorus. Immutable, validated on construction."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeAlias, final

import attrs

from .._context import DepsT, StepContext
from .._retry import RetryPolicy
from .._validate import (
    check_async,
    check_bool,
    check_choice,
    check_int,
    check_name,
    check_optional_instance,
    check_timeout,
    check_type,
)

StepFn: TypeAlias = Callable[[StepContext[DepsT], Any], Awaitable[Any]]
"""``async def fn(ctx, state)``: an act's ``run`` or ``compensate``; generic
over the type of ``ctx.deps`` (``StepFn[Deps]``; a bare ``StepFn`` is
``StepFn[Any]``)."""

DEFAULT_COMPENSATION_RETRY = RetryPolicy(
    max_attempts=3, initial_backoff=0.5, max_backoff=5.0
)
"""The retry policy of an act's compensation when none is given: three tries
(fixed and conservative, rather than derived from the act's own retry)."""


def _check_retry(value: object, argument: str) -> None:
    check_optional_instance(value, RetryPolicy, argument)
    if isinstance(value, RetryPolicy) and value.hedge is not None:
        raise ValueError(
            f"{argument}: hedged acts are not supported (hedge={value.hedge!r}); "
            "call trio_sagas.Executor inside the act's run to hedge a request"
        )


@final
class ChorusMode(enum.Enum):
    """How a Chorus reacts to a failing branch."""

    FAIL_FAST = "fail_fast"
    """The first failure cancels the other branches; the chorus fails."""
    FAIL_AFTER_ALL = "fail_after_all"
    """Every branch runs to its end; the chorus fails if any failed."""
    PARTIAL_SUCCESS = "partial_success"
    """Every branch runs to its end; the chorus succeeds if any succeeded."""


@final
class OnCrash(enum.Enum):
    """What recover() and run_worker do with a run whose process died.

    Set on the run's top :class:`Scene` (``on_crash=``)."""

    ROLL_BACK = "roll_back"
    """Undo the completed steps, in reverse (the default): the crash ends the run."""
    RESUME = "resume"
    """Finish the run: completed acts are not run again (their results and the
    journaled state are restored), the uncertain act is handled per its
    ``uncertain``, and the scene goes on from where it stood. A run that was
    already failing (a step failed, a rollback began) is rolled back instead;
    a branch failure a completed PARTIAL_SUCCESS chorus tolerated does not
    count."""


@final
class Uncertain(enum.StrEnum):
    """What to do with an *uncertain* act: the journal says its ``run``
    started, not how it ended (the process died meanwhile)."""

    COMPENSATE = "compensate"
    """Call ``compensate`` (``ctx.result`` None), as if it had completed; a
    resumed run then runs the act again, under the same key (so not for a
    ``run`` the far side deduplicates by key: use RETRY there)."""
    RETRY = "retry"
    """A resumed run runs the act again under the same
    ``ctx.idempotency_key`` (for a ``run`` the far side deduplicates by key);
    a rollback compensates it, as COMPENSATE does."""
    SKIP = "skip"
    """Leave it: ``run`` has no lasting effect unless it completed (it
    commits atomically at its very end). A resumed run runs it again."""


_UNCERTAIN = tuple(u.value for u in Uncertain)


@final
@attrs.frozen(init=False)
class Act(Generic[DepsT]):
    """One step of work, with an optional undo.

    Generic over the type of its steps' ``ctx.deps``: an act whose ``run``
    takes a ``StepContext[Deps]`` is an ``Act[Deps]``, inferred, so that
    :func:`run_scene` checks the ``deps=`` it is given against the steps.

    Args:
        name: Unique among its siblings; no ``/``.
        run: ``async def run(ctx, state)``; its return value becomes
            ``ctx.result`` in ``compensate``.
        compensate: ``async def compensate(ctx, state)``, or None.
        timeout: Seconds per try of ``run`` (> 0); None for no bound.
        retry: Retry ``run`` per this policy (no hedging).
        compensation_timeout: Seconds per try of the undo; default: the
            act's ``timeout``, else 30 s.
        compensation_retry: Retry policy for the undo; default
            :data:`DEFAULT_COMPENSATION_RETRY` (three tries).
        uncertain: What :func:`recover` does when the journal says ``run``
            started but not how it ended (the process died meanwhile): an
            :class:`Uncertain` (or its value as a string).
            ``Uncertain.COMPENSATE`` (default: call ``compensate`` with
            ``ctx.result`` None, so it must cope with work that may not have
            happened; a resumed run then runs the act again),
            ``Uncertain.RETRY`` (a resumed run runs it again under the same
            idempotency key; a rollback compensates it) or
            ``Uncertain.SKIP`` (a rollback leaves it: ``run`` has no lasting
            effect unless it completed; a resumed run runs it again).
        compensate_on_failure: True when ``run``'s side effect may have
            happened even though ``run`` failed (a timeout after the server
            charged the card): a rollback then calls ``compensate`` for this
            act after its own failure (or cancellation) too, with
            ``ctx.result`` None. Default False: a failed act's own
            ``compensate`` never runs. Needs a ``compensate``.

    Raises:
        TypeError: a sync ``run``/``compensate``, wrong argument types.
        ValueError: a bad name, a non-positive timeout, a hedged retry, an
            unknown ``uncertain``, ``compensate_on_failure`` without
            ``compensate``.
    """

    name: str
    run: StepFn[DepsT]
    compensate: StepFn[DepsT] | None
    timeout: float | None
    retry: RetryPolicy | None
    compensation_timeout: float | None
    compensation_retry: RetryPolicy | None
    uncertain: Uncertain
    compensate_on_failure: bool

    def __init__(
        self,
        name: str,
        run: StepFn[DepsT],
        *,
        compensate: StepFn[DepsT] | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        compensation_timeout: float | None = None,
        compensation_retry: RetryPolicy | None = None,
        uncertain: Uncertain | str = Uncertain.COMPENSATE,
        compensate_on_failure: bool = False,
    ) -> None:
        check_name(name)
        if run is None:
            raise TypeError(f"Act {name!r}: run is required (an async function)")
        check_async(run, f"Act {name!r}: run")
        if compensate is not None:
            check_async(compensate, f"Act {name!r}: compensate")
        timeout = check_timeout(timeout, "timeout", allow_zero=False)
        compensation_timeout = check_timeout(
            compensation_timeout, "compensation_timeout", allow_zero=False
        )
        _check_retry(retry, "retry")
        _check_retry(compensation_retry, "compensation_retry")
        if not isinstance(uncertain, Uncertain):
            check_choice(uncertain, _UNCERTAIN, f"Act {name!r}: uncertain")
            uncertain = Uncertain(uncertain)
        check_bool(compensate_on_failure, f"Act {name!r}: compensate_on_failure")
        if compensate_on_failure and compensate is None:
            raise ValueError(
                f"Act {name!r}: compensate_on_failure=True needs a compensate= "
                "to call after a failure"
            )
        self.__attrs_init__(
            name,
            run,
            compensate,
            timeout,
            retry,
            compensation_timeout,
            compensation_retry,
            uncertain,
            compensate_on_failure,
        )

    @property
    def undo_timeout(self) -> float | None:
        """The per-try timeout of this act's undo actions (None: the default)."""
        return (
            self.compensation_timeout
            if self.compensation_timeout is not None
            else self.timeout
        )

    @property
    def undo_retry(self) -> RetryPolicy:
        """The retry policy of this act's undo actions."""
        return self.compensation_retry or DEFAULT_COMPENSATION_RETRY


Step: TypeAlias = "Act[DepsT] | Scene[DepsT] | Chorus[DepsT]"
"""A step of a scene or chorus; ``Step[Deps]`` for steps of typed deps."""


def _check_steps(
    owner: str, name: str, steps: Iterable[object]
) -> tuple[Step[Any], ...]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise TypeError(
            f"{owner} {name!r}: steps must be a sequence of steps, got {steps!r}"
        )
    result: list[Step[Any]] = []
    seen: set[str] = set()
    for step in steps:
        if not isinstance(step, (Act, Scene, Chorus)):
            raise TypeError(
                f"{owner} {name!r}: every item of steps must be an Act, Scene or Chorus, "
                f"got {step!r}"
            )
        if step.name in seen:
            raise ValueError(f"{owner} {name!r}: duplicate step name {step.name!r}")
        seen.add(step.name)
        result.append(step)
    return tuple(result)


@final
@attrs.frozen(init=False)
class Scene(Generic[DepsT]):
    """Steps run in order. With ``saga=True``, a failure compensates the
    completed steps in reverse order of completion.

    Generic over its steps' deps type, like :class:`Act` (inferred from the
    steps: a scene of ``Act[Deps]`` is a ``Scene[Deps]``).

    Args:
        name: No ``/``; unique among its siblings.
        steps: Acts, Scenes and Choruses (names unique). Empty is a no-op.
        saga: Whether a failure inside rolls the completed steps back.
        on_crash: For a run's top scene: what :func:`recover` does if the
            process running it died (:attr:`OnCrash.ROLL_BACK`, the default,
            or :attr:`OnCrash.RESUME`). A nested scene goes with its run.
    """

    name: str
    steps: tuple[Step[DepsT], ...]
    saga: bool
    on_crash: OnCrash
    # (path, its plan) where the scene last ran: see _plan().
    _plans: list[tuple[str, tuple[tuple[Any, str, bool], ...]]] = attrs.field(
        init=False,
        factory=lambda: [("", ())],
        eq=False,
        hash=False,
        repr=False,
    )

    def __init__(
        self,
        name: str,
        steps: Iterable[Step[DepsT]] = (),
        *,
        saga: bool = False,
        on_crash: OnCrash = OnCrash.ROLL_BACK,
    ) -> None:
        check_name(name)
        check_bool(saga, f"Scene {name!r}: saga")
        check_type(on_crash, OnCrash, f"Scene {name!r}: on_crash")
        self.__attrs_init__(name, _check_steps("Scene", name, steps), saga, on_crash)

    def _plan(self, path: str) -> tuple[tuple[Any, str, bool], ...]:
        """This scene's steps run at *path*: ``(step, its path, plain)`` each,
        *plain* for an act without retry or timeout (the runner may run it
        inline).

        A scene runs at the same path every run (a top scene's is its name),
        so this is built once, not per step and run: saves an f-string and
        three checks per step (~0.1 us of ~0.7 us of overhead) and shares
        the path strings between runs' records.
        """
        cached = self._plans[0]
        if cached[0] == path:  # most often the very same string: no compare
            return cached[1]
        plan = tuple(
            (
                step,
                f"{path}/{step.name}",
                type(step) is Act and step.retry is None and step.timeout is None,
            )
            for step in self.steps
        )
        self._plans[0] = (path, plan)  # one store: safe across threads
        return plan


@final
@attrs.frozen(init=False)
class Chorus(Generic[DepsT]):
    """Branches run concurrently (generic over deps, like Scene).

    Args:
        name: No ``/``; unique among its siblings.
        steps: The branches (names unique).
        mode: FAIL_FAST (default), FAIL_AFTER_ALL or PARTIAL_SUCCESS.
        max_workers: At most this many branches run at once (FIFO).
        timeout: Seconds for the whole chorus (> 0); branches still running
            then are cancelled (``STEP_TIMEOUT``) and the chorus TIMED_OUT.
    """

    name: str
    steps: tuple[Step[DepsT], ...]
    mode: ChorusMode
    max_workers: int | None
    timeout: float | None

    def __init__(
        self,
        name: str,
        steps: Iterable[Step[DepsT]] = (),
        *,
        mode: ChorusMode = ChorusMode.FAIL_FAST,
        max_workers: int | None = None,
        timeout: float | None = None,
    ) -> None:
        check_name(name)
        check_type(mode, ChorusMode, f"Chorus {name!r}: mode")
        if max_workers is not None:
            check_int(max_workers, "max_workers", minimum=1)
        timeout = check_timeout(timeout, "timeout", allow_zero=False)
        self.__attrs_init__(
            name, _check_steps("Chorus", name, steps), mode, max_workers, timeout
        )
