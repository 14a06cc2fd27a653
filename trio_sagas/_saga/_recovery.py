"""Recovery and manual compensation of journaled runs.

Both rebuild, from a run's journal entries and the scene definitions, the
same records the runner keeps in memory (``_ActRecord``/``_GroupRecord``,
each group's children in completion order), then hand them to the runner's
own rollback code on a ``_DurableRun`` that continues the run's event
stream. So a recovered rollback has the runner's semantics and events:
reverse completion order, choruses branch-parallel, nested sagas as units,
every undo shielded, bounded, retried and journaled (intent first).

What the entries say, act by act:

* ``ActCompleted`` — completed: compensated (``ctx.result`` decoded from
  the journal), unless a ``CompensationStepCompleted`` follows.
* ``ActStarted`` and nothing after it — *uncertain*: the process died while
  ``run`` ran. Compensated (``ctx.result`` None) unless the act says
  ``uncertain="skip"``.
* ``ActFailed``/``ActCancelled`` — it did not complete: not compensated
  (undo actions it registered with ``ctx.register_compensation`` lived in
  the dead process's memory and are lost).
* ``CompensationStepStarted`` without an outcome — interrupted: run again,
  with the same idempotency key.
* ``CompensationStepFailed`` — failed for good: :func:`recover` leaves it
  (the run ends NEEDS_INTERVENTION); :func:`compensate_run` tries it again.

Groups the crash left open are closed innermost first, as if their running
step had failed: an open saga scene rolls back, an open plain scene or
chorus hands its completed work to its parent. A rollback that was under
way (``CompensationStarted`` without ``CompensationCompleted``) is resumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, final

import attrs

from .._compensation import CompensationReport
from .._events import Observer
from .._outcome import Status
from .._validate import check_label, check_sync_observer
from ._durable import _LIVE, _DurableRun, new_owner, step_context
from ._journal import (
    Journal,
    JournalEntry,
    JournalError,
    RunNotFoundError,
    RunRecord,
    RunStatus,
)
from ._model import Act, Chorus, Scene, Step
from ._runner import SagaResult, _ActRecord, _GroupRecord, _Record


@final
class RecordedFailure(Exception):
    """Why a journaled run failed, read back from the journal.

    The original exception object died with the process that ran the step;
    its type name and message are kept.

    Attributes:
        run_id: The run.
        step: Path of the failing step (or of the step that was running when
            the process died), if known.
        error_type: The original exception's type name; None if the run was
            interrupted (its process died) before any step failed.
        interrupted: Whether the run's process died before the run ended.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        step: str | None,
        error_type: str | None,
        interrupted: bool,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.step = step
        self.error_type = error_type
        self.interrupted = interrupted


@final
@attrs.frozen
class SkippedRun:
    """A RUNNING run that :func:`recover` did not touch, and why.

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
    """What :func:`recover` did.

    Attributes:
        results: One :class:`SagaResult` per run rolled back (status FAILED,
            ``error`` a :exc:`RecordedFailure`, ``compensation`` and
            ``events`` those of this recovery only).
        skipped: Runs left alone: scenes not passed in, scene definitions
            that do not match the journal, runs live in this process or
            (with ``stale_after``) written to recently.
    """

    results: tuple[SagaResult, ...] = ()
    skipped: tuple[SkippedRun, ...] = ()

    def __iter__(self) -> Iterator[SagaResult]:
        """Iterate over :attr:`results` (``for result in await recover(...)``)."""
        return iter(self.results)

    def __len__(self) -> int:
        """How many runs were rolled back."""
        return len(self.results)


class _Mismatch(Exception):
    """The journal and the definitions (or the codec) do not fit together."""


def _index(scene: Scene) -> dict[str, Step]:
    paths: dict[str, Step] = {}

    def walk(step: Step, path: str) -> None:
        paths[path] = step
        if not isinstance(step, Act):
            for child in step.steps:
                walk(child, f"{path}/{child.name}")

    walk(scene, scene.name)
    return paths


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


class _Replay:
    """The runner's records of one run, rebuilt from its journal entries."""

    def __init__(
        self,
        run: RunRecord,
        scene: Scene,
        entries: tuple[JournalEntry, ...],
        *,
        decode: Any,
        deps: Any,
        retry_failed: bool,
    ) -> None:
        self.run_id = run.run_id
        self.steps = _index(scene)
        self.decode = decode
        self.deps = deps
        self.retry_failed = retry_failed
        self.top: _GroupRecord | None = None
        self.groups: dict[str, _GroupRecord] = {}
        self.started: dict[str, int] = {}  # group path -> seq of its start
        self.open_groups: set[str] = set()
        self.unfinished: set[str] = set()  # groups whose rollback must run
        self.acts: dict[str, _ActRecord] = {}
        self.open_acts: dict[str, int] = {}  # path -> seq of ActStarted
        self.undone: set[str] = set()
        self.undo_failed: set[str] = set()
        self.failed_step: str | None = None
        self.error: dict[str, Any] | None = None
        for entry in entries:
            try:
                self.apply(entry)
            except KeyError as exc:
                raise _Mismatch(
                    f"entry {entry.seq} ({entry.kind} {entry.step!r}) refers to "
                    f"{exc} the journal never started; the journal is inconsistent"
                ) from None

    def decoded(self, data: bytes) -> Any:
        try:
            return self.decode(data)
        except Exception as exc:
            raise _Mismatch(f"cannot decode a journaled value: {exc!r}") from exc

    def step(self, path: str, kind: type[Any]) -> Any:
        step = self.steps.get(path)
        if not isinstance(step, kind):
            raise _Mismatch(
                f"the journal has a {kind.__name__} {path!r} the scene definition "
                f"does not (found {type(step).__name__ if step else 'nothing'})"
            )
        return step

    def attach(self, record: _Record) -> None:
        parent = self.groups.get(_parent(record.path))
        if parent is not None:
            parent.children.append(record)

    def apply(self, e: JournalEntry) -> None:
        kind, path = e.kind, e.step
        if kind in ("SceneStarted", "ChorusStarted"):
            group = _GroupRecord(
                self.step(path, Scene if kind == "SceneStarted" else Chorus), path
            )
            self.groups[path] = group
            self.started[path] = e.seq
            self.open_groups.add(path)
            if self.top is None:
                self.top = group
        elif kind == "ActStarted":
            act = self.step(path, Act)
            ctx = step_context(self.run_id, path, act.name, self.deps)
            self.acts[path] = _ActRecord(act, path, ctx)
            self.open_acts[path] = e.seq
        elif kind == "ActCompleted":
            self.open_acts.pop(path, None)
            record = self.acts[path]
            record.done = True
            record.value = None if e.value is None else self.decoded(e.value)
            self.attach(record)
        elif kind in ("ActFailed", "ActCancelled"):
            self.open_acts.pop(path, None)
            if kind == "ActFailed" and self.failed_step is None:
                self.failed_step = path
                self.error = e.data.get("error")
        elif kind in ("SceneCompleted", "ChorusCompleted"):
            group = self.groups[path]
            self.open_groups.discard(path)
            if kind == "ChorusCompleted":
                group.children = [c for c in group.children if c.done]
            group.done = True
            self.attach(group)
        elif kind in ("SceneFailed", "ChorusFailed"):
            group = self.groups[path]
            self.open_groups.discard(path)
            if isinstance(group.step, Scene) and group.step.saga:
                self.unfinished.add(path)  # until CompensationCompleted
            else:
                self.attach(group)
        elif kind == "CompensationStarted":
            self.unfinished.add(path)
        elif kind == "CompensationStepCompleted":
            self.undone.add(path)
            self.undo_failed.discard(path)
            self.acts[path].done = False  # nothing left to undo
        elif kind == "CompensationStepFailed":
            self.undo_failed.add(path)
            if not self.retry_failed:
                self.acts[path].done = False
        elif kind == "CompensationCompleted":
            group = self.groups[path]
            if e.data.get("ok", True) or not self.retry_failed:
                group.compensated = True
                self.unfinished.discard(path)

    def close_crashed(self, *, uncertain: bool) -> list[_GroupRecord]:
        """Attach what the crash left open; return the rollbacks to run, in order."""
        if uncertain:
            for path, _ in sorted(self.open_acts.items(), key=lambda kv: kv[1]):
                record = self.acts[path]
                if record.act.uncertain == "skip" or path in self.undone:
                    continue
                if path in self.undo_failed and not self.retry_failed:
                    continue
                record.done = True  # uncertain: undone as if it completed
                record.value = None
                self.attach(record)
        rollbacks: list[_GroupRecord] = []
        for path in sorted(
            self.open_groups | self.unfinished, key=self.started.__getitem__
        )[::-1]:
            group = self.groups[path]
            is_saga = isinstance(group.step, Scene) and group.step.saga
            if path in self.unfinished or is_saga:
                rollbacks.append(group)
            elif group is not self.top:
                self.attach(group)  # its completed work goes to its parent
        return rollbacks

    def failure(self, interrupted: bool) -> RecordedFailure:
        step = self.failed_step
        if step is None and self.open_acts:
            step = max(self.open_acts, key=self.open_acts.__getitem__)
        if self.error is not None:
            error_type = str(self.error.get("type"))
            message = f"{error_type}: {self.error.get('message')}"
            if interrupted:
                message += "; then its process ended before the run did"
        else:
            error_type = None
            message = "its process ended before the run did"
        return RecordedFailure(
            f"run {self.run_id!r}, step {step!r}: {message}",
            run_id=self.run_id,
            step=step,
            error_type=error_type,
            interrupted=interrupted,
        )


def _scene_map(scenes: Mapping[str, Scene] | Iterable[Scene]) -> dict[str, Scene]:
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
    for name, scene in items:
        if not isinstance(scene, Scene):
            raise TypeError(f"scenes: every value must be a Scene, got {scene!r}")
        if name != scene.name:
            raise ValueError(
                f"scenes: key {name!r} does not match the scene's name {scene.name!r}"
            )
        out[name] = scene
    return out


def _check_journal(journal: object) -> Journal:
    if not isinstance(journal, Journal):
        raise TypeError(
            f"journal must implement trio_sagas.Journal (e.g. a SQLiteJournal), "
            f"got {journal!r}"
        )
    return journal


async def _roll_back(
    journal: Journal,
    run_id: str,
    scene: Scene,
    *,
    deps: Any,
    observer: Observer | None,
    owner: str,
    manual: bool,
) -> SagaResult:
    """Roll back one claimed run; write its final status."""
    codec = journal.codec
    # Read after the claim: nobody else writes to the run now.
    record = await journal.get_run(run_id)
    if record is None:
        raise RunNotFoundError(f"no run {run_id!r} in journal {journal!r}")
    entries = await journal.events(run_id)
    replay = _Replay(
        record,
        scene,
        entries,
        decode=codec.decode,
        deps=deps,
        retry_failed=manual,
    )
    state = None if record.state is None else replay.decoded(record.state)
    first_seq = entries[-1].seq + 1 if entries else 0
    run = _DurableRun(
        record.run_id,
        state,
        deps,
        observer,
        journal,
        owner=owner,
        first_seq=first_seq,
    )
    interrupted = not manual
    for group in replay.close_crashed(uncertain=True):
        await run.roll_back(group)
    top = replay.top
    if manual and top is not None and top.has_undo():
        await run.roll_back(top)  # the operator asked: undo everything left
    failed = set(replay.undo_failed)
    for event in run.events:
        kind = type(event).__name__
        if kind == "CompensationStepCompleted":
            failed.discard(event.step)  # type: ignore[attr-defined]
        elif kind == "CompensationStepFailed":
            failed.add(event.step)  # type: ignore[attr-defined]
    if failed:
        status = RunStatus.NEEDS_INTERVENTION
    elif top is not None and top.has_undo():
        status = RunStatus.FAILED
    else:
        status = RunStatus.COMPENSATED
    await run.finish(status)
    run.check_journal()
    failure = replay.failure(interrupted)
    return SagaResult(
        run_id=record.run_id,
        status=Status.FAILED,
        state=run.state,
        error=failure,
        failed_step=failure.step,
        compensation=CompensationReport(tuple(run.undo_outcomes)),
        events=tuple(run.events),
    )


async def recover(
    journal: Journal,
    scenes: Mapping[str, Scene] | Iterable[Scene],
    *,
    deps: Any = None,
    observer: Observer | None = None,
    stale_after: float = 0.0,
) -> RecoveryReport:
    """Roll back every run the journal says is still RUNNING.

    Call it when a process starts, with the same scene definitions the
    crashed process used. Each run is first *claimed* (so two recoveries, or
    a presumed-dead owner, never both write to it), then rolled back as
    described in :doc:`durable`. A second call finds nothing to do.

    Args:
        journal: The journal the runs were written to.
        scenes: The scene definitions, by name (``{scene.name: scene}``) or
            as a list; runs of other scenes are reported, not touched.
        deps: Passed to every undo as ``ctx.deps``.
        observer: Receives the recovery's events.
        stale_after: Only take over runs whose latest journal write is at
            least this many seconds old. 0 (default) is right when no other
            process runs sagas on this journal; with several processes, set
            it above your longest step.

    Returns:
        A :class:`RecoveryReport`: one :class:`SagaResult` per run rolled
        back, and the runs left alone.

    Raises:
        JournalError: the journal could not be read or written.
    """
    journal = _check_journal(journal)
    by_name = _scene_map(scenes)
    check_sync_observer(observer)
    results: list[SagaResult] = []
    skipped: list[SkippedRun] = []
    for record in await journal.runs(status=RunStatus.RUNNING):
        scene = by_name.get(record.scene)
        if scene is None:
            skipped.append(
                SkippedRun(
                    record.run_id,
                    record.scene,
                    f"scene {record.scene!r} was not passed to recover()",
                )
            )
            continue
        key = (id(journal), record.run_id)
        if key in _LIVE:
            skipped.append(
                SkippedRun(record.run_id, record.scene, "running in this process")
            )
            continue
        _LIVE.add(key)  # before the claim: a concurrent recover() skips it
        try:
            owner = new_owner()
            if not await journal.claim(
                record.run_id, owner=owner, stale_after=stale_after
            ):
                skipped.append(
                    SkippedRun(
                        record.run_id,
                        record.scene,
                        f"written to less than {stale_after} s ago, or claimed "
                        "by another recovery",
                    )
                )
                continue
            results.append(
                await _roll_back(
                    journal,
                    record.run_id,
                    scene,
                    deps=deps,
                    observer=observer,
                    owner=owner,
                    manual=False,
                )
            )
        except _Mismatch as exc:
            skipped.append(SkippedRun(record.run_id, record.scene, str(exc)))
        finally:
            _LIVE.discard(key)
    return RecoveryReport(tuple(results), tuple(skipped))


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
            the run right now.
    """
    journal = _check_journal(journal)
    check_label(run_id, "run_id")
    by_name = _scene_map(scenes)
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
        replay = _Replay(
            record,
            scene,
            await journal.events(run_id),
            decode=journal.codec.decode,
            deps=deps,
            retry_failed=True,
        )
    except _Mismatch as exc:
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
    key = (id(journal), run_id)
    if key in _LIVE:
        raise JournalError(f"run {run_id!r} is being compensated in this process")
    _LIVE.add(key)
    try:
        owner = new_owner()
        claimed = await journal.claim(
            run_id,
            owner=owner,
            statuses=(RunStatus.FAILED, RunStatus.NEEDS_INTERVENTION),
        )
        if not claimed:
            raise JournalError(
                f"run {run_id!r} changed while being claimed (another "
                "compensate_run or recovery is at work on it)"
            )
        return await _roll_back(
            journal,
            run_id,
            scene,
            deps=deps,
            observer=observer,
            owner=owner,
            manual=True,
        )
    except _Mismatch as exc:  # the run changed between the check and the claim
        raise ValueError(f"run {run_id!r}: {exc}") from None
    finally:
        _LIVE.discard(key)
