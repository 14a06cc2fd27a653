"""``run_worker``: a task that takes over the runs of dead workers."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Mapping
from typing import Any

import trio

from .._events import SILENT, Emitter, Observer, logger
from .._validate import check_int, check_sync_observer, check_timeout
from ._claimed import roll_back_claimed, scene_map
from ._claims import claim_and_load
from ._journal import ClaimedRun, Journal, JournalError, RunClaimedError, check_journal
from ._model import Scene
from ._replay import ReplayMismatch

DEFAULT_BATCH = 10
"""How many runs :func:`run_worker` claims (and rolls back at once) per poll."""


async def _roll_back_one(
    journal: Journal,
    claimed: ClaimedRun,
    scene: Scene | None,
    *,
    deps: Any,
    emitter: Emitter,
) -> None:
    record = claimed.record
    if scene is None:
        logger.error(
            "run_worker: claimed run %r of scene %r, which it was not given; "
            "it stays RUNNING until this worker's lease lapses",
            record.run_id,
            record.scene,
        )
        return
    try:
        await roll_back_claimed(
            journal,
            claimed.fence,
            scene,
            deps=deps,
            emitter=emitter,
            manual=False,
            loaded=(record, claimed.entries),
        )
    except (ReplayMismatch, RunClaimedError) as exc:
        logger.error("run_worker: run %r left alone: %s", record.run_id, exc)
        return
    except Exception:
        # One run's journal failure must not stop the worker; the run stays
        # RUNNING and is claimed again once this lease lapses (max_claims).
        logger.exception("run_worker: rollback of run %r failed", record.run_id)
        return


async def run_worker(
    journal: Journal,
    scenes: Mapping[str, Scene] | Iterable[Scene],
    *,
    deps: Any = None,
    observer: Observer | None = None,
    batch: int = DEFAULT_BATCH,
    poll: float | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Take over, forever, the runs of workers whose lease lapsed.

    Every *poll* seconds (default: half the journal's lease, with ±50 %
    jitter so that workers do not poll in step) it claims up to *batch*
    RUNNING runs whose worker's lease has lapsed, with their entries, in one
    journal call (:meth:`BatchedJournal.claim_and_load`) and rolls them back (or resumes them, per
    their scene's ``on_crash``) exactly as :func:`recover` does, concurrently (at most *batch* at once), under this
    worker's lease. A run claimed ``max_claims`` times goes to
    NEEDS_INTERVENTION instead. Start it in a nursery next to the sagas::

        async with trio.open_nursery() as nursery:
            await nursery.start(trio_sagas.run_worker, journal, scenes)

    A rollback that fails (the journal, a definition that does not match),
    or a poll that fails with :exc:`JournalError` (the database restarting)
    once the worker has started, is logged on the ``trio_sagas`` logger and
    never stops the worker: it would otherwise take the runs of its nursery
    down with it.

    Args:
        journal: The shared journal.
        scenes: Every scene definition runs may be of (by name, or a list).
        deps: Passed to every undo as ``ctx.deps``.
        observer: Receives the rollbacks' events.
        batch: Runs claimed per poll (>= 1).
        poll: Seconds between polls (> 0, finite); default lease/2.
        task_status: For :meth:`trio.Nursery.start`: started once the worker
            is registered.

    Raises:
        TypeError, ValueError: bad arguments (before anything starts).
    """
    journal = check_journal(journal)
    by_name = scene_map(scenes)
    check_sync_observer(observer)
    check_int(batch, "batch", minimum=1)
    if poll is not None:
        check_timeout(poll, "poll", allow_zero=False, allow_inf=False)
    emitter = SILENT if observer is None else Emitter(observer)
    started: list[bool] = []  # set once the worker is registered
    while True:
        try:
            claimed = await _poll_once(
                journal, batch, by_name, deps, emitter, task_status, started
            )
        except JournalError as exc:
            if not started:
                raise  # not even registered: the caller of start() hears it
            # The database is away (restarting, unreachable): try again at
            # the next poll. Dying here would cancel the runs next to it.
            logger.warning("run_worker: claiming runs failed: %r", exc)
            claimed = ()
        interval = journal.lease / 2 if poll is None else poll
        if len(claimed) < batch:
            await trio.sleep(interval * random.uniform(0.5, 1.5))
        else:
            await trio.lowlevel.checkpoint()  # a full batch: more may be waiting


async def _poll_once(
    journal: Journal,
    batch: int,
    by_name: Mapping[str, Scene],
    deps: Any,
    emitter: Emitter,
    task_status: trio.TaskStatus[None],
    started: list[bool],
) -> tuple[ClaimedRun, ...]:
    """Claim (and load) one batch and roll its runs back (concurrently)."""
    async with journal.hold():
        if not started:
            task_status.started()
            started.append(True)
        claimed = await claim_and_load(journal, limit=batch)
        if claimed:
            async with trio.open_nursery() as nursery:
                for one in claimed:
                    nursery.start_soon(
                        functools.partial(
                            _roll_back_one,
                            journal,
                            one,
                            by_name.get(one.record.scene),
                            deps=deps,
                            emitter=emitter,
                        )
                    )
    return claimed
