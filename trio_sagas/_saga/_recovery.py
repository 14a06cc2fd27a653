"""Recovery and manual compensation of journaled runs.

Both claim a run (:meth:`Journal.claim`: only a run whose worker's lease
lapsed, or a finished one, is claimable), rebuild its records from the journal
(:mod:`._replay`) and hand them to the runner's own rollback code, continuing
the run's event stream under this worker's lease. So a recovered rollback has
the runner's semantics and events: reverse completion order, choruses
branch-parallel, nested sagas as units, every undo shielded, bounded, retried
and journaled (intent first).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, final

import attrs
import trio

from .._compensation import CompensationReport
from .._events import SILENT, Emitter, Observer
from .._outcome import Status
from .._util import lone_cancelled
from .._validate import check_label, check_sync_observer, check_timeout, check_unique
from ._events import CompensationStepCompleted, CompensationStepFailed
from ._journal import (
    Fence,
    Journal,
    JournalEntry,
    LeaseLostError,
    RunClaimedError,
    RunDamagedError,
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

HELD_ELSEWHERE: Final = (
    "not claimable: held by a live worker (still running, or being recovered "
    "by another call), or written to within stale_after"
)
"""The one :attr:`SkippedRun.reason` of a RUNNING run :func:`recover` could
not claim: a live worker holds it (the process running it, or another
``recover()``/``run_worker`` that claimed it first), or ``stale_after`` spared it."""

RECOVERY_CONCURRENCY: Final = 64
"""At most this many runs are rolled back at once by one :func:`recover` call
(enough for a group-committing journal to carry many runs' writes in one
sync, and for 20 runs with a slow undo to be undone in one round)."""

DAMAGED: Final = "damaged"
"""How the :attr:`SkippedRun.reason` of a run whose journal records cannot be
read starts (``"damaged: run 'r1' in ... cannot be read: ..."``)."""

CLAIMED_TOO_OFTEN: Final = "claimed too often: set NEEDS_INTERVENTION"
"""The :attr:`SkippedRun.reason` of a run whose claims reached the journal's
``max_claims`` (every takeover died): it needs an operator."""


@final
@attrs.frozen
class SkippedRun:
    """A RUNNING run that recover() did not touch, and why.

    Attributes:
        run_id: The run.
        scene: Its top scene's name.
        reason: Why it was left alone.
    """

    run_id: str
    scene: str
    reason: str


@final
@attrs.frozen
class RecoveryReport:
    """What recover() did.

    Attributes:
        results: One :class:`SagaResult` per run rolled back (status FAILED,
            ``error`` a :exc:`RecordedFailure`, ``compensation`` and
            ``events`` those of this recovery only) or resumed (a scene with
            ``on_crash=OnCrash.RESUME``: the result of the rest of the run,
            SUCCEEDED if it finished; ``events`` from its
            :class:`RunResumed`).
        skipped: Runs left alone: scenes not passed in, scene definitions
            that do not match the journal, runs held by a live worker
            (:data:`HELD_ELSEWHERE`), runs claimed too often.
    """

    results: tuple[SagaResult, ...] = ()
    skipped: tuple[SkippedRun, ...] = ()

    def __iter__(self) -> Iterator[SagaResult]:
        """Iterate over :attr:`results` (``for result in await recover(...)``)."""
        return iter(self.results)

    def __len__(self) -> int:
        """How many runs were rolled back."""
        return len(self.results)


def scene_map(scenes: Mapping[str, Scene] | Iterable[Scene]) -> dict[str, Scene]:
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


async def roll_back_claimed(
    journal: Journal,
    fence: Fence,
    scene: Scene,
    *,
    deps: Any,
    emitter: Emitter,
    manual: bool,
    entries: tuple[JournalEntry, ...] | None = None,
    checked: Replay | None = None,
    previous_owner: str | None = None,
) -> SagaResult:
    """Roll back one run this worker claimed -- or, if its scene says
    :attr:`OnCrash.RESUME` and it was not failing, go on with it
    (:func:`resume_claimed`); write its final status.

    *entries*, read before the claim, are used if the run's ``last_seq``
    says nobody wrote since (saving a read); else they are read again.
    *checked*, their replay (built before the claim to check the
    definitions), is then used as is (saving a second replay).

    Raises:
        ReplayMismatch: the journal and the definitions do not fit.
        RunClaimedError: the lease lapsed (or the run was claimed) meanwhile:
            no further undo ran here.
    """
    run_id = fence.run_id
    async with journal.hold() as lease_scope:
        with lease_scope:
            # Read after the claim: nobody else writes to the run now.
            record = await journal.get_run(run_id)
            if record is None:
                raise RunNotFoundError(f"no run {run_id!r} in journal {journal!r}")
            if entries is None or (
                (entries[-1].seq if entries else -1) != record.last_seq
            ):
                entries = await journal.events(run_id)
                checked = None
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
                    first_seq=entries[-1].seq + 1 if entries else 0,
                    deps=deps,
                    emitter=emitter,
                    previous_owner=previous_owner,
                )
            recorder = JournalRecorder(
                run_id,
                emitter,
                journal,
                fence,
                first_seq=entries[-1].seq + 1 if entries else 0,
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


async def recover(
    journal: Journal,
    scenes: Mapping[str, Scene] | Iterable[Scene],
    *,
    deps: Any = None,
    observer: Observer | None = None,
    stale_after: float = 0.0,
) -> RecoveryReport:
    """Roll back (or resume) every run the journal says is still RUNNING.

    Call it when a process starts, with the same scene definitions the
    crashed process used. Each run is first *claimed* -- possible only once
    the lease of the worker that ran it has lapsed -- then rolled back as
    described in :doc:`durable`, under this worker's lease; a run whose top
    scene says ``on_crash=OnCrash.RESUME`` and that was not failing is
    finished instead (completed acts restored, not run again). Several calls at
    once (in one process or many) split the work: each run is rolled back by
    one of them, and the others report it in ``skipped`` with the reason
    :data:`HELD_ELSEWHERE`. Runs are rolled back concurrently, at most
    :data:`RECOVERY_CONCURRENCY` at once; the report lists them in the
    journal's order (oldest first). A second call finds nothing to do.

    Args:
        journal: The journal the runs were written to.
        scenes: The scene definitions, by name (``{scene.name: scene}``) or
            as a list; runs of other scenes are reported, not touched.
        deps: Passed to every undo as ``ctx.deps``.
        observer: Receives the recovery's events.
        stale_after: Extra grace: only take over runs whose latest journal
            write is at least this many seconds old. Not needed for safety:
            a run is claimable only once its worker's lease has lapsed, so
            the default 0 is right with any number of processes.

    Returns:
        A :class:`RecoveryReport`: one :class:`SagaResult` per run rolled
        back, and the runs left alone.

    Raises:
        JournalError: the journal could not be read or written.
    """
    journal = check_journal(journal)
    by_name = scene_map(scenes)
    check_sync_observer(observer)
    check_timeout(stale_after, "stale_after", allow_none=False)
    emitter = SILENT if observer is None else Emitter(observer)
    runs, damaged = await _running_runs(journal)
    outcomes: list[SagaResult | SkippedRun | None] = [
        SkippedRun(d.run_id, d.scene or "?", f"{DAMAGED}: {d.reason}") for d in damaged
    ]
    first = len(outcomes)
    outcomes += [None] * len(runs)
    failures: list[Exception] = []
    limiter = trio.CapacityLimiter(RECOVERY_CONCURRENCY)

    async def one(index: int, record: RunRecord) -> None:
        scene = by_name.get(record.scene)
        if scene is None:
            outcomes[index] = SkippedRun(
                record.run_id,
                record.scene,
                f"scene {record.scene!r} was not passed to recover()",
            )
            return
        async with limiter:
            try:
                outcomes[index] = await _recover_one(
                    journal, record, scene, deps, emitter, stale_after
                )
            except RunDamagedError as exc:  # this run only: the others go on
                outcomes[index] = SkippedRun(
                    record.run_id, record.scene, f"{DAMAGED}: {exc}"
                )
            except Exception as exc:  # the first is raised once the others ended
                failures.append(exc)

    try:
        async with trio.open_nursery() as nursery:
            for index, record in enumerate(runs, first):
                nursery.start_soon(one, index, record)
    except BaseExceptionGroup as group:
        cancelled = lone_cancelled(group)
        if cancelled is not None:
            raise cancelled from None
        raise
    if failures:
        raise failures[0]
    return RecoveryReport(
        tuple(o for o in outcomes if isinstance(o, SagaResult)),
        tuple(o for o in outcomes if isinstance(o, SkippedRun)),
    )


async def _running_runs(
    journal: Journal,
) -> tuple[tuple[RunRecord, ...], tuple[Any, ...]]:
    """The RUNNING runs, and the runs too damaged to read (listed apart).

    A backend with ``scan_runs`` (SQLite) lists damaged runs instead of
    raising, so one damaged row never stops the recovery of the others.
    """
    scan = getattr(journal, "scan_runs", None)
    if scan is None:
        return await journal.runs(status=RunStatus.RUNNING), ()
    runs, damaged = await scan(status=RunStatus.RUNNING)
    return tuple(runs), tuple(damaged)


async def _recover_one(
    journal: Journal,
    record: RunRecord,
    scene: Scene,
    deps: Any,
    emitter: Emitter,
    stale_after: float,
) -> SagaResult | SkippedRun | None:
    """Claim and roll back one RUNNING run (None: it finished meanwhile)."""
    entries = await journal.events(record.run_id)
    try:
        # Definitions against the journal first: a mismatch is reported
        # without claiming the run, so a later call can still take it.
        checked = Replay(
            record,
            scene,
            entries,
            decode=journal.codec.decode,
            deps=deps,
            retry_failed=False,
        )
    except ReplayMismatch as exc:
        return SkippedRun(record.run_id, record.scene, str(exc))
    fence = await journal.claim(record.run_id, stale_after=stale_after)
    if fence is None:
        now = await journal.get_run(record.run_id)
        if now is not None and now.status is RunStatus.NEEDS_INTERVENTION:
            return SkippedRun(record.run_id, record.scene, CLAIMED_TOO_OFTEN)
        if now is not None and now.status is not RunStatus.RUNNING:
            return None  # it finished meanwhile: nothing to recover
        return SkippedRun(record.run_id, record.scene, HELD_ELSEWHERE)
    try:
        return await roll_back_claimed(
            journal,
            fence,
            scene,
            deps=deps,
            emitter=emitter,
            manual=False,
            entries=entries,
            checked=checked,
            previous_owner=record.owner,
        )
    except ReplayMismatch as exc:
        return SkippedRun(record.run_id, record.scene, str(exc))
    except RunClaimedError:
        return SkippedRun(record.run_id, record.scene, HELD_ELSEWHERE)


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
