"""Durable runs: the saga runner writing through a :class:`Journal`.

A ``_DurableRun`` is the ordinary runner plus a queue of events not yet in
the journal. ``flush()`` writes the queue and the current state in one
journal transaction; the runner awaits it before an act's ``run`` and
before an undo (so the intent is durable before the code runs), when a
Chorus branch ends, and when the run ends. So the completion of one step and
the intent of the next share a transaction: a 10-step saga that succeeds
costs 12 transactions (create, ten intents, the final record), not 21.

Concurrent branches share the queue; a lock orders the writes, and a branch
whose events a sibling already wrote returns without writing (group
commit). A write that fails leaves the run *broken*: the forward path raises
the :exc:`JournalError` (no further step runs, the sagas roll back in
memory), undos go on without journaling, and ``run_scene`` raises it at the
end — the journal still says RUNNING, so :func:`recover` rolls the run back
again later (at-least-once compensation).
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

import trio

from .._compensation import StepContext
from .._events import Observer, logger, notify
from .._outcome import CancelCause
from ._events import ActCompleted, CompensationStepFailed, SagaEvent
from ._journal import Journal, JournalEntry, JournalError, RunStatus
from ._model import Scene
from ._runner import SagaResult, _Result, _Run

# (id(journal), run_id) of the runs this process is running right now, so a
# recover() in the same process never takes over a live run.
_LIVE: set[tuple[int, str]] = set()

_NOT_DATA = frozenset({"run_id", "seq", "step", "scene"})


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
    return repr(value)


def new_owner() -> str:
    """A token naming one writer of a run (one run_scene call or recovery)."""
    return uuid.uuid4().hex


class _DurableRun(_Run):
    def __init__(
        self,
        run_id: str,
        state: Any,
        deps: Any,
        observer: Observer | None,
        journal: Journal,
        *,
        owner: str,
        first_seq: int = 0,
    ) -> None:
        super().__init__(run_id, state, deps, observer)
        self.raw_events = None  # every event is journaled: build each one now
        self.journal = journal
        self.codec = journal.codec
        self.owner = owner
        self.first_seq = first_seq
        self.pending: list[SagaEvent] = []
        self.values: dict[int, object] = {}
        self.write_lock = trio.Lock()
        self.journal_error: JournalError | None = None

    def emit(
        self, event_type: type[SagaEvent], at: float | None = None, **fields: Any
    ) -> None:
        if at is None:
            at = self.now()
        seq = self.first_seq + len(self.events)
        event = event_type(run_id=self.run_id, seq=seq, at=at, **fields)
        self.events.append(event)
        if self.journal_error is None:
            self.pending.append(event)
            if event_type is ActCompleted:
                self.values[seq] = self.last_value
        if self.observer is not None:
            notify(self.observer, event)

    def check_journal(self) -> None:
        if self.journal_error is not None:
            raise self.journal_error

    def broken(self, check: bool) -> bool:
        """Whether the journal failed (raising its error if *check*)."""
        if self.journal_error is None:
            return False
        if check:
            raise self.journal_error
        return True

    def entry(self, event: SagaEvent) -> JournalEntry:
        fields = vars(event)
        step = fields.get("scene") if "scene" in fields else fields.get("step")
        data = {k: _jsonable(v) for k, v in fields.items() if k not in _NOT_DATA}
        if "scene" in fields and "step" in fields:
            data["step"] = fields["step"]  # SceneFailed: the failing step
        value = None
        if event.seq in self.values:
            value = self.codec.encode(self.values.pop(event.seq))
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
        if self.broken(check) or (not self.pending and status is None):
            return
        async with self.write_lock:
            # Again: a sibling may have written our events, or failed, meanwhile.
            if self.broken(check) or (not self.pending and status is None):
                return
            batch, self.pending = self.pending, []
            try:
                try:
                    entries = [self.entry(e) for e in batch]
                    state = self.codec.encode(self.state)
                except Exception as exc:
                    raise JournalError(
                        f"run {self.run_id!r}: {self.codec!r} cannot encode the "
                        f"state or an act's result: {exc!r}"
                    ) from exc
                try:
                    await self.journal.append(
                        self.run_id,
                        entries,
                        owner=self.owner,
                        state=state,
                        status=status,
                    )
                except JournalError:
                    raise
                except Exception as exc:
                    raise JournalError(
                        f"run {self.run_id!r}: journal {self.journal!r} failed: {exc!r}"
                    ) from exc
            except JournalError as exc:
                self.journal_error = exc
                self.pending.clear()
                self.values.clear()
                if check:
                    raise
            except BaseException:
                # Not written (a journal call is never abandoned once begun):
                # keep the events for the next flush.
                self.pending[:0] = batch
                raise

    async def finish(self, status: RunStatus) -> None:
        """Write the final record (shielded: it decides whether the run is done)."""
        with trio.CancelScope(shield=True):
            await self.flush(check=False, status=status)


def final_status(run: _DurableRun, result: _Result | None, leftover: bool) -> RunStatus:
    """The status a run ends with in the process that ran it."""
    if result is not None and result.ok:
        return RunStatus.SUCCEEDED
    if any(type(e) is CompensationStepFailed for e in run.events):
        return RunStatus.NEEDS_INTERVENTION
    return RunStatus.FAILED if leftover else RunStatus.COMPENSATED


async def run_durable(
    scene: Scene,
    state: Any,
    deps: Any,
    observer: Observer | None,
    run_id: str,
    journal: Journal,
) -> SagaResult:
    """``run_scene`` with a journal."""
    codec = journal.codec
    try:
        encoded = codec.encode(state)
    except Exception as exc:
        raise TypeError(
            f"state: {codec!r} cannot encode {type(state).__qualname__} ({exc}); "
            "pass a codec that can (SQLiteJournal(path, codec=...))"
        ) from exc
    owner = new_owner()
    await journal.create_run(run_id, scene=scene.name, owner=owner, state=encoded)
    key = (id(journal), run_id)
    _LIVE.add(key)
    run = _DurableRun(run_id, state, deps, observer, journal, owner=owner)
    leftover: list[Any] = []
    try:
        try:
            result = await run.scene(scene, scene.name, leftover)
        except BaseException as exc:
            await run.finish(final_status(run, None, bool(leftover)))
            if run.journal_error is not None and exc is not run.journal_error:
                logger.error(
                    "run %r: the journal failed (%r); it still says RUNNING",
                    run_id,
                    run.journal_error,
                )
            raise
        await run.finish(final_status(run, result, bool(leftover)))
    finally:
        _LIVE.discard(key)
    run.check_journal()
    return run.result(result)


def step_context(run_id: str, path: str, act_name: str, deps: Any) -> StepContext:
    """The ``ctx`` of an act's ``run`` (its key is stable across recoveries)."""
    return StepContext._trusted(
        act_name, path=path, deps=deps, idempotency_key=f"{run_id}/{path}"
    )
