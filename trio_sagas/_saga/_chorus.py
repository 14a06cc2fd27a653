"""A Chorus run: its branches concurrently, under one error group.

Tasks inside a Chorus reach it through a context variable holding the chain of
enclosing choruses (:data:`CHORUSES`), so a failing act deep inside a branch
can tell every enclosing FAIL_FAST chorus at once, before a long rollback, and
a cancelled act can name the chorus's own cause (a sibling failed, it timed
out) instead of calling the cancellation external.
"""

from __future__ import annotations

import contextvars
import math
from typing import TYPE_CHECKING

import trio

from .._errgroup import ErrGroup, open_err_group
from .._outcome import CancelCause, CancelReason, Status, describe_error
from .._util import is_cancellation
from ._events import ChorusCompleted, ChorusFailed, ChorusStarted
from ._model import Act, Chorus, ChorusMode, Step
from ._records import OK, GroupRecord, Record, StepResult, children_of, is_done

if TYPE_CHECKING:
    from ._runner import Runner


# The enclosing choruses, outermost first. Tasks inherit the tuple from the
# task that spawned them, so every branch sees its own chain.
CHORUSES: contextvars.ContextVar[tuple[ChorusRun, ...]] = contextvars.ContextVar(
    "trio_sagas_choruses", default=()
)


def chorus_cause() -> CancelCause | None:
    """The innermost enclosing chorus's own cancel cause, if it has one."""
    for chorus in reversed(CHORUSES.get()):
        cause = chorus.why()
        if cause is not None:
            return cause
    return None


def announce_failure(result: StepResult) -> None:
    """Tell the enclosing FAIL_FAST choruses now, before a long rollback.

    Stops at the first chorus of another mode: it does not cancel its
    branches, and whether it fails is decided later.
    """
    for chorus in reversed(CHORUSES.get()):
        if not chorus.fail_fast:
            return
        chorus.fail(result)


class ChorusRun:
    """One run of a :class:`Chorus`: its branches, their results, its cause."""

    def __init__(self, runner: Runner, chorus: Chorus, path: str) -> None:
        self.runner = runner
        self.chorus = chorus
        self.path = path
        self.record = GroupRecord(chorus, path)
        self.names = tuple(step.name for step in chorus.steps)
        self.fail_fast = chorus.mode is ChorusMode.FAIL_FAST
        self.results: dict[str, StepResult] = {}
        self.finished: list[str] = []
        deadline = (
            math.inf if chorus.timeout is None else trio.current_time() + chorus.timeout
        )
        self.timeout_scope = trio.CancelScope(deadline=deadline)
        self.cause: CancelCause | None = None
        self.group: ErrGroup | None = None
        self.started = 0.0

    def why(self) -> CancelCause | None:
        """The chorus's own cancel cause (it timed out, a branch failed), or None."""
        if self.timeout_scope.cancel_called:
            return CancelCause.of(
                CancelReason.STEP_TIMEOUT,
                scope=self.path,
                triggered_by=self.path,
                message=f"chorus timed out after {self.chorus.timeout} s",
            )
        return self.cause

    def fail(self, result: StepResult) -> None:
        """A failure certain to fail a FAIL_FAST chorus: cancel the other branches."""
        if self.cause is not None:
            return
        assert result.error is not None
        self.cause = CancelCause.of(
            CancelReason.STEP_FAILED,
            scope=self.path,
            triggered_by=result.failed_step,
            message=describe_error(result.error),
        )
        if self.group is not None:
            self.group.cancel(
                CancelReason.STEP_FAILED,
                triggered_by=self.cause.triggered_by,
                message=self.cause.message,
            )

    def outcome(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The names of the branches that succeeded, and of the others, in
        the chorus's order (one pass over the dict of results: linear)."""
        results = self.results
        succeeded: list[str] = []
        failed: list[str] = []
        for name in self.names:
            result = results.get(name)
            (succeeded if result is not None and result.ok else failed).append(name)
        return tuple(succeeded), tuple(failed)

    async def branch(self, step: Step) -> None:
        branch_path = f"{self.path}/{step.name}"
        runner = self.runner
        try:
            if isinstance(step, Act):
                # What runner.step() does for an act, without its coroutine
                # (with the settle skipped below: overhead per branch 9.2 ->
                # 8.2 us at 100 branches, measured).
                result = await runner.act(
                    step, branch_path, self.record.children, runner.now()
                )
            else:
                result = await runner.step(step, branch_path, self.record.children)
        except Exception as exc:
            # Steps report failures as values; one that raises still
            # fails only its branch, never the chorus's bookkeeping.
            result = StepResult(Status.FAILED, exc, None, branch_path)
        self.results[step.name] = result
        self.finished.append(step.name)
        recorder = self.runner.recorder
        if recorder.durable:  # in memory there is nothing to settle
            await recorder.settle()
        if result is not OK and not result.ok and self.fail_fast:
            assert result.error is not None
            self.fail(result)
            raise result.error

    def end_failed(
        self, status: Status, error: BaseException | None, sink: list[Record]
    ) -> None:
        runner = self.runner
        succeeded, failed = self.outcome()
        runner.recorder.emit(
            ChorusFailed,
            runner.now(),
            step=self.path,
            status=status,
            error=error,
            succeeded=succeeded,
            failed=failed,
            duration=runner.now() - self.started,
        )
        if self.record.has_undo():
            sink.append(self.record)  # the completed branches, for the saga to undo

    async def run(self, sink: list[Record]) -> StepResult:
        runner, chorus, path = self.runner, self.chorus, self.path
        runner.recorder.emit(
            ChorusStarted, runner.now(), step=path, branches=self.names
        )
        self.started = runner.now()
        token = CHORUSES.set((*CHORUSES.get(), self))
        try:
            with self.timeout_scope, runner.recorder.parallel():
                try:
                    async with open_err_group(
                        name=chorus.name, limit=chorus.max_workers
                    ) as group:
                        self.group = group
                        for step in chorus.steps:
                            group.start_soon(self.branch, step, name=step.name)
                except Exception:
                    pass  # every branch's result, failures included, is in results
                runner.recorder.check()
        except BaseException as exc:
            cancelled = is_cancellation(exc)
            self.end_failed(
                Status.CANCELLED if cancelled else Status.FAILED,
                None if cancelled else exc,
                sink,
            )
            raise
        finally:
            CHORUSES.reset(token)
        return self.conclude(sink)

    def conclude(self, sink: list[Record]) -> StepResult:
        runner, chorus, path, results = (
            self.runner,
            self.chorus,
            self.path,
            self.results,
        )
        succeeded, failed = self.outcome()
        if self.timeout_scope.cancelled_caught:
            error = TimeoutError(f"chorus {path!r} timed out after {chorus.timeout} s")
            cause = self.why()
            self.end_failed(Status.TIMED_OUT, error, sink)
            return StepResult(Status.TIMED_OUT, error, cause, path)
        if chorus.mode is ChorusMode.PARTIAL_SUCCESS:
            ok = bool(succeeded) or not self.names
        else:
            ok = not failed
        if ok:
            # Only what succeeded is undone later.
            record = self.record
            record.children = [c for c in children_of(record) if is_done(c)]  # type: ignore[misc]
            record.done = True
            sink.append(record)
            runner.recorder.emit(
                ChorusCompleted,
                runner.now(),
                step=path,
                succeeded=succeeded,
                failed=failed,
                duration=runner.now() - self.started,
            )
            return OK
        failing = next((n for n in self.finished if not results[n].ok), None)
        if failing is None:
            # Branches that never finished, without a failing one: the group
            # was cancelled by something else. Report it, never crash.
            missing = [n for n in self.names if n not in results]
            stray = RuntimeError(f"chorus {path!r}: branches {missing} did not finish")
            self.end_failed(Status.FAILED, stray, sink)
            return StepResult(Status.FAILED, stray, self.why(), path)
        first = results[failing]
        self.end_failed(Status.FAILED, first.error, sink)
        return StepResult(Status.FAILED, first.error, first.cause, first.failed_step)
