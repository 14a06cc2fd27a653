"""Recorders: where the saga runner's events go.

The runner calls one recorder for every event and awaits it at the points
where a durable run must have caught up -- before an act's ``run`` or an undo
runs (the intent is durable before the code it announces), and when a Chorus
branch ends (its completion must not wait for a slow sibling).

* :class:`MemoryRecorder` keeps the events for the :class:`SagaResult` and
  tells the observer. Nobody observing, it records them raw (its ``raw``
  list, which the runner appends to directly on its hottest path) and builds
  the records only if somebody reads ``result.events``.
* :class:`JournalRecorder` also queues each event for the journal and writes
  the queue and the current state in one transaction at each durable point,
  so the completion of one step and the intent of the next share a write.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from typing import Any

import trio

from .._events import Emitter
from .._outcome import CancelCause
from ._events import ActCompleted, CompensationStepFailed, JournalWritten, SagaEvent
from ._journal import (
    Fence,
    Journal,
    JournalEntry,
    JournalError,
    LeaseLostError,
    RunClaimedError,
    RunStatus,
)
from ._records import EventLog, RawEvent

_NOT_DATA = frozenset({"run_id", "seq", "step", "scene"})
_ATOMIC = frozenset({str, int, float, bool})  # JSON as they are (not subclasses)
_DATA_KEYS: dict[type[SagaEvent], tuple[str, ...]] = {}
"""Per event class: the fields journaled in ``data`` (all but :data:`_NOT_DATA`)."""


_NOTHING = contextlib.nullcontext()


class MemoryRecorder:
    """The events of a run without a journal."""

    __slots__ = ("emitter", "events", "raw", "run_id")

    durable = False
    waited = 0.0  # in memory nothing waits for a journal

    def __init__(self, run_id: str, emitter: Emitter) -> None:
        self.run_id = run_id
        self.emitter = emitter
        self.events: list[SagaEvent] = []
        # Without an observer, events are recorded raw and built on first read.
        self.raw: list[RawEvent] | None = None if emitter.enabled else []

    def emit(self, event_type: type[SagaEvent], at: float, **fields: Any) -> None:
        if self.raw is not None:
            self.raw.append((event_type, at, fields))
            return
        event = event_type(run_id=self.run_id, seq=len(self.events), at=at, **fields)
        self.events.append(event)
        self.emitter(event)

    def parallel(self) -> contextlib.AbstractContextManager[None]:
        """Branches write nothing in memory: nothing to batch."""
        return _NOTHING

    def completed(self, at: float, value: object, **fields: Any) -> None:
        """``ActCompleted``; a run in memory keeps no value."""
        self.emit(ActCompleted, at, **fields)

    async def intent(
        self, event_type: type[SagaEvent], at: float, *, check: bool, **fields: Any
    ) -> None:
        """An intent event; in memory, durable as soon as it is recorded."""
        self.emit(event_type, at, **fields)

    async def settle(self) -> None:
        """A Chorus branch ended: nothing to make durable in memory."""

    def check(self) -> None:
        """Memory never fails."""

    def log(self) -> tuple[SagaEvent, ...] | EventLog:
        if self.raw is not None:
            return EventLog(self.run_id, self.raw)
        return tuple(self.events)


def _jsonable(value: object) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, BaseException):
        return {"type": type(value).__qualname__, "message": str(value)}
    if isinstance(value, CancelCause):
        return value.describe()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):  # a durable undo's JSON arguments
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


class JournalRecorder:
    """The events of a durable run, written through a :class:`Journal`.

    Concurrent branches share the queue; a lock orders the writes, and a
    branch whose events a sibling already wrote returns without writing. A
    write that fails leaves the recorder *broken* (:attr:`error`): the forward
    path raises the :exc:`JournalError` (no further step runs, the sagas roll
    back in memory), undos go on without journaling, and ``run_scene`` raises
    it at the end -- the journal still says RUNNING, so a recovery rolls the
    run back again (at-least-once compensation).
    """

    raw: None = None
    durable = True

    def __init__(
        self,
        run_id: str,
        emitter: Emitter,
        journal: Journal,
        fence: Fence,
        *,
        first_seq: int = 0,
        state: Any = None,
        lease_scope: trio.CancelScope | None = None,
    ) -> None:
        self.run_id = run_id
        self.emitter = emitter
        self.journal = journal
        self.codec = journal.codec
        self.fence = fence
        self.first_seq = first_seq
        self.events: list[SagaEvent] = []
        self.pending: list[SagaEvent] = []
        self.values: dict[int, object] = {}
        self.write_lock = trio.Lock()
        self.error: JournalError | None = None
        self.state = state  # the run's state object, encoded at each write
        self.lease_scope = lease_scope
        self.waited = 0.0  # seconds the run's code waited for its intents
        self.branches = 0  # parallel branches running (chorus, parallel undos)

    def emit(self, event_type: type[SagaEvent], at: float, **fields: Any) -> None:
        seq = self.first_seq + len(self.events)
        event = event_type(run_id=self.run_id, seq=seq, at=at, **fields)
        self.events.append(event)
        if self.error is None:
            self.pending.append(event)
        if self.emitter.enabled:
            self.emitter(event)

    def completed(self, at: float, value: object, **fields: Any) -> None:
        """``ActCompleted``, journaled with what ``run`` returned."""
        if self.error is None:
            self.values[self.first_seq + len(self.events)] = value
        self.emit(ActCompleted, at, **fields)

    async def intent(
        self, event_type: type[SagaEvent], at: float, *, check: bool, **fields: Any
    ) -> None:
        """Record an intent and make it durable before the code it announces runs.

        Args:
            check: Raise if the journal failed (on the forward path no more
                user code may run); on rollback paths the undo goes on.
        """
        scope = self.lease_scope
        if (
            scope is not None
            and scope.cancel_called
            and not isinstance(self.error, RunClaimedError)
        ):
            # The local lease deadline passed: another worker may claim the
            # run any moment now. No further step, and no undo, runs here.
            self.error = LeaseLostError(
                f"run {self.run_id!r}: the lease of worker {self.fence.worker!r} "
                "ran out; the run is left to the worker that claims it"
            )
        self.emit(event_type, at, **fields)
        clock = trio.lowlevel.current_clock()
        begun = clock.current_time()
        try:
            await self.flush(check=check)
        finally:
            self.waited += clock.current_time() - begun

    async def settle(self) -> None:
        """A Chorus branch ended: durable now, not when a slow sibling writes."""
        await self.flush(check=False)

    def check(self) -> None:
        """Raise the journal's failure, if it failed."""
        if self.error is not None:
            raise self.error

    def log(self) -> tuple[SagaEvent, ...]:
        return tuple(self.events)

    def last_seq(self) -> int:
        return self.first_seq + len(self.events) - 1

    def undo_failed(self) -> bool:
        """Whether an undo of this run failed for good (in this process)."""
        return any(type(e) is CompensationStepFailed for e in self.events)

    def _broken(self, check: bool) -> bool:
        if self.error is None:
            return False
        if check or isinstance(self.error, RunClaimedError):
            raise self.error
        return True

    def entry(self, event: SagaEvent) -> JournalEntry:
        fields = vars(event)
        keys = _DATA_KEYS.get(type(event))
        if keys is None:
            keys = _DATA_KEYS[type(event)] = tuple(
                k for k in fields if k not in _NOT_DATA
            )
        data = {}
        for k in keys:
            v = fields[k]
            data[k] = v if v is None or type(v) in _ATOMIC else _jsonable(v)
        if "scene" in fields:
            step = fields["scene"]
            if "step" in fields:
                data["step"] = fields["step"]  # SceneFailed: the failing step
        else:
            step = fields.get("step")
        value = None
        if self.values:
            seq = event.seq
            if seq in self.values:
                value = self.codec.encode(self.values.pop(seq))
        return JournalEntry(
            run_id=self.run_id,
            seq=event.seq,
            kind=type(event).__name__,
            step=str(step),
            at=event.at,
            data=data,
            value=value,
        )

    async def flush(
        self, *, check: bool = True, status: RunStatus | None = None
    ) -> None:
        """Write every event so far, and the state, in one journal transaction."""
        if self._broken(check) or (not self.pending and status is None):
            return
        emitting = self.emitter.enabled
        clock = trio.lowlevel.current_clock()
        asked = clock.current_time() if emitting else 0.0
        lock = self.write_lock
        if self.branches:
            # Siblings may write too: the lock's scheduler round lets every
            # branch started with us add its events to this one append.
            await lock.acquire()
        else:
            # No sibling (the usual case): no scheduler round for the lock;
            # the append below is this call's schedule point, and a
            # cancelled caller stops here, before writing, as before.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                lock.acquire_nowait()
            except trio.WouldBlock:  # a write of this run is still going on
                await lock.acquire()
        try:
            # Again: a sibling may have written our events, or failed, meanwhile.
            if self._broken(check) or (not self.pending and status is None):
                return
            batch, self.pending = self.pending, []
            try:
                call = self._append(batch, status)
                begun = clock.current_time() if emitting else 0.0
                try:
                    await call
                except JournalError:
                    raise
                except Exception as exc:
                    raise self._failed(exc) from exc
                if emitting:
                    ended = clock.current_time()
                    self.emitter(
                        JournalWritten(
                            run_id=self.run_id,
                            seq=batch[-1].seq if batch else self.last_seq(),
                            at=ended,
                            entries=len(batch),
                            wait=begun - asked,
                            commit=ended - begun,
                        )
                    )
            except JournalError as exc:
                self.error = exc
                self.pending.clear()
                self.values.clear()
                if check or isinstance(exc, RunClaimedError):
                    raise
            except BaseException:
                # Not written (a journal call is never abandoned once begun):
                # keep the events for the next flush.
                self.pending[:0] = batch
                raise
        finally:
            lock.release()

    @contextlib.contextmanager
    def parallel(self) -> Iterator[None]:
        """Around branches of this run that may write at once (see flush)."""
        self.branches += 1
        try:
            yield
        finally:
            self.branches -= 1

    def _append(self, batch: list[SagaEvent], status: RunStatus | None) -> Any:
        """The journal's append of *batch* and the state, not yet awaited.

        The entries live only as long as the journal needs them (no frame
        of ours holds them while the write waits for its commit).
        """
        try:
            entries = [self.entry(e) for e in batch]
            state = self.codec.encode(self.state)
        except Exception as exc:
            raise JournalError(
                f"run {self.run_id!r}: {self.codec!r} cannot encode the "
                f"state or an act's result: {exc!r}"
            ) from exc
        try:
            return self.journal.append(self.fence, entries, state=state, status=status)
        except JournalError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> JournalError:
        return JournalError(
            f"run {self.run_id!r}: journal {self.journal!r} failed: {exc!r}"
        )

    async def finish(self, status: RunStatus | None) -> None:
        """Write what is left and the final status (shielded: it decides
        whether the run is done). ``None`` leaves the run RUNNING."""
        with trio.CancelScope(shield=True):
            await self.flush(check=False, status=status)
