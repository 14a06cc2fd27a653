"""``run_scene``: one run, in memory or through a journal."""

from __future__ import annotations

import uuid
from typing import Any

import trio

from .._context import DepsT
from .._events import SILENT, Emitter, Observer, logger
from .._validate import check_label, check_sync_observer, check_type
from ._chorus import CHORUSES
from ._journal import (
    Fence,
    Journal,
    JournalError,
    LeaseLostError,
    RunClaimedError,
    RunStatus,
    check_journal,
)
from ._model import OnCrash, Scene
from ._recorder import JournalRecorder, MemoryRecorder
from ._records import Record, SagaResult, StepResult
from ._resumable import ResumableRecorder, ResumableRunner
from ._runner import Runner


def final_status(
    runner: Runner, recorder: JournalRecorder, result: StepResult | None, leftover: bool
) -> RunStatus | None:
    """The status a run ends with in the process that ran it.

    None (stay RUNNING) when a rollback was interrupted (a KeyboardInterrupt
    inside an undo): only a recovery can finish it, and a final status is
    written only when it is true.
    """
    if result is not None and result.ok:
        return RunStatus.SUCCEEDED
    if runner.open_rollbacks:
        return None
    if recorder.undo_failed():
        return RunStatus.NEEDS_INTERVENTION
    return RunStatus.FAILED if leftover else RunStatus.COMPENSATED


async def _run_durable(
    scene: Scene, state: Any, deps: Any, emitter: Emitter, run_id: str, journal: Journal
) -> SagaResult:
    codec = journal.codec
    try:
        encoded = codec.encode(state)
    except Exception as exc:
        raise TypeError(
            f"state: {codec!r} cannot encode {type(state).__qualname__} ({exc}); "
            "pass a codec that can (SQLiteJournal(path, codec=...))"
        ) from exc
    async with journal.hold() as lease_scope:
        fence = await journal.create_run(run_id, scene=scene.name, state=encoded)
        if lease_scope.cancel_called and fence.worker == journal.worker_id:
            # The id this hold was taken under was given up before the run
            # existed (the journal refused create_run: an operator expired
            # this live worker), and the run was created under the new id:
            # it is held under that id, not stopped with the old id's runs.
            async with journal.hold() as lease_scope:
                if journal.worker_id != fence.worker:
                    # That id was given up too (its local deadline passed
                    # while create_run ran): the run is stopped, as any run
                    # held under a given-up id.
                    lease_scope.cancel(reason="the run's worker id was given up")
                runner, recorder, result = await _start(
                    scene, state, deps, emitter, journal, fence, lease_scope
                )
        else:
            runner, recorder, result = await _start(
                scene, state, deps, emitter, journal, fence, lease_scope
            )
    recorder.check()
    return runner.result(result)


async def _start(
    scene: Scene,
    state: Any,
    deps: Any,
    emitter: Emitter,
    journal: Journal,
    fence: Fence,
    lease_scope: trio.CancelScope,
) -> tuple[Runner, JournalRecorder, StepResult]:
    """Run a new journaled run's scene under *lease_scope* (see :func:`drive`)."""
    run_id = fence.run_id
    # A RESUME run undoes nothing unjournaled (see _resumable).
    resume = scene.on_crash is OnCrash.RESUME
    recorder = (ResumableRecorder if resume else JournalRecorder)(
        run_id, emitter, journal, fence, state=state, lease_scope=lease_scope
    )
    runner = (ResumableRunner if resume else Runner)(run_id, state, deps, recorder)
    return runner, recorder, await drive(runner, recorder, scene, lease_scope, fence)


async def drive(
    runner: Runner,
    recorder: JournalRecorder,
    scene: Scene,
    lease_scope: trio.CancelScope,
    fence: Fence,
) -> StepResult:
    """Run a journaled run's scene under its lease; journal its final status.

    Shared by a new run and a resumed one. A final status is written only
    when it is true: never after the run was lost (claimed, or its lease
    lapsed); after an interruption only what the records prove.

    Raises:
        RunClaimedError: another worker claimed the run (nothing written).
        LeaseLostError: this worker's lease lapsed while the run ran.
    """
    run_id = fence.run_id
    leftover: list[Record] = []
    result: StepResult | None = None
    with lease_scope:
        try:
            result = await runner.scene(scene, scene.name, leftover)
        except RunClaimedError:
            raise  # lost the run: the new holder finishes it; write nothing
        except BaseException as exc:
            if not lease_scope.cancel_called:
                await recorder.finish(
                    final_status(runner, recorder, None, bool(leftover))
                )
            error = recorder.error
            if error is not None and exc is not error:
                if isinstance(exc, BaseExceptionGroup) and _only_journal(exc):
                    # Several branches of a Chorus met the same failure (a
                    # lost lease, a claimed run): the caller gets it once,
                    # bare, as ``except JournalError`` expects.
                    raise error from None
                logger.error(
                    "run %r: the journal failed (%r); it still says RUNNING",
                    run_id,
                    error,
                )
            raise
    if lease_scope.cancelled_caught or result is None:
        raise LeaseLostError(
            f"run {run_id!r}: lease of worker {fence.worker!r} lapsed while "
            "the run ran; it was stopped and is left to the worker that claims it"
        )
    await recorder.finish(final_status(runner, recorder, result, bool(leftover)))
    return result


def _only_journal(group: BaseExceptionGroup[BaseException]) -> bool:
    """Whether every exception in *group* is a journal failure or a Cancelled."""
    _, rest = group.split((JournalError, trio.Cancelled))
    return rest is None


async def run_scene(
    scene: Scene[DepsT],
    state: Any,
    *,
    deps: DepsT = None,  # type: ignore[assignment]  # None when not given
    observer: Observer | None = None,
    run_id: str | None = None,
    journal: Journal | None = None,
) -> SagaResult:
    """Run *scene* with *state*; never raises for a step failure.

    Steps run in order (a :class:`Chorus`'s branches concurrently). When a
    step fails inside a ``saga=True`` scene, that scene's completed steps are
    compensated in reverse order of completion -- shielded, each undo bounded
    and retried -- and the result says what happened.

    Args:
        scene: The top scene.
        state: Any object; every ``run``/``compensate`` receives it.
        deps: Passed to every step as ``ctx.deps``; its type must be the
            scene's (a ``Scene[Deps]`` takes a ``Deps``, checked by mypy).
        observer: Receives every event as it happens.
        run_id: The run's id (default: a random hex string); appears in
            events and idempotency keys. With a journal it must be new.
        journal: Make the run durable (see :doc:`durable`): every event is
            journaled, intents before the code they announce runs, with the
            state; :func:`recover` rolls the run back if this process dies.
            The run runs under the journal's worker lease (:meth:`Journal.hold`).

    Returns:
        A :class:`SagaResult`.

    Raises:
        trio.Cancelled: cancelled from outside -- after the completed steps of
            every enclosing saga scene were compensated.
        RunIdInUseError: *run_id* is already in *journal* (nothing ran).
        TypeError: the journal's codec cannot encode *state* (nothing ran).
        RunClaimedError: this worker lost the run (its lease lapsed, or an
            operator expired it and another worker claimed it): no further
            step and no undo ran here; the worker that claims it rolls it back.
        JournalError: the journal failed during the run. No step runs after
            that; the run's sagas were rolled back in memory, and the journal
            still says RUNNING, so :func:`recover` will roll it back again
            (compensation is at-least-once: use ``ctx.idempotency_key``). A
            RESUME scene is not rolled back here (no undo runs unjournaled):
            :func:`recover` finishes it.
    """
    if type(scene) is not Scene:  # isinstance() first: this is the hot path
        check_type(scene, Scene, "scene")  # type: ignore[unreachable]
    if observer is None:
        emitter = SILENT
    else:
        check_sync_observer(observer)
        emitter = Emitter(observer)
    run_id = uuid.uuid4().hex if run_id is None else check_label(run_id, "run_id")
    if journal is not None:
        journal = check_journal(journal)
    # A run is independent of any run it is called from (an act may call
    # run_scene): the enclosing run's choruses must not see its failures.
    # Outside any chorus there is nothing to hide (saves a set and a reset,
    # ~0.2 us per run).
    token = CHORUSES.set(()) if CHORUSES.get() else None
    try:
        if journal is not None:
            return await _run_durable(scene, state, deps, emitter, run_id, journal)
        runner = Runner(run_id, state, deps, MemoryRecorder(run_id, emitter))
        return runner.result(await runner.scene(scene, scene.name, []))
    finally:
        if token is not None:
            CHORUSES.reset(token)
