"""Rolling back one claimed run: the code recover(), run_worker and
compensate_run share.

A claimed run's records are rebuilt from its journal entries
(:mod:`._replay`) and handed to the runner's own rollback code, continuing
the run's event stream under this worker's lease. So a recovered rollback
has the runner's semantics and events: reverse completion order, choruses
branch-parallel, nested sagas as units, every undo shielded, bounded,
retried and journaled (intent first). A run whose scene says
``on_crash=OnCrash.RESUME`` and that was not failing goes on instead
(:mod:`._resume`). :func:`compensate_run` is the operator's call for one
finished run; batches of crashed runs are :mod:`._recovery`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._compensation import CompensationReport
from .._events import Emitter, Observer
from .._outcome import Status
from .._validate import check_label, check_sync_observer, check_unique
from ._events import CompensationStepCompleted, CompensationStepFailed
from ._journal import (
    Fence,
    Journal,
    JournalEntry,
    LeaseLostError,
    RunClaimedError,
    RunNotFoundError,
    RunRecord,
    RunStatus,
    check_journal,
)
from ._model import OnCrash, Scene
from ._recorder import JournalRecorder
from ._records import SagaResult
from ._replay import Replay, ReplayMismatch
from ._resume import resume_claimed
from ._runner import Runner


def scene_map(scenes: Mapping[str, Scene] | Iterable[Scene]) -> dict[str, Scene]:
    """The scene definitions by name, checked (types, duplicates, keys)."""
    given: object = scenes
    if isinstance(given, Mapping):
        items = list(given.items())
    elif isinstance(given, Iterable) and not isinstance(given, (str, bytes)):
        items = [(getattr(s, "name", None), s) for s in given]
    else:
        raise TypeError(
            f"scenes must map scene names to Scenes (or list Scenes), got {scenes!r}"
        )
    out: dict[str, Scene] = {}
    check_unique([name for name, _ in items], "scenes")
    for name, scene in items:
        if not isinstance(scene, Scene):
            raise TypeError(f"scenes: every value must be a Scene, got {scene!r}")
        if name != scene.name:
            raise ValueError(
                f"scenes: key {name!r} does not match the scene's name {scene.name!r}"
            )
        out[name] = scene
    return out


def next_seq(entries: Sequence[JournalEntry]) -> int:
    """The ``seq`` the next entry of a run whose journal holds *entries* gets."""
    return entries[-1].seq + 1 if entries else 0


async def roll_back_claimed(
    journal: Journal,
    fence: Fence,
    scene: Scene,
    *,
    deps: Any,
    emitter: Emitter,
    manual: bool,
    loaded: tuple[RunRecord, tuple[JournalEntry, ...]] | None = None,
    checked: Replay | None = None,
    previous_owner: str | None = None,
) -> SagaResult:
    """Roll back one run this worker claimed -- or, if its scene says
    :attr:`OnCrash.RESUME` and it was not failing, go on with it
    (:func:`resume_claimed`); write its final status.

    *loaded* is the run's record and entries as of the claim
    (:meth:`BatchedJournal.claim_and_load`), saving two reads; without it they are
    read here. *checked*, a replay of the same entries (built before the
    claim to check the definitions), is then used as is.

    Raises:
        ReplayMismatch: the journal and the definitions do not fit.
        RunClaimedError: the lease lapsed (or the run was claimed) meanwhile:
            no further undo ran here.
    """
    run_id = fence.run_id
    async with journal.hold() as lease_scope:
        with lease_scope:
            if loaded is None:
                # Read after the claim: nobody else writes to the run now.
                record = await journal.get_run(run_id)
                if record is None:
                    raise RunNotFoundError(f"no run {run_id!r} in journal {journal!r}")
                entries = await journal.events(run_id)
                checked = None
            else:
                record, entries = loaded
            replay = checked or Replay(
                record,
                scene,
                entries,
                decode=journal.codec.decode,
                deps=deps,
                retry_failed=manual,
            )
            state = None if record.state is None else replay.decoded(record.state)
            if not manual and scene.on_crash is OnCrash.RESUME and replay.resumable():
                return await resume_claimed(
                    journal,
                    fence,
                    scene,
                    replay,
                    state,
                    first_seq=next_seq(entries),
                    deps=deps,
                    emitter=emitter,
                    previous_owner=previous_owner,
                )
            recorder = JournalRecorder(
                run_id,
                emitter,
                journal,
                fence,
                first_seq=next_seq(entries),
                state=state,
                lease_scope=lease_scope,
            )
            replay.bind(recorder)
            runner = Runner(run_id, state, deps, recorder)
            for group in replay.close_crashed(uncertain=True):
                await runner.roll_back(group)
            top = replay.top
            if manual and top is not None and top.has_undo():
                await runner.roll_back(top)  # the operator asked: undo everything left
            failed = set(replay.undo_failed)
            for event in recorder.events:
                if type(event) is CompensationStepCompleted:
                    failed.discard(event.step)
                elif type(event) is CompensationStepFailed:
                    failed.add(event.step)
            if failed:
                status = RunStatus.NEEDS_INTERVENTION
            elif top is not None and top.has_undo():
                status = RunStatus.FAILED
            else:
                status = RunStatus.COMPENSATED
            await recorder.finish(status)
        if lease_scope.cancelled_caught:
            raise LeaseLostError(
                f"run {run_id!r}: the lease of worker {fence.worker!r} ran out "
                "during its rollback; left to the worker that claims it"
            )
    recorder.check()
    failure = replay.failure(not manual)
    return SagaResult(
        run_id=run_id,
        status=Status.FAILED,
        state=runner.state,
        error=failure,
        failed_step=failure.step,
        compensation=CompensationReport(tuple(runner.undo_outcomes)),
        events=recorder.log(),
        journal_wait=recorder.waited,
    )


async def compensate_run(
    journal: Journal,
    run_id: str,
    scenes: Mapping[str, Scene] | Iterable[Scene],
    *,
    deps: Any = None,
    observer: Observer | None = None,
) -> SagaResult:
    """Compensate a finished, failed run by id, or retry its failed undos.

    For a run that ended FAILED (its top scene is not a saga, so completed
    steps were left) every completed step not yet undone is compensated; for
    one that ended NEEDS_INTERVENTION the undos that failed are tried again
    (with the same idempotency keys) along with anything not yet undone. An
    undo journaled as completed never runs again, so calling this twice is
    harmless: a COMPENSATED run is returned as is.

    Args:
        journal: The journal the run was written to.
        run_id: The run.
        scenes: The scene definitions (the run's must be among them).
        deps: Passed to every undo as ``ctx.deps``.
        observer: Receives the events.

    Returns:
        A :class:`SagaResult` (status FAILED; ``compensation`` and
        ``events`` are this call's). The journal's status becomes COMPENSATED,
        or NEEDS_INTERVENTION if an undo failed again.

    Raises:
        RunNotFoundError: no such run.
        ValueError: the run succeeded or is still RUNNING (call
            :func:`recover` for runs whose process died), or the scene
            definitions do not match the journal.
        JournalError: the journal failed, or another caller is compensating
            the run right now (a :exc:`RunClaimedError`).
    """
    journal = check_journal(journal)
    check_label(run_id, "run_id")
    by_name = scene_map(scenes)
    check_sync_observer(observer)
    record = await journal.get_run(run_id)
    if record is None:
        raise RunNotFoundError(f"no run {run_id!r} in journal {journal!r}")
    if record.status is RunStatus.RUNNING:
        raise ValueError(
            f"run {run_id!r} has not finished (RUNNING); if its process died, "
            "recover() rolls it back"
        )
    if record.status is RunStatus.SUCCEEDED:
        raise ValueError(f"run {run_id!r} succeeded; there is nothing to compensate")
    scene = by_name.get(record.scene)
    if scene is None:
        raise ValueError(
            f"run {run_id!r} is of scene {record.scene!r}, which is not in scenes"
        )
    try:
        # Check the definitions against the journal before claiming anything.
        replay = Replay(
            record,
            scene,
            await journal.events(run_id),
            decode=journal.codec.decode,
            deps=deps,
            retry_failed=True,
        )
    except ReplayMismatch as exc:
        raise ValueError(f"run {run_id!r}: {exc}") from None
    if record.status is RunStatus.COMPENSATED:
        failure = replay.failure(False)
        return SagaResult(
            run_id=run_id,
            status=Status.FAILED,
            state=None if record.state is None else journal.codec.decode(record.state),
            error=failure,
            failed_step=failure.step,
            compensation=CompensationReport(),
        )
    fence = await journal.claim(
        run_id, statuses=(RunStatus.FAILED, RunStatus.NEEDS_INTERVENTION)
    )
    if fence is None:
        raise RunClaimedError(
            f"run {run_id!r} changed while being claimed (another "
            "compensate_run or recovery is at work on it)"
        )
    try:
        return await roll_back_claimed(
            journal, fence, scene, deps=deps, emitter=Emitter(observer), manual=True
        )
    except ReplayMismatch as exc:  # the run changed between the check and the claim
        raise ValueError(f"run {run_id!r}: {exc}") from None
