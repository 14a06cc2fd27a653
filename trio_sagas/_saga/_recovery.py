"""Recovery: roll back (or resume) every run whose process died.

:func:`recover` works through the RUNNING runs in batches of
:data:`RECOVERY_CONCURRENCY`: one read fetches a batch's entries, so that the
scene definitions are checked against the journal before anything is
claimed (a mismatch is reported and the run left claimable); one call
claims the batch and reads it again as of the claim
(:meth:`BatchedJournal.claim_and_load`); then the batch's runs are rolled back
concurrently (:mod:`._claimed`), so that a group-committing journal carries
their writes in few syncs. The next batch is read while this one runs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, final

import attrs
import trio

from .._events import SILENT, Emitter, Observer
from .._util import lone_cancelled
from .._validate import check_sync_observer, check_timeout
from ._claimed import next_seq, roll_back_claimed, scene_map
from ._claims import claim_and_load, read_events
from ._journal import (
    ClaimedRun,
    Journal,
    JournalEntry,
    RunClaimedError,
    RunDamagedError,
    RunRecord,
    RunStatus,
    check_journal,
)
from ._model import Scene
from ._records import SagaResult
from ._replay import Replay, ReplayMismatch

HELD_ELSEWHERE: Final = (
    "not claimable: held by a live worker (still running, or being recovered "
    "by another call), or written to within stale_after"
)
"""The one :attr:`SkippedRun.reason` of a RUNNING run :func:`recover` could
not claim: a live worker holds it (the process running it, or another
``recover()``/``run_worker`` that claimed it first), or ``stale_after`` spared it."""

RECOVERY_CONCURRENCY: Final = 64
"""At most this many runs are rolled back at once by one :func:`recover` call,
and claimed per journal call (enough for a group-committing journal to carry
many runs' writes in one sync, and for 20 runs with a slow undo to be undone
in one round)."""

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
    :data:`HELD_ELSEWHERE`. Runs are claimed in batches and rolled back
    concurrently, at most :data:`RECOVERY_CONCURRENCY` at once; the report
    lists them in the journal's order (oldest first). A second call finds
    nothing to do.

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
        JournalError: the journal could not be read or written (the runs
            already claimed are finished first).
    """
    journal = check_journal(journal)
    by_name = scene_map(scenes)
    check_sync_observer(observer)
    check_timeout(stale_after, "stale_after", allow_none=False)
    emitter = SILENT if observer is None else Emitter(observer)
    runs, damaged = await _running_runs(journal)
    work = _Recovery(journal, deps, emitter, stale_after)
    work.outcomes += [
        SkippedRun(d.run_id, d.scene or "?", f"{DAMAGED}: {d.reason}") for d in damaged
    ]
    todo: list[tuple[int, RunRecord, Scene]] = []
    for record in runs:
        scene = by_name.get(record.scene)
        if scene is None:
            work.outcomes.append(
                SkippedRun(
                    record.run_id,
                    record.scene,
                    f"scene {record.scene!r} was not passed to recover()",
                )
            )
        else:
            todo.append((len(work.outcomes), record, scene))
            work.outcomes.append(None)
    try:
        if todo:
            await _recover_all(journal, work, todo)
    except BaseExceptionGroup as group:
        cancelled = lone_cancelled(group)
        if cancelled is not None:
            raise cancelled from None
        raise
    if work.failures:
        raise work.failures[0]
    return RecoveryReport(
        tuple(o for o in work.outcomes if isinstance(o, SagaResult)),
        tuple(o for o in work.outcomes if isinstance(o, SkippedRun)),
    )


async def _recover_all(
    journal: Journal, work: _Recovery, todo: list[tuple[int, RunRecord, Scene]]
) -> None:
    # The lease is renewed throughout, also while claimed runs wait for a
    # slot (a journal not entered with ``async with`` beats only here).
    async with journal.hold(), trio.open_nursery() as nursery:
        size = RECOVERY_CONCURRENCY
        for start in range(0, len(todo), size):
            if not await work.batch(nursery, todo[start : start + size]):
                break  # the journal failed: finish what was claimed, then raise


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


def _start(nursery: trio.Nursery, group: list[Callable[[], Awaitable[None]]]) -> None:
    for task in group:
        nursery.start_soon(task)
    group.clear()


@attrs.define(eq=False)
class _Recovery:
    """One recover() call: its outcomes (by index), failures, and slots."""

    journal: Journal
    deps: Any
    emitter: Emitter
    stale_after: float
    outcomes: list[SagaResult | SkippedRun | None] = attrs.Factory(list)
    failures: list[Exception] = attrs.Factory(list)
    slots: trio.Semaphore = attrs.Factory(lambda: trio.Semaphore(RECOVERY_CONCURRENCY))

    async def batch(
        self, nursery: trio.Nursery, todo: Sequence[tuple[int, RunRecord, Scene]]
    ) -> bool:
        """Check and claim one batch, then start its rollbacks as slots free.

        The claim comes first: it is written while the previous batch's
        rollbacks write (one sync for both), and the batch starts when they
        end -- in groups, all the runs that have a slot at once, so that
        their writes keep sharing syncs, and one slow run holds up nothing
        but its own slot. Returns False if the journal failed (the error is
        in :attr:`failures`; nothing more is claimed).
        """
        try:
            checked = await self.check(todo)
            claimed = (
                await claim_and_load(
                    self.journal,
                    [record.run_id for _, record, _, _, _ in checked],
                    limit=len(checked),
                    stale_after=self.stale_after,
                )
                if checked
                else ()
            )
        except Exception as exc:
            self.failures.append(exc)
            return False
        by_id = {c.fence.run_id: c for c in claimed}
        group: list[Callable[[], Awaitable[None]]] = []
        for index, record, scene, replay, entries in checked:
            got = by_id.get(record.run_id)
            if got is None:
                nursery.start_soon(self.unclaimed, index, record)
                continue
            # Written to since it was read (rare): replayed again from the claim.
            same = next_seq(got.entries) == next_seq(entries)
            try:
                self.slots.acquire_nowait()
            except trio.WouldBlock:
                # Start the runs that have a slot together (their writes then
                # share syncs), then wait: a slot frees when a run ends, and the
                # runs that end with it free theirs before this task runs again.
                _start(nursery, group)
                await self.slots.acquire()
            group.append(
                functools.partial(
                    self.roll_back, index, record, scene, got, replay if same else None
                )
            )
        _start(nursery, group)
        return True

    async def check(
        self, todo: Sequence[tuple[int, RunRecord, Scene]]
    ) -> list[tuple[int, RunRecord, Scene, Replay, tuple[JournalEntry, ...]]]:
        """Read the batch's entries in one call and check the definitions
        against them, before anything is claimed: a run that does not fit
        (or is damaged) is reported, and stays claimable for a later call."""
        loaded = await read_events(
            self.journal, [record.run_id for _, record, _ in todo]
        )
        checked = []
        for (index, record, scene), entries in zip(todo, loaded, strict=True):
            if isinstance(entries, RunDamagedError):
                self.outcomes[index] = SkippedRun(
                    record.run_id, record.scene, f"{DAMAGED}: {entries}"
                )
                continue
            try:
                replay = Replay(
                    record,
                    scene,
                    entries,
                    decode=self.journal.codec.decode,
                    deps=self.deps,
                    retry_failed=False,
                )
            except ReplayMismatch as exc:
                self.outcomes[index] = SkippedRun(record.run_id, record.scene, str(exc))
                continue
            checked.append((index, record, scene, replay, entries))
        return checked

    async def unclaimed(self, index: int, record: RunRecord) -> None:
        """Why a run of the batch was not claimed (None: it finished meanwhile)."""
        try:
            now = await self.journal.get_run(record.run_id)
        except Exception as exc:
            self.failures.append(exc)
            return
        if now is not None and now.status is RunStatus.NEEDS_INTERVENTION:
            self.outcomes[index] = SkippedRun(
                record.run_id, record.scene, CLAIMED_TOO_OFTEN
            )
        elif now is None or now.status is RunStatus.RUNNING:
            self.outcomes[index] = SkippedRun(
                record.run_id, record.scene, HELD_ELSEWHERE
            )

    async def roll_back(
        self,
        index: int,
        record: RunRecord,
        scene: Scene,
        claimed: ClaimedRun,
        replay: Replay | None,
    ) -> None:
        try:
            self.outcomes[index] = await roll_back_claimed(
                self.journal,
                claimed.fence,
                scene,
                deps=self.deps,
                emitter=self.emitter,
                manual=False,
                loaded=(claimed.record, claimed.entries),
                checked=replay,
                previous_owner=record.owner,
            )
        except ReplayMismatch as exc:
            self.outcomes[index] = SkippedRun(record.run_id, record.scene, str(exc))
        except RunClaimedError:
            self.outcomes[index] = SkippedRun(
                record.run_id, record.scene, HELD_ELSEWHERE
            )
        except RunDamagedError as exc:  # this run only: the others go on
            self.outcomes[index] = SkippedRun(
                record.run_id, record.scene, f"{DAMAGED}: {exc}"
            )
        except Exception as exc:  # the first is raised once the others ended
            self.failures.append(exc)
        finally:
            self.slots.release()
