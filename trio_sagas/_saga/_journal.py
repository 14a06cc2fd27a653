"""The journal interface the saga runner writes durable runs through.

The runner owns this interface; backends (:mod:`trio_sagas._journal`)
implement it and import nothing above it. A journal stores, per run, one
*run record* (scene name, status, the encoded state, who owns the run) and
an append-only list of *entries*, one per saga event, numbered by ``seq``.

Writes are batched by the runner: one :meth:`Journal.append` call is one
atomic transaction holding every event since the previous call plus the
current state. The runner awaits an append before the code an intent event
announces (``ActStarted``, ``CompensationStepStarted``) runs.

Leases and fencing let several processes share one journal. Each open
journal is a *worker* with a lease on the journal's clock, renewed by a task
the journal runs (:meth:`Journal.hold`). A run is held by one worker under an
*epoch*; every append presents that :class:`Fence` and is refused once the
writer's lease lapsed (:exc:`LeaseLostError`) or another worker claimed the
run (:exc:`RunClaimedError`), so a zombie can never write over a recovery.
A run is claimable only when its worker's lease has lapsed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol, Self, final, runtime_checkable

import attrs
import trio

from .._util import documented_constant
from ._codec import Codec as Codec
from ._codec import JSONCodec as JSONCodec


class JournalError(Exception):
    """A journal could not be read or written (the message names the file)."""


@final
class JournalSchemaError(JournalError):
    """The journal's schema is not one this version can use (newer, foreign)."""


@final
class RunIdInUseError(JournalError):
    """A run with this id is already in the journal; run ids are never reused."""


@final
class RunNotFoundError(JournalError, LookupError):
    """No run with this id is in the journal."""


@final
class RunDamagedError(JournalError):
    """One run's journal records cannot be read back (a damaged row).

    The message names the run and what is wrong; the journal's other runs
    are unaffected, and :func:`recover` reports this one in
    :attr:`RecoveryReport.skipped` instead of stopping.

    Attributes:
        run_id: The damaged run's id (its ``repr`` if the id itself is damaged).
    """

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunClaimedError(JournalError):
    """Another owner claimed the run (a recovery took it over); this owner
    may no longer write to it."""


@final
class RunStatus(enum.Enum):
    """Where a journaled run stands."""

    RUNNING = "running"
    """No final event yet: in progress, or its process died (see :func:`recover`)."""
    SUCCEEDED = "succeeded"
    """Every step completed."""
    FAILED = "failed"
    """A step failed and no saga rolled the completed steps back (the top
    scene is not a saga); :func:`compensate_run` can undo them."""
    COMPENSATED = "compensated"
    """The run failed (or was recovered) and every undo that ran succeeded."""
    NEEDS_INTERVENTION = "needs_intervention"
    """An undo failed for good; fix the cause, then :func:`compensate_run`."""


FINAL_STATUSES = frozenset(RunStatus) - {RunStatus.RUNNING}


@final
@attrs.frozen
class JournalEntry:
    """One journaled saga event.

    Attributes:
        run_id: The run.
        seq: Position in the run's event stream (the event's ``seq``).
        kind: The event's class name, e.g. ``"ActCompleted"``.
        step: The step or scene path the event is about.
        at: The event's trio-clock time in the process that wrote it.
        data: The event's other fields as JSON values (errors become
            ``{"type": ..., "message": ...}``, causes their description).
        value: For ``ActCompleted``: what ``run`` returned, encoded by the
            journal's codec; else None.
        written_at: Wall-clock time (:func:`time.time`) of the write, set
            by the journal when it stores the entry.
    """

    run_id: str
    seq: int
    kind: str
    step: str
    at: float
    data: Mapping[str, Any] = attrs.field(factory=dict)
    value: bytes | None = None
    written_at: float = 0.0


@final
@attrs.frozen
class RunRecord:
    """One run as the journal knows it.

    Attributes:
        run_id: The run's id.
        scene: The top scene's name (recovery looks the definition up by it).
        status: A :class:`RunStatus`.
        state: The latest state, encoded by the journal's codec.
        owner: The worker holding the run (its lease lets it write); None
            once the run finished. Also readable as :attr:`worker`.
        created_at: Wall-clock time the run was created.
        updated_at: Wall-clock time of the latest write (the owner's heartbeat).
        last_seq: ``seq`` of the latest entry (-1: none yet).
        epoch: Bumped by every claim; a write must present the current one.
        claims: How many times the run was claimed (taken over).
    """

    run_id: str
    scene: str
    status: RunStatus
    state: bytes | None
    owner: str | None
    created_at: float
    updated_at: float
    last_seq: int
    epoch: int = 0
    claims: int = 0

    @property
    def worker(self) -> str | None:
        """The worker holding the run (the same as ``owner``)."""
        return self.owner


# --- Worker leases and epoch fencing (DESIGN section 10) -------------------
#
# The contract every backend implements and the runner relies on; it replaces
# the per-call owner tokens and ``stale_after`` of the first journal version.


@final
class LeaseLostError(RunClaimedError):
    """This worker's lease lapsed: it may no longer write to any of its runs.

    The runs it held are taken over by another worker (or by the next
    :func:`recover`); the journal registers a fresh worker for new runs.
    """


@final
@attrs.frozen
class Fence:
    """The right to write to one run: which worker holds it, under which epoch.

    Returned by :meth:`Journal.create_run` and :meth:`Journal.claim`;
    every :meth:`Journal.append` presents it. A claim bumps the run's
    epoch, so a fence from before the claim is refused.

    Attributes:
        run_id: The run.
        worker: The worker id holding the run.
        epoch: The run's epoch when this fence was issued.
    """

    run_id: str
    worker: str
    epoch: int


@final
@attrs.frozen
class WorkerRecord:
    """One worker (an open journal in one process) and its lease.

    Attributes:
        worker_id: Unique per registration; a worker whose lease lapsed
            re-registers under a new id.
        host: Host name of the process.
        pid: Process id.
        started_at: Journal-clock time the worker registered.
        renewed_at: Journal-clock time of the latest renewal.
        expires_at: Journal-clock time the lease lapses unless renewed.
    """

    worker_id: str
    host: str
    pid: int
    started_at: float
    renewed_at: float
    expires_at: float


@final
@attrs.frozen
class ClaimedRun:
    """A run claimed by claim_and_load, with its record and entries as of the claim.

    Attributes:
        record: The run as the claim left it (held by this worker, its epoch
            bumped, ``claims`` counted).
        fence: The right to write to it.
        entries: Its entries in ``seq`` order, read in the claim's transaction
            (nobody else can have written since).
    """

    record: RunRecord
    fence: Fence
    entries: tuple[JournalEntry, ...]


DEFAULT_LEASE = documented_constant(
    15.0,
    "DEFAULT_LEASE",
    """Seconds a worker's lease lasts (15.0); it is renewed every third of that.""",
)

DEFAULT_MAX_CLAIMS = documented_constant(
    10,
    "DEFAULT_MAX_CLAIMS",
    """A run claimed this many times (10) goes to NEEDS_INTERVENTION instead.""",
)


@runtime_checkable
class Journal(Protocol):
    """What the saga runner needs from a durable store.

    Every method may raise :exc:`JournalError`. Writes must be durable when
    they return (or the backend documents its trade-off) and must not block
    the trio event loop. A write that has started must be allowed to finish
    when its caller is cancelled, so that the caller knows whether it
    happened. Backends take ``lease=DEFAULT_LEASE`` (seconds, finite, > 0)
    and ``max_claims=DEFAULT_MAX_CLAIMS`` (>= 1) constructor arguments.
    """

    @property
    def codec(self) -> Codec:
        """Encodes states and act results for this journal."""
        ...

    @property
    def lease(self) -> float:
        """Seconds a worker's lease lasts; renewed every third of that."""
        ...

    @property
    def worker_id(self) -> str:
        """This worker's current registration (a new one after a lapse);
        empty until the worker registered (on first use)."""
        ...

    async def __aenter__(self) -> Self:
        """Register the worker and start the heartbeat task."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the heartbeat, delete this worker's row, close."""
        ...

    def hold(self) -> AbstractAsyncContextManager[trio.CancelScope]:
        """Keep this worker's lease renewed while the block runs.

        Yields a cancel scope for the caller to run its run under: its
        deadline is the local lease deadline (trio clock at the renewal's
        send time, plus the lease, minus a tenth of it), pushed forward by
        each successful renewal and never moved otherwise, so a worker stops
        its runs before another worker can claim them. Without ``async
        with journal``, the block runs its own heartbeat task.
        """
        ...

    async def create_run(self, run_id: str, *, scene: str, state: bytes) -> Fence:
        """Create a RUNNING run held by this worker, epoch 1, claims 0.

        Raises:
            RunIdInUseError: a run with this id exists (whatever its status).
        """
        ...

    async def append(
        self,
        fence: Fence,
        entries: Sequence[JournalEntry],
        *,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        """Atomically add *entries*, replace the state and set the status.

        One statement checks the fence (worker and epoch match the run, it is
        RUNNING), that the entries continue ``last_seq`` without a gap, and
        that the writer's lease is live on the journal's clock.

        Raises:
            LeaseLostError: the writer's lease lapsed (nothing was written).
            RunClaimedError: the fence is stale (nothing was written).
        """
        ...

    async def claim(
        self,
        run_id: str,
        *,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
        stale_after: float = 0.0,
    ) -> Fence | None:
        """Take a run over: bump its epoch and claims, hold it, set it RUNNING.

        A RUNNING run is claimable only when its worker's lease lapsed (or
        its worker row is gone) and its last write is *stale_after* seconds
        old or older; a run in another of *statuses* unless it is RUNNING
        under a live lease. A RUNNING run that would exceed ``max_claims`` is
        set NEEDS_INTERVENTION instead. Returns None when not claimed.
        """
        ...

    async def claim_batch(
        self, *, limit: int, stale_after: float = 0.0
    ) -> tuple[tuple[RunRecord, Fence], ...]:
        """Claim up to *limit* claimable RUNNING runs, oldest first, at once."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None."""
        ...

    async def runs(
        self, *, status: RunStatus | Iterable[RunStatus] | None = None
    ) -> tuple[RunRecord, ...]:
        """Every run (with one of the given statuses), oldest first."""
        ...

    async def events(self, run_id: str) -> tuple[JournalEntry, ...]:
        """The run's entries in ``seq`` order (empty if there is no such run)."""
        ...

    async def workers(self) -> tuple[WorkerRecord, ...]:
        """Every worker row, live and lapsed."""
        ...

    async def expire_worker(self, worker_id: str) -> bool:
        """Operator: that worker is dead; its lease lapses now."""
        ...

    async def prune(
        self,
        *,
        older_than: float,
        statuses: Iterable[RunStatus] = (
            RunStatus.SUCCEEDED,
            RunStatus.COMPENSATED,
            RunStatus.FAILED,
        ),
    ) -> int:
        """Delete finished runs last written *older_than* seconds ago or more.

        RUNNING and NEEDS_INTERVENTION are never deleted (ValueError if
        asked). Returns how many runs were deleted.
        """
        ...


class BatchedJournal(Journal, Protocol):
    """Optional journal methods that claim and read runs in batches.

    Recovery (:func:`recover`, :func:`run_worker`) uses them when a journal
    has them (SQLiteJournal does), saving a thread hand-off (or a round trip)
    per run and call; for a journal without them it makes the per-run calls
    they replace (:meth:`Journal.claim_batch` / :meth:`Journal.claim`,
    :meth:`Journal.get_run`, :meth:`Journal.events`), with the same results.
    """

    async def claim_and_load(
        self,
        run_ids: Sequence[str] | None = None,
        *,
        limit: int,
        stale_after: float = 0.0,
    ) -> tuple[ClaimedRun, ...]:
        """Claim a batch of RUNNING runs and read their entries, in one call.

        *run_ids* None: up to *limit* claimable runs, oldest first (as
        :meth:`Journal.claim_batch`); else the claimable runs of *run_ids*,
        in that order, up to *limit*. Same rules as
        :meth:`Journal.claim`; a run whose record or entries cannot be read
        is not claimed. Returns the runs claimed, each with its record and
        entries as of the claim.
        """
        ...

    async def read_events(
        self, run_ids: Sequence[str]
    ) -> tuple[tuple[JournalEntry, ...] | RunDamagedError, ...]:
        """Several runs' entries, one item per run id, in one read.

        A run whose entries cannot be read gets its :exc:`RunDamagedError` in
        its place (one damaged run never hides the others); a run that does
        not exist gets ``()``.
        """
        ...


_JOURNAL_MEMBERS = tuple(name for name in vars(Journal) if not name.startswith("_"))
"""What a journal must have. Checked with ``hasattr`` (as ``isinstance`` on a
runtime protocol does on Python 3.11), so a wrapper that delegates through
``__getattr__`` counts on every Python: from 3.12 ``isinstance`` looks only
at attributes defined on the class."""


def check_journal(journal: object) -> Journal:
    if not all(hasattr(journal, name) for name in _JOURNAL_MEMBERS):
        raise TypeError(
            f"journal must implement trio_sagas.Journal (e.g. a SQLiteJournal), "
            f"got {journal!r}"
        )
    return journal  # type: ignore[return-value]  # checked member by member
