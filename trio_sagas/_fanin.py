"""Fan-in: drain several receive channels with per-message undo actions.

:func:`fan_in` drains several receive channels at once, gives every message
its own :class:`StepContext`, and keeps the undo actions of every handled
message until the whole fan-in has succeeded (or until a ``commit_every``
checkpoint commits them, for endless streams).

It *owns* the receive channels it is given, as a consumer task owns the
channel it drains in Trio: each channel is closed when its draining stops,
on every path (exhausted, failed, timed out, cancelled; after a failure or
a timeout, a memory channel once every drain has stopped). A producer still
sending into it then gets :exc:`trio.BrokenResourceError` instead of
blocking forever. Pass ``channel.clone()`` to keep a handle open.
Nothing taken off a channel vanishes: a message that was not handled is
reported in ``attributes["unhandled"]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from operator import attrgetter, itemgetter
from typing import Any, Generic, TypeVar, final

import trio

from ._compensation import CompensationScope
from ._context import StepContext
from ._merge import close_quietly, take_leftovers
from ._outcome import CancelCause, CancelReason, Outcome, Status, describe_error
from ._util import lone_cancelled
from ._validate import (
    check_async,
    check_optional_int,
    check_receive_channels,
    check_timeout,
    check_type,
)

T = TypeVar("T")

_YIELD_EVERY = 32
"""Memory-channel drains yield to the scheduler at least every this many items."""

Handler = Callable[[T, StepContext], Awaitable[object]]


# The slot holding a context's compensation scope, read without building
# one: a StepContext that creates its scope on first use keeps it (or None)
# in ``_compensation``; one that creates it up front, in ``compensation``.
_scope_of: Callable[[StepContext], CompensationScope | None] = attrgetter(
    "_compensation" if hasattr(StepContext, "_compensation") else "compensation"
)


@final
class _FanIn(Generic[T]):
    """The state of one :func:`fan_in` call (private; one per call)."""

    __slots__ = (
        "added",
        "cause",
        "commit_every",
        "committed",
        "context",
        "drain_scope",
        "error",
        "failed_at",
        "handled",
        "handler",
        "interrupted",
        "later_errors",
        "limiter",
        "since_commit",
        "stopped",
        "unhandled",
    )

    def __init__(
        self,
        context: StepContext,
        sources: int,
        handler: Handler[T],
        limiter: trio.CapacityLimiter | None,
        commit_every: int | None,
    ) -> None:
        self.context = context
        self.handler = handler
        self.limiter = limiter
        self.commit_every = commit_every
        self.handled = [0] * sources
        # The actions this fan-in adds live here until it knows whether it
        # committed (cleared) or not (moved to context.compensation): the
        # caller's own earlier actions are never touched either way.
        self.added = CompensationScope()
        self.drain_scope = trio.CancelScope()
        self.cause: CancelCause | None = None
        self.error: Exception | None = None
        self.failed_at: str | None = None
        self.later_errors: list[tuple[str, Exception]] = []
        self.interrupted = 0
        self.committed = 0
        self.since_commit = 0
        self.unhandled: list[tuple[int, T]] = []
        self.stopped: list[tuple[int, trio.MemoryReceiveChannel[T]]] = []

    def fail(self, name: str, error: Exception) -> None:
        """Record a failure; the first one stops every drain at once."""
        if self.cause is not None:
            self.later_errors.append((name, error))
            return
        self.error = error
        self.failed_at = name
        self.cause = CancelCause.of(
            CancelReason.STEP_FAILED,
            triggered_by=name,
            message=f"fan-in message failed: {describe_error(error)}",
        )
        self.drain_scope.cancel(reason=self.cause.describe())

    def commit(self) -> None:
        """A ``commit_every`` checkpoint: discard the handled messages' undo actions.

        Runs between two awaits, so ``added`` holds exactly the actions of
        messages whose handler returned; handlers still running keep theirs
        on their own context until they end.
        """
        self.added.clear()
        self.committed += self.since_commit
        self.since_commit = 0

    async def drain(self, index: int, source: trio.abc.ReceiveChannel[T]) -> None:
        """Handle every message of one channel, in order, one at a time."""
        # Locals: this loop is the per-message hot path.
        handler = self.handler
        child = self.context._trusted_child
        scope_of = _scope_of
        added = self.added._actions
        unhandled = self.unhandled
        limiter = self.limiter
        commit_every = self.commit_every
        receive = source.receive
        receive_nowait = None
        if isinstance(source, trio.MemoryReceiveChannel):
            receive_nowait = source.receive_nowait
        checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
        checkpoint = trio.lowlevel.checkpoint
        WouldBlock = trio.WouldBlock
        countdown = 0
        prefix = f"{index}."
        path_prefix = f"{self.context.path}/{prefix}"
        sequence = 0
        done = 0
        try:
            while True:
                try:
                    if receive_nowait is None:
                        item = await receive()
                    else:
                        # MemoryReceiveChannel.receive() yields to the
                        # scheduler on every item, which costs more than the
                        # rest of the loop. Keep its cancellation check per
                        # item (so a failure or an outer cancel stops the
                        # drain before the next message) but yield only
                        # every _YIELD_EVERY items.
                        if countdown:
                            countdown -= 1
                            await checkpoint_if_cancelled()
                        else:
                            countdown = _YIELD_EVERY
                            await checkpoint()
                        try:
                            item = receive_nowait()
                        except WouldBlock:
                            item = await receive()
                except trio.EndOfChannel:
                    return
                sequence += 1
                number = str(sequence)
                ctx = child(prefix + number, path_prefix + number)
                try:
                    if limiter is None:
                        await handler(item, ctx)
                    else:
                        async with limiter:
                            await handler(item, ctx)
                except Exception as exc:
                    unhandled.append((index, item))
                    self.fail(ctx.name, exc)
                    return
                except BaseException:
                    unhandled.append((index, item))
                    self.interrupted += 1
                    raise
                finally:
                    # Whatever the handler did before it returned, failed or
                    # was cancelled may need undoing: keep its actions, in
                    # order (CompensationScope.absorb without its checks).
                    scope = scope_of(ctx)
                    if scope is not None and scope._actions:
                        added.extend(scope._actions)
                        scope._actions.clear()
                done += 1
                if commit_every is not None:
                    self.since_commit += 1
                    if self.since_commit >= commit_every:
                        self.commit()
        except Exception as exc:
            # Only receiving gets here: handler errors are caught above.
            self.fail(f"receivers[{index}]", exc)
        finally:
            self.handled[index] = done
            if isinstance(source, trio.MemoryReceiveChannel) and self.cause is not None:
                # Stopped early by a failure or the timeout: closing the last
                # handle would drop what is still buffered. Whether to take
                # it off (and report it) or leave it (an outside cancel may
                # come too, and then there is no outcome to report it in) is
                # decided once every drain has stopped, in settle().
                self.stopped.append((index, source))
            else:
                error = await close_quietly(source)
                if error is not None:
                    self.fail(f"receivers[{index}]", error)

    def settle(self, *, report: bool) -> None:
        """Close the memory channels whose drain a failure or the timeout stopped.

        With *report* (an outcome is returned), what they still hold is taken
        off first and listed in ``unhandled``; without (an outside cancel is
        raised), it stays in the channel for any clone the caller kept.
        Synchronous, so it also runs on the way out of a cancelled call.
        """
        stopped, self.stopped = self.stopped, []
        for index, source in stopped:
            if report:
                take_leftovers(index, source.receive_nowait, self.unhandled)
            source.close()

    async def timer(self, deadline: float, seconds: float) -> None:
        """Stop every drain at *deadline*, with a readable reason."""
        await trio.sleep_until(deadline)
        if self.cause is None:
            self.cause = CancelCause.of(
                CancelReason.STEP_TIMEOUT,
                triggered_by=self.context.name,
                message=f"fan-in did not finish within {seconds} s",
            )
            self.drain_scope.cancel(reason=self.cause.describe())

    async def run(self, sources: tuple[trio.abc.ReceiveChannel[T], ...]) -> None:
        """Drain every source concurrently, inside this call's drain scope."""
        with self.drain_scope:
            async with trio.open_nursery() as nursery:
                for index, source in enumerate(sources):
                    nursery.start_soon(
                        self.drain, index, source, name=_task_name(self.context, index)
                    )

    async def run_with_timer(
        self, sources: tuple[trio.abc.ReceiveChannel[T], ...], seconds: float
    ) -> None:
        """:meth:`run`, stopped with ``STEP_TIMEOUT`` after *seconds*."""
        async with trio.open_nursery() as outer:
            outer.start_soon(self.timer, trio.current_time() + seconds, seconds)
            await self.run(sources)
            # Every drain ended first: the timer has nothing to do.
            outer.cancel_scope.cancel(reason="fan-in finished")


async def fan_in(
    context: StepContext,
    receivers: Iterable[trio.abc.ReceiveChannel[T]],
    handler: Callable[[T, StepContext], Awaitable[object]],
    *,
    timeout: float | None = None,
    limit: int | None = None,
    commit_every: int | None = None,
) -> Outcome[int]:
    """Drain every channel in *receivers* concurrently, with per-message undo.

    Each channel gets one draining task that handles its messages **in
    order, one at a time** (a transport's order is kept); channels are
    drained concurrently. ``await handler(item, ctx)`` gets a fresh child
    :class:`StepContext` per message, named ``"<source index>.<sequence>"``
    (``"0.1"`` is the first message of ``receivers[0]``).

    Undo actions a handler registers on ``ctx`` stay together, in the order
    it registered them; messages are ordered by when their handler ended.

    * **Success** (every channel closed by its senders and drained): the
      outcome is SUCCEEDED with ``value`` = the number of messages handled,
      and the actions this fan-in added are discarded (committed). Actions
      the caller registered on ``context.compensation`` before are kept.
    * **First failure** (a handler raising an :exc:`Exception`, or a
      channel's ``receive``/``aclose`` raising one): every drain stops at
      once (peers are cancelled with ``STEP_FAILED``, internal, triggered by
      the failing message's name), the outcome is FAILED with the error,
      and every action registered by a handler that started, including the
      failing and the interrupted ones, is moved to
      ``context.compensation`` for the caller to run.
    * **Timeout** (*timeout* seconds on the Trio clock): the same, with
      TIMED_OUT and cause ``STEP_TIMEOUT``.
    * **External cancellation** propagates as a bare :exc:`trio.Cancelled`
      (raised, not returned; never an exception group); the actions are
      moved to ``context.compensation`` first.

    fan_in owns *receivers*: each is closed when its draining stops, on
    every path (after a failure or a timeout, a memory channel once every
    drain has stopped, so that what it holds can be reported), and senders
    fail fast with :exc:`trio.BrokenResourceError` rather than block. Pass
    ``channel.clone()`` to keep your own handle.

    **Nothing vanishes.** After a failure or a timeout, what a memory
    channel still holds (its buffer and any sender blocked on it) is taken
    off before the channel is closed, and ``attributes["unhandled"]`` lists
    every message taken off a channel but not handled: the failed one, the
    interrupted ones, and those leftovers, as ``(source_index, item)``
    sorted by source, each source's in channel order. So ``handled +
    len(unhandled)`` is every message taken off. An outside cancel takes
    nothing more off: what is buffered stays in the channel, for any clone
    you kept.

    ``outcome.attributes`` holds ``handled`` (int), ``handled_per_source``
    (tuple of ints), ``interrupted`` (messages received whose handling a
    cancel stopped), ``compensations`` (actions this fan-in added since the
    last commit: discarded on success, left to the caller otherwise),
    ``committed`` (messages whose undo actions were discarded: all handled
    ones on success, those before the last ``commit_every`` checkpoint
    otherwise), ``unhandled`` (see above), after a failure ``failed_at``
    (the message or ``"receivers[i]"`` that failed), and ``later_errors``
    (``(name, error)`` raised while stopping), if any.

    Args:
        context: The step running the fan-in; per-message contexts are its
            children and its compensation scope receives their actions.
        receivers: The channels to drain (distinct objects).
        handler: ``async def handler(item, ctx)``.
        timeout: Seconds on the Trio clock for the whole fan-in, or None
            for no limit.
        limit: At most this many handlers run at once (across channels).
            A draining task holds at most one received message while it
            waits for a slot. None: one handler per channel.
        commit_every: For long-running consumers of endless streams: every
            this many handled messages, the undo actions of every message
            handled so far are discarded (committed), so memory stays flat;
            a later failure rolls back only what was handled since. None
            (default): nothing is committed before the fan-in succeeds.

    Returns:
        An :class:`Outcome` named after *context* (``value``: messages
        handled, on success).

    Raises:
        TypeError: *context* is not a StepContext, *receivers* is not an
            iterable of receive channels, *handler* is not async, or
            *timeout*/*limit*/*commit_every* has the wrong type.
        ValueError: a negative, NaN or infinite *timeout*, ``limit < 1``,
            ``commit_every < 1``, or the same channel object twice.

    .. versionadded:: 0.1
    """
    check_type(context, StepContext, "context")
    sources = check_receive_channels(receivers, "receivers")
    check_async(handler, "handler")
    seconds = check_timeout(timeout, "timeout", allow_inf=False)
    bound = check_optional_int(limit, "limit", minimum=1)
    check_optional_int(commit_every, "commit_every", minimum=1)
    limiter = None
    if bound is not None and bound < len(sources):
        # A limit at or above the number of channels can never bind: one
        # handler per channel runs at a time anyway, so skip the limiter.
        limiter = trio.CapacityLimiter(bound)
    state: _FanIn[T] = _FanIn(context, len(sources), handler, limiter, commit_every)
    started = trio.current_time()
    committed = False
    try:
        if seconds is None:
            await state.run(sources)
        else:
            await state.run_with_timer(sources, seconds)
        if not sources:
            await trio.lowlevel.checkpoint()
        state.settle(report=True)
        outcome = _outcome(state, started)
        if outcome.ok:
            committed = True
            state.added.clear()
        return outcome
    except BaseExceptionGroup as group:
        cancelled = lone_cancelled(group)
        if cancelled is not None:
            # An outside cancel, which trio's strict nurseries wrap in a group
            # of Cancelled: callers get the plain trio.Cancelled.
            raise cancelled from None
        raise
    finally:
        state.settle(report=False)
        if not committed:
            context.compensation.absorb(state.added)


def _outcome(state: _FanIn[Any], started: float) -> Outcome[int]:
    context = state.context
    total = sum(state.handled)
    attributes: dict[str, object] = {
        "handled": total,
        "handled_per_source": tuple(state.handled),
        "interrupted": state.interrupted,
        "compensations": len(state.added),
        "committed": total if state.cause is None else state.committed,
        "unhandled": tuple(sorted(state.unhandled, key=itemgetter(0))),
    }
    finished = trio.current_time()
    if state.cause is None:
        return Outcome(
            context.name,
            Status.SUCCEEDED,
            value=total,
            started_at=started,
            finished_at=finished,
            attributes=attributes,
        )
    if state.later_errors:
        attributes["later_errors"] = tuple(state.later_errors)
    if state.error is not None:
        attributes["failed_at"] = state.failed_at
        return Outcome(
            context.name,
            Status.FAILED,
            error=state.error,
            started_at=started,
            finished_at=finished,
            attributes=attributes,
        )
    return Outcome(
        context.name,
        Status.TIMED_OUT,
        cause=state.cause,
        started_at=started,
        finished_at=finished,
        attributes=attributes,
    )


def _task_name(context: StepContext, index: int) -> str:
    return f"fan_in {context.path!r} receivers[{index}]"
