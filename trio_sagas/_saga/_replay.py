"""Journal replay: a run's records rebuilt from its journal entries.

Replay turns a run's entries and its scene definition back into the records
the runner keeps in memory (:mod:`._records`: each group's children in
completion order), so a recovered rollback runs the runner's own code with
its semantics. It also keeps what a *resume* needs: the completed acts with
their results (:attr:`Replay.acts`, ``done``/``value``), the uncertain
started-not-completed acts (:attr:`Replay.open_acts`), and every group's
position (:attr:`Replay.groups`, open ones in :attr:`Replay.open_groups`):
per Chorus branch and per nested scene. Event kinds are named by the event
classes, never by hand-typed strings.

What the entries say, act by act:

* ``ActCompleted`` -- completed: compensated (``ctx.result`` decoded from
  the journal), unless a ``CompensationStepCompleted`` follows.
* ``ActStarted`` and nothing after it -- *uncertain*: the process died while
  ``run`` ran. Compensated (``ctx.result`` None) unless the act says
  ``uncertain="skip"``.
* ``ActFailed`` -- it did not complete: its ``compensate`` runs only if the
  act says ``compensate_on_failure=True``.
* ``ActCancelled`` -- interrupted while ``run`` ran (its effect may have
  happened): uncertain, compensated as the runner does, unless the act says
  ``uncertain="skip"``.
* ``CompensationRegistered`` -- a durable undo the act registered in ``run``
  (:mod:`._durable`): run on rollback whatever way the act ended, unless a
  ``CompensationActionCompleted`` for it follows.
* ``CompensationStepStarted`` without an outcome -- interrupted: run again,
  with the same idempotency key.
* ``RunResumed`` -- a recovery went on with the run (see :mod:`._resume`):
  the entries after it are the new process's, in the same stream; a
  ``SceneStarted``/``ChorusStarted`` of a group still open, and an
  ``ActStarted`` of an uncertain act, are that process entering them again.
* ``CompensationStepFailed`` -- failed for good: a recovery leaves it (the
  run ends NEEDS_INTERVENTION); a manual compensation tries it again.

Groups the crash left open are closed innermost first, as if their running
step had failed: an open saga scene rolls back, an open plain scene or
chorus hands its completed work to its parent. A rollback that was under
way (``CompensationStarted`` without ``CompensationCompleted``) is resumed.
"""

from __future__ import annotations

from typing import Any, final

from ._durable import DurableScope, resolve_undo
from ._events import (
    ActCancelled,
    ActCompleted,
    ActFailed,
    ActStarted,
    ChorusCompleted,
    ChorusFailed,
    ChorusStarted,
    CompensationActionCompleted,
    CompensationCompleted,
    CompensationRegistered,
    CompensationStarted,
    CompensationStepCompleted,
    CompensationStepFailed,
    RunResumed,
    SceneCompleted,
    SceneFailed,
    SceneStarted,
)
from ._journal import JournalEntry, RunRecord
from ._model import Act, Chorus, Scene, Step, Uncertain
from ._records import ActRecord, GroupRecord, Record
from ._runner import act_context

_SCENE_STARTED = SceneStarted.__name__
_SCENE_COMPLETED = SceneCompleted.__name__
_SCENE_FAILED = SceneFailed.__name__
_CHORUS_STARTED = ChorusStarted.__name__
_CHORUS_COMPLETED = ChorusCompleted.__name__
_CHORUS_FAILED = ChorusFailed.__name__
_ACT_STARTED = ActStarted.__name__
_ACT_COMPLETED = ActCompleted.__name__
_ACT_FAILED = ActFailed.__name__
_ACT_CANCELLED = ActCancelled.__name__
_COMPENSATION_STARTED = CompensationStarted.__name__
_UNDO_COMPLETED = CompensationStepCompleted.__name__
_UNDO_FAILED = CompensationStepFailed.__name__
_COMPENSATION_COMPLETED = CompensationCompleted.__name__
_REGISTERED = CompensationRegistered.__name__
_ACTION_COMPLETED = CompensationActionCompleted.__name__
_RUN_RESUMED = RunResumed.__name__


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


class ReplayMismatch(Exception):
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


class Replay:
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
        self.top: GroupRecord | None = None
        self.groups: dict[str, GroupRecord] = {}
        self.started: dict[str, int] = {}  # group path -> seq of its start
        self.open_groups: set[str] = set()
        self.unfinished: set[str] = set()  # groups whose rollback must run
        self.acts: dict[str, ActRecord] = {}
        self.open_acts: dict[str, int] = {}  # path -> seq of ActStarted
        self.undone: set[str] = set()
        self.undo_failed: set[str] = set()
        self.failed_step: str | None = None
        self.error: dict[str, Any] | None = None
        # For a resume: every act that completed (path -> what run returned),
        # in completion order, whatever was undone since.
        self.completed: dict[str, object] = {}
        # Where the run was failing when its process died (a step failed or
        # was cancelled, a rollback began): then it cannot resume. A chorus
        # that completed tolerated the failures inside it (PARTIAL_SUCCESS).
        self.failures: set[str] = set()
        self.previous_owner: str | None = None  # per the latest RunResumed
        for entry in entries:
            try:
                self.apply(entry)
            except KeyError as exc:
                raise ReplayMismatch(
                    f"entry {entry.seq} ({entry.kind} {entry.step!r}) refers to "
                    f"{exc} the journal never started; the journal is inconsistent"
                ) from None

    def decoded(self, data: bytes) -> Any:
        try:
            return self.decode(data)
        except Exception as exc:
            raise ReplayMismatch(f"cannot decode a journaled value: {exc!r}") from exc

    def step(self, path: str, kind: type[Any]) -> Any:
        step = self.steps.get(path)
        if not isinstance(step, kind):
            raise ReplayMismatch(
                f"the journal has a {kind.__name__} {path!r} the scene definition "
                f"does not (found {type(step).__name__ if step else 'nothing'})"
            )
        return step

    def attach(self, record: Record) -> None:
        parent = self.groups.get(_parent(record.path))
        if parent is not None:
            parent.children.append(record)

    def apply(self, e: JournalEntry) -> None:
        kind, path = e.kind, e.step
        if kind in (_SCENE_STARTED, _CHORUS_STARTED):
            if path in self.open_groups:
                return  # entered again by a resumed run: same group, same children
            group = GroupRecord(
                self.step(path, Scene if kind == _SCENE_STARTED else Chorus), path
            )
            self.groups[path] = group
            self.started[path] = e.seq
            self.open_groups.add(path)
            if self.top is None:
                self.top = group
        elif kind == _ACT_STARTED:
            act = self.step(path, Act)
            ctx = act_context(self.run_id, path, act, self.deps)
            ctx._compensation = DurableScope(path, None)  # sink: see bind()
            self.acts[path] = ActRecord(act, path, ctx)
            self.open_acts[path] = e.seq
            # Run again by a resumed run: an undo of its uncertain try is past.
            self.undone.discard(path)
            self.undo_failed.discard(path)
        elif kind == _ACT_COMPLETED:
            self.open_acts.pop(path, None)
            record = self.acts[path]
            record.done = True
            record.value = None if e.value is None else self.decoded(e.value)
            self.completed[path] = record.value
            self.attach(record)
        elif kind == _ACT_CANCELLED:
            # Interrupted while it ran: uncertain, as the runner undoes it. A
            # cancelled act also means the run was failing: it is not resumed.
            self.failures.add(path)
            self.open_acts.pop(path, None)
            record = self.acts[path]
            record.uncertain = record.act.uncertain != Uncertain.SKIP
            record.effect = record.act.compensate_on_failure
            self.attach(record)
        elif kind == _ACT_FAILED:
            self.failures.add(path)
            self.open_acts.pop(path, None)
            if self.failed_step is None:
                self.failed_step = path
                self.error = e.data.get("error")
            record = self.acts[path]
            record.effect = record.act.compensate_on_failure
            if record.has_undo():
                self.attach(record)  # as the runner keeps it: partial progress
        elif kind == _REGISTERED:
            self.register(e)
        elif kind == _ACTION_COMPLETED:
            self.scope(path).forget(int(e.data["index"]))
        elif kind in (_SCENE_COMPLETED, _CHORUS_COMPLETED):
            group = self.groups[path]
            self.open_groups.discard(path)
            if kind == _CHORUS_COMPLETED:
                group.children = [c for c in group.children if c.done]
                self.tolerated(path)
            group.done = True
            self.attach(group)
        elif kind in (_SCENE_FAILED, _CHORUS_FAILED):
            self.failures.add(path)
            group = self.groups[path]
            self.open_groups.discard(path)
            if isinstance(group.step, Scene) and group.step.saga:
                self.unfinished.add(path)  # until CompensationCompleted
            else:
                self.attach(group)
        elif kind == _COMPENSATION_STARTED:
            self.failures.add(path)
            self.unfinished.add(path)
        elif kind == _UNDO_COMPLETED:
            self.undone.add(path)
            self.undo_failed.discard(path)
            self.settled(path)  # nothing left to undo
        elif kind == _UNDO_FAILED:
            self.undo_failed.add(path)
            if not self.retry_failed:
                self.settled(path)
        elif kind == _RUN_RESUMED:
            self.previous_owner = e.data.get("owner")
        elif kind == _COMPENSATION_COMPLETED:
            group = self.groups[path]
            if e.data.get("ok", True) or not self.retry_failed:
                group.compensated = True
                self.unfinished.discard(path)

    def tolerated(self, chorus: str) -> None:
        """*chorus* completed: the failures of its branches did not fail the
        run (a PARTIAL_SUCCESS chorus), so they do not stop a resume."""
        inside = chorus + "/"
        self.failures = {p for p in self.failures if not p.startswith(inside)}
        if self.failed_step is not None and self.failed_step.startswith(inside):
            self.failed_step = None
            self.error = None

    def scope(self, path: str) -> DurableScope:
        scope = self.acts[path].ctx.compensation
        assert isinstance(scope, DurableScope)
        return scope

    def settled(self, path: str) -> None:
        record = self.acts[path]
        record.done = record.effect = record.uncertain = False
        record.ctx.compensation.clear()

    def register(self, e: JournalEntry) -> None:
        name = str(e.data.get("undo"))
        fn = resolve_undo(name)
        if fn is None:
            raise ReplayMismatch(
                f"step {e.step!r} registered the durable undo {name!r}, which is "
                "not known in this process: import the module that defines it "
                f"with @trio_sagas.durable_undo({name!r}) before recovering"
            )
        args = e.data.get("args") or []
        label = e.data.get("label")
        self.scope(e.step).restore(
            int(e.data["index"]), fn, tuple(args), None if label is None else str(label)
        )

    def bind(self, sink: Any) -> None:
        """Journal the durable undos' completions through *sink* (the recorder)."""
        for record in self.acts.values():
            scope = record.ctx.compensation
            if isinstance(scope, DurableScope):
                scope.sink = sink

    def resumable(self) -> bool:
        """Whether the run can go on: it was not failing when its process died."""
        return not self.failures and (self.top is None or not self.top.done)

    def uncertain(self) -> tuple[str, ...]:
        """Paths of the acts started and never ended (the crash hit them), in order."""
        return tuple(sorted(self.open_acts, key=self.open_acts.__getitem__))

    def position(self, group: str) -> tuple[str, ...]:
        """Names of *group*'s sub-steps that completed, in completion order
        (a Chorus: its finished branches; a Scene: where to resume)."""
        record = self.groups[group]
        return tuple(c.path.rpartition("/")[2] for c in record.children if c.done)

    def close_crashed(self, *, uncertain: bool) -> list[GroupRecord]:
        """Attach what the crash left open; return the rollbacks to run, in order."""
        if uncertain:
            for path, _ in sorted(self.open_acts.items(), key=lambda kv: kv[1]):
                record = self.acts[path]
                if path in self.undone:
                    continue
                if path in self.undo_failed and not self.retry_failed:
                    continue
                if record.act.uncertain != "skip":
                    record.done = True  # uncertain: undone as if it completed
                    record.value = None
                if record.has_undo():
                    self.attach(record)
        rollbacks: list[GroupRecord] = []
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
