"""The journal interface the saga runner writes durable runs through.

The runner owns this interface; backends (:mod:`trio_sagas._journal`)
implement it and import nothing above it. A journal stores, per run, one
*run record* (scene name, status, the encoded state, who owns the run) and
an append-only list of *entries*, one per saga event, numbered by ``seq``.

Writes are batched by the runner: one :meth:`Journal.append` call is one
atomic transaction holding every event since the previous call plus the
current state. The runner awaits an append before the code an intent event
announces (``ActStarted``, ``CompensationStepStarted``) runs.

Ownership is what lets several processes share one journal (a planned
PostgreSQL backend): the process running a run *owns* it; every append says
who it is from and is refused once another owner has claimed the run
(:exc:`RunClaimedError`), so a process that was presumed dead cannot write
over a recovery. :meth:`Journal.claim` takes a run over atomically.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, final, runtime_checkable

import attrs


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
        owner: Who may write to the run (a token per run_scene call or
            recovery); None once nobody holds it.
        created_at: Wall-clock time the run was created.
        updated_at: Wall-clock time of the latest write (the owner's heartbeat).
        last_seq: ``seq`` of the latest entry (-1: none yet).
    """

    run_id: str
    scene: str
    status: RunStatus
    state: bytes | None
    owner: str | None
    created_at: float
    updated_at: float
    last_seq: int


@runtime_checkable
class Codec(Protocol):
    """Turns states and act results into bytes and back (never pickle)."""

    def encode(self, value: Any) -> bytes:
        """Encode *value*; raise :exc:`TypeError`/:exc:`ValueError` if it cannot."""
        ...

    def decode(self, data: bytes) -> Any:
        """Decode what :meth:`encode` produced."""
        ...


@final
class JSONCodec:
    """The default codec: compact UTF-8 JSON.

    Args:
        default: Called for objects JSON cannot encode (as :func:`json.dumps`).
        object_hook: Called on every decoded object (as :func:`json.loads`).

    Tuples come back as lists and non-string keys as strings (that is JSON);
    NaN and infinities are refused.
    """

    __slots__ = ("_decoder", "_encoder")

    def __init__(
        self,
        *,
        default: Callable[[Any], Any] | None = None,
        object_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), allow_nan=False, default=default
        )
        self._decoder = json.JSONDecoder(object_hook=object_hook)

    def __repr__(self) -> str:
        return "trio_sagas.JSONCodec()"

    def encode(self, value: Any) -> bytes:
        """Encode *value* as JSON bytes."""
        return self._encoder.encode(value).encode()

    def decode(self, data: bytes) -> Any:
        """Decode JSON bytes."""
        return self._decoder.decode(data.decode())


@runtime_checkable
class Journal(Protocol):
    """What the saga runner needs from a durable store.

    Every method may raise :exc:`JournalError`. Writes must be durable when
    they return (or the backend documents its trade-off) and must not block
    the trio event loop (run the I/O in a thread, or use an async driver).
    A write that has started must be allowed to finish when its caller is
    cancelled, so that the caller knows whether it happened.
    """

    @property
    def codec(self) -> Codec:
        """Encodes states and act results for this journal."""
        ...

    async def create_run(
        self, run_id: str, *, scene: str, owner: str, state: bytes
    ) -> None:
        """Create a RUNNING run owned by *owner*.

        Raises:
            RunIdInUseError: a run with this id exists (whatever its status).
        """
        ...

    async def append(
        self,
        run_id: str,
        entries: Sequence[JournalEntry],
        *,
        owner: str,
        state: bytes | None = None,
        status: RunStatus | None = None,
    ) -> None:
        """Atomically add *entries*, replace the state and set the status.

        Raises:
            RunClaimedError: *owner* no longer owns the run (or it is not
                RUNNING): nothing was written.
        """
        ...

    async def claim(
        self,
        run_id: str,
        *,
        owner: str,
        stale_after: float = 0.0,
        statuses: Iterable[RunStatus] = (RunStatus.RUNNING,),
    ) -> bool:
        """Atomically make *owner* the owner of a run and set it RUNNING.

        Only if its status is in *statuses* and, when it is RUNNING, its
        latest write is at least *stale_after* seconds old (its owner is
        presumed dead). Returns whether the claim succeeded.
        """
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

    Returned by :meth:`LeasedJournal.create_run` and :meth:`LeasedJournal.claim`;
    every :meth:`LeasedJournal.append` presents it. A claim bumps the run's
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


DEFAULT_LEASE = 15.0
"""Seconds a worker's lease lasts; it is renewed every third of that."""

DEFAULT_MAX_CLAIMS = 10
"""A run claimed this many times goes to NEEDS_INTERVENTION instead."""
