"""Memory-channel fan-in with per-message compensation, and merge (layer 4).

:func:`fan_in` drains several receive channels at once, gives every message
its own :class:`StepContext`, and keeps the undo actions of every message
until the whole fan-in has succeeded. :func:`open_merge` turns several
receive channels into one channel of ``(source_index, item)``.

Both *own* the receive channels they are given, as a consumer task owns the
channel it drains in Trio: each channel is closed as soon as its draining
stops, on every path (exhausted, failed, timed out, cancelled). A producer
still sending into it then gets :exc:`trio.BrokenResourceError` at once
instead of blocking forever. Pass ``channel.clone()`` to keep a handle open.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Generic, NoReturn, TypeVar, final

import attrs
import trio

from ._compensation import CompensationScope, StepContext
from ._outcome import CancelCause, CancelReason, Outcome, Status
from ._validate import check_async, check_timeout

T = TypeVar("T")

_YIELD_EVERY = 32
"""Memory-channel drains yield to the scheduler at least every this many items."""

Handler = Callable[[T, StepContext], Awaitable[object]]


def _check_receivers(receivers: Iterable[object], argument: str) -> tuple[Any, ...]:
    if isinstance(receivers, trio.abc.ReceiveChannel) or not isinstance(
        receivers, Iterable
    ):
        raise TypeError(
            f"{argument} must be an iterable of trio.abc.ReceiveChannel, got {receivers!r}"
        )
    sources = tuple(receivers)
    seen: set[int] = set()
    for index, source in enumerate(sources):
        if not isinstance(source, trio.abc.ReceiveChannel):
            raise TypeError(
                f"{argument}[{index}] must be a trio.abc.ReceiveChannel, got {source!r}"
            )
        if id(source) in seen:
            # Two drainers on one handle: the first to finish would close it
            # under the other. Clones are distinct handles and are fine.
            raise ValueError(
                f"{argument}[{index}] is the same channel object as an earlier one "
                f"({source!r}); pass channel.clone() to drain one channel twice"
            )
        seen.add(id(source))
    return sources


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int >= 1 or None, got {limit!r}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    return limit


async def _close_quietly(source: trio.abc.ReceiveChannel[Any]) -> Exception | None:
    """Close *source* without blocking; return (not raise) an error from it."""
    if isinstance(source, trio.MemoryReceiveChannel):
        source.close()
        return None
    try:
        await trio.aclose_forcefully(source)
    except Exception as exc:
        return exc
    return None


@final
class _FanIn(Generic[T]):
    """The state of one :func:`fan_in` call (private; one per call)."""

    __slots__ = (
        "added",
        "cause",
        "context",
        "drain_scope",
        "error",
        "failed_at",
        "handled",
        "handler",
        "interrupted",
        "later_errors",
        "limiter",
    )

    def __init__(
        self,
        context: StepContext,
        sources: int,
        handler: Handler[T],
        limiter: trio.CapacityLimiter | None,
    ) -> None:
        self.context = context
        self.handler = handler
        self.limiter = limiter
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
            message=f"fan-in message failed: {type(error).__name__}: {error}",
        )
        self.drain_scope.cancel(reason=self.cause.describe())

    async def drain(self, index: int, source: trio.abc.ReceiveChannel[T]) -> None:
        """Handle every message of one channel, in order, one at a time."""
        # Locals: this loop is the per-message hot path.
        handler = self.handler
        parent = self.context
        added = self.added
        handled = self.handled
        limiter = self.limiter
        receive = source.receive
        receive_nowait = None
        if isinstance(source, trio.MemoryReceiveChannel):
            receive_nowait = source.receive_nowait
        checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
        checkpoint = trio.lowlevel.checkpoint
        countdown = 0
        prefix = f"{index}."
        path_prefix = f"{parent.path}/{prefix}"
        sequence = 0
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
                        # drain before the next message, as before) but
                        # yield only every _YIELD_EVERY items.
                        if countdown:
                            countdown -= 1
                            await checkpoint_if_cancelled()
                        else:
                            countdown = _YIELD_EVERY
                            await checkpoint()
                        try:
                            item = receive_nowait()
                        except trio.WouldBlock:
                            item = await receive()
                except trio.EndOfChannel:
                    return
                sequence += 1
                number = str(sequence)
                ctx = parent._trusted_child(prefix + number, path_prefix + number)
                try:
                    if limiter is None:
                        await handler(item, ctx)
                    else:
                        async with limiter:
                            await handler(item, ctx)
                except Exception as exc:
                    self.fail(ctx.name, exc)
                    return
                except BaseException:
                    self.interrupted += 1
                    raise
                finally:
                    # Whatever the handler did before it returned, failed or
                    # was cancelled may need undoing: keep its actions, in order.
                    if ctx.compensation._actions:
                        added.absorb(ctx.compensation)
                handled[index] += 1
        except Exception as exc:
            # Only receiving gets here: handler errors are caught above.
            self.fail(f"receivers[{index}]", exc)
        finally:
            error = await _close_quietly(source)
            if error is not None:
                self.fail(f"receivers[{index}]", error)

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


async def fan_in(
    context: StepContext,
    receivers: Iterable[trio.abc.ReceiveChannel[T]],
    handler: Callable[[T, StepContext], Awaitable[object]],
    *,
    timeout: float | None = None,
    limit: int | None = None,
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
    * **External cancellation** propagates (it is raised, not returned);
      the actions are moved to ``context.compensation`` first.

    fan_in owns *receivers*: each is closed when its draining stops, on
    every path, so senders fail fast with :exc:`trio.BrokenResourceError`
    rather than block. Pass ``channel.clone()`` to keep your own handle.

    ``outcome.attributes`` holds ``handled`` (int), ``handled_per_source``
    (tuple of ints), ``interrupted`` (messages received whose handling a
    cancel stopped), ``compensations`` (actions this fan-in added:
    discarded on success, left to the caller otherwise), after a failure
    ``failed_at`` (the message or ``"receivers[i]"`` that failed), and
    ``later_errors`` (``(name, error)`` raised while stopping), if any.

    Args:
        context: The step running the fan-in; per-message contexts are its
            children and its compensation scope receives their actions.
        receivers: The channels to drain (distinct objects).
        handler: ``async def handler(item, ctx)``.
        timeout: Seconds on the Trio clock for the whole fan-in, or None.
        limit: At most this many handlers run at once (across channels).
            A draining task holds at most one received message while it
            waits for a slot. None: one handler per channel.

    Returns:
        An :class:`Outcome` named after *context* (``value``: messages
        handled, on success).

    Raises:
        TypeError: *context* is not a StepContext, *receivers* is not an
            iterable of receive channels, *handler* is not async, or
            *timeout*/*limit* has the wrong type.
        ValueError: a negative *timeout*, ``limit < 1``, or the same channel
            object twice.

    .. versionadded:: 0.1
    """
    if not isinstance(context, StepContext):
        raise TypeError(f"context must be a StepContext, got {context!r}")
    sources = _check_receivers(receivers, "receivers")
    check_async(handler, "handler")
    seconds = check_timeout(timeout, "timeout")
    bound = _check_limit(limit)
    limiter = None
    if bound is not None and bound < len(sources):
        # A limit at or above the number of channels can never bind: one
        # handler per channel runs at a time anyway, so skip the limiter.
        limiter = trio.CapacityLimiter(bound)
    state: _FanIn[T] = _FanIn(context, len(sources), handler, limiter)
    started = trio.current_time()
    committed = False
    try:
        with state.drain_scope:
            if seconds is None or math.isinf(seconds):
                async with trio.open_nursery() as nursery:
                    for index, source in enumerate(sources):
                        nursery.start_soon(
                            state.drain, index, source, name=_task_name(context, index)
                        )
            else:
                async with trio.open_nursery() as outer:
                    outer.start_soon(state.timer, started + seconds, seconds)
                    async with trio.open_nursery() as nursery:
                        for index, source in enumerate(sources):
                            nursery.start_soon(
                                state.drain,
                                index,
                                source,
                                name=_task_name(context, index),
                            )
                    # Every drain ended first: the timer has nothing to do.
                    outer.cancel_scope.cancel(reason="fan-in finished")
        if not sources:
            await trio.lowlevel.checkpoint()
        finished = trio.current_time()
        total = sum(state.handled)
        attributes: dict[str, object] = {
            "handled": total,
            "handled_per_source": tuple(state.handled),
            "interrupted": state.interrupted,
            "compensations": len(state.added),
        }
        if state.cause is None:
            committed = True
            state.added.clear()
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
    finally:
        if not committed:
            context.compensation.absorb(state.added)


def _task_name(context: StepContext, index: int) -> str:
    return f"fan_in {context.path!r} receivers[{index}]"


@final
@attrs.frozen
class MergeStatistics:
    """A snapshot of an :func:`open_merge` channel.

    Attributes:
        sources: How many source channels were merged.
        open_sources: Sources still being pumped.
        delivered_per_source: Items handed to the consumer, per source.
        undelivered: Items taken from a source but never handed over
            because the merge stopped first (see ``undelivered``).
        failed_source: Index of the source whose error ended the merge.
    """

    sources: int
    open_sources: int
    delivered_per_source: tuple[int, ...]
    undelivered: int
    failed_source: int | None


@final
class MergedReceiveChannel(trio.abc.ReceiveChannel[tuple[int, T]]):
    """The channel :func:`open_merge` yields: ``(source_index, item)`` pairs.

    ``receive`` raises :exc:`trio.EndOfChannel` once every source is
    exhausted, or re-raises the first source error (once; later calls raise
    :exc:`trio.BrokenResourceError`). ``aclose`` stops the pumps at once.
    """

    __slots__ = (
        "_delivered",
        "_error",
        "_error_delivered",
        "_failed_source",
        "_open_sources",
        "_pump_scope",
        "_receive",
        "_send",
        "_undelivered",
    )

    def __init__(self, sources: int) -> None:
        # A rendezvous channel: a pump holds at most one item it could not
        # hand over yet, so stopping loses at most one per source, and
        # those are reported in ``undelivered`` rather than dropped silently.
        send, receive = trio.open_memory_channel[tuple[int, T]](0)
        self._send = send
        self._receive = receive
        self._pump_scope = trio.CancelScope()
        self._delivered = [0] * sources
        self._open_sources = sources
        self._undelivered: list[tuple[int, T]] = []
        self._error: Exception | None = None
        self._error_delivered = False
        self._failed_source: int | None = None

    def __repr__(self) -> str:
        return (
            f"<trio_sagas.MergedReceiveChannel {len(self._delivered)} source(s), "
            f"{self._open_sources} open>"
        )

    async def receive(self) -> tuple[int, T]:
        """The next ``(source_index, item)``, in arrival order.

        Raises:
            trio.EndOfChannel: every source is exhausted.
            Exception: the error a source raised (first time only).
            trio.BrokenResourceError: a source failed earlier.
            trio.ClosedResourceError: this channel was closed.
        """
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._error is None:
                raise
        error = self._error
        if not self._error_delivered:
            self._error_delivered = True
            raise error
        raise trio.BrokenResourceError(
            f"open_merge source {self._failed_source} failed earlier: {error!r}"
        ) from error

    def close(self) -> None:
        """Stop every pump now and close this channel (sources get closed)."""
        self._shutdown("the merged channel was closed")

    async def aclose(self) -> None:
        """Like :meth:`close`, then a checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()

    @property
    def undelivered(self) -> tuple[tuple[int, T], ...]:
        """``(source_index, item)`` taken from a source but never delivered.

        At most one per source: what a pump held when the merge stopped (the
        block ended, the channel was closed, or another source failed).
        """
        return tuple(self._undelivered)

    def statistics(self) -> MergeStatistics:
        """A snapshot of this merge's live state."""
        return MergeStatistics(
            sources=len(self._delivered),
            open_sources=self._open_sources,
            delivered_per_source=tuple(self._delivered),
            undelivered=len(self._undelivered),
            failed_source=self._failed_source,
        )

    def _shutdown(self, reason: str) -> None:
        if self._open_sources:
            self._pump_scope.cancel(reason=reason)
        self._receive.close()

    def _record_error(self, index: int, error: Exception) -> None:
        if self._error is not None:
            return
        error.add_note(f"raised by open_merge source {index}")
        self._error = error
        self._failed_source = index
        # The merge ends at its first source error: stop the other pumps now
        # (their items in hand become ``undelivered``); the consumer's next
        # receive() raises the error once the pumps closed the channel.
        self._pump_scope.cancel(reason=f"open_merge source {index} failed: {error!r}")

    async def _run(self, sources: tuple[trio.abc.ReceiveChannel[T], ...]) -> None:
        # Pumps run in their own cancel scope so closing the merged channel
        # stops them without cancelling the consumer's block.
        with self._pump_scope:
            async with self._send, trio.open_nursery() as nursery:
                for index, source in enumerate(sources):
                    nursery.start_soon(
                        self._pump,
                        index,
                        source,
                        self._send.clone(),
                        name=f"open_merge source {index}",
                    )

    async def _pump(
        self,
        index: int,
        source: trio.abc.ReceiveChannel[T],
        send: trio.MemorySendChannel[tuple[int, T]],
    ) -> None:
        try:
            async with send:
                async for item in source:
                    try:
                        await send.send((index, item))
                    except trio.BrokenResourceError:
                        self._undelivered.append((index, item))
                        return
                    except BaseException:
                        # Cancelled while offering it: trio's send is
                        # cancel-safe, so the item was not delivered.
                        self._undelivered.append((index, item))
                        raise
                    self._delivered[index] += 1
        except Exception as exc:
            # Only receive() gets here: send errors are handled above.
            self._record_error(index, exc)
        finally:
            self._open_sources -= 1
            error = await _close_quietly(source)
            if error is not None:
                self._record_error(index, error)


def _reraise(error: BaseException) -> NoReturn:
    """Raise *error* as it was, without chaining the group it came out of."""
    context, suppress = error.__context__, error.__suppress_context__
    try:
        raise error
    finally:
        error.__context__ = context
        error.__suppress_context__ = suppress


@asynccontextmanager
async def open_merge(
    *receivers: trio.abc.ReceiveChannel[T],
) -> AsyncIterator[MergedReceiveChannel[T]]:
    """Merge several receive channels into one channel of ``(source_index, item)``.

    One pump task per source receives from it and hands each item over
    through a rendezvous channel, so the items of one source arrive in
    their order, tagged with the source's index in *receivers*. The merged
    channel ends (:exc:`trio.EndOfChannel`) when every source is exhausted.

    This closes the gaps of the hand-written recipe (python-trio/trio#1411):

    * **Which source**: every item carries its source index.
    * **Clean close**: leaving the block, or closing the merged channel,
      cancels the pumps at once and closes every source (open_merge owns
      them, like fan_in), so producers get :exc:`trio.BrokenResourceError`
      instead of hanging. A pump holds at most one item taken from its
      source but not handed over; such items are listed in
      ``merged.undelivered``, never dropped silently.
    * **No hang, no leak**: no pump outlives the block.

    Errors: the first error raised by a source's ``receive`` ends the merge
    (the other pumps stop) and is raised, bare, by the consumer's next
    ``merged.receive()``. If the block ends normally without having
    received that error, it is raised when the block exits. Exceptions from
    the block's own body propagate bare too (not wrapped in an
    :exc:`ExceptionGroup`): the pumps never raise anything but
    :exc:`trio.Cancelled`, so an exception group would only add noise.
    External cancellation propagates as Trio delivers it.

    Args:
        *receivers: The channels to merge (distinct objects).

    Yields:
        A :class:`~trio.abc.ReceiveChannel` of ``(source_index, item)``
        with ``statistics()`` and ``undelivered``.

    Raises:
        TypeError: an argument is not a :class:`trio.abc.ReceiveChannel`.
        ValueError: the same channel object twice.

    .. versionadded:: 0.1
    """
    sources = _check_receivers(receivers, "receivers")
    merged: MergedReceiveChannel[T] = MergedReceiveChannel(len(sources))
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(merged._run, sources, name="open_merge pumps")
            try:
                yield merged
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                merged._shutdown("the open_merge block exited")
    except BaseExceptionGroup as group:
        if body_error is not None and group.exceptions == (body_error,):
            _reraise(body_error)
        raise
    if merged._error is not None and not merged._error_delivered:
        merged._error_delivered = True
        raise merged._error
