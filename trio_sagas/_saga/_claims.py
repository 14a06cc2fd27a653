"""Batched claims and reads for recovery, with a fallback for any journal.

Recovery is dominated by hand-offs to the journal's thread (or round trips
to its server), not by the saga code: claiming a run, reading its record,
reading its entries were three per run. :meth:`BatchedJournal.claim_and_load`
and :meth:`BatchedJournal.read_events` do that for a whole batch of runs in
one call. Both are optional (:class:`BatchedJournal`): for a journal without
them these helpers make the per-run calls they replace, with the same results.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._events import logger
from ._journal import ClaimedRun, Journal, JournalEntry, RunDamagedError


async def read_events(
    journal: Journal, run_ids: Sequence[str]
) -> tuple[tuple[JournalEntry, ...] | RunDamagedError, ...]:
    """Each run's entries (or its :exc:`RunDamagedError`), one read if the
    journal can (:meth:`BatchedJournal.read_events`)."""
    if not run_ids:
        return ()
    method = getattr(journal, "read_events", None)
    if method is not None:
        return tuple(await method(run_ids))
    out: list[tuple[JournalEntry, ...] | RunDamagedError] = []
    for run_id in run_ids:
        try:
            out.append(await journal.events(run_id))
        except RunDamagedError as exc:
            out.append(exc)
    return tuple(out)


async def claim_and_load(
    journal: Journal,
    run_ids: Sequence[str] | None = None,
    *,
    limit: int,
    stale_after: float = 0.0,
) -> tuple[ClaimedRun, ...]:
    """Claim RUNNING runs and read them (see :meth:`BatchedJournal.claim_and_load`)."""
    method = getattr(journal, "claim_and_load", None)
    if method is not None:
        return tuple(await method(run_ids, limit=limit, stale_after=stale_after))
    if run_ids is None:
        claimed = await journal.claim_batch(limit=limit, stale_after=stale_after)
    else:
        claimed = ()
        for run_id in run_ids:
            if len(claimed) >= limit:
                break
            fence = await journal.claim(run_id, stale_after=stale_after)
            record = None if fence is None else await journal.get_run(run_id)
            if fence is not None and record is not None:
                claimed += ((record, fence),)
    out: list[ClaimedRun] = []
    for record, fence in claimed:
        try:
            entries = await journal.events(record.run_id)
        except RunDamagedError as exc:
            # Claimed before its damage showed: it stays held by this worker
            # until its lease lapses, then max_claims parks it (as before).
            logger.warning("recovery leaves a damaged run alone: %s", exc)
            continue
        out.append(ClaimedRun(record, fence, entries))
    return tuple(out)
