"""Merge: several receive channels as one channel of ``(source_index, item)``.

:func:`open_merge` runs one pump task per source; the pumps hand items over
through a rendezvous channel. When the merge stops early, what a pump held
and what a memory source still buffered are reported (``undelivered``),
never dropped.

Like :func:`~trio_sagas.fan_in`, it *owns* the receive channels it is given:
each is closed as soon as its pump stops, on every path, so a producer still
sending gets :exc:`trio.BrokenResourceError` at once instead of blocking.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar, final

import attrs
import trio

from ._util import lone_cancelled
from ._validate import check_receive_channels

T = TypeVar("T")


async def close_quietly(source: trio.abc.ReceiveChannel[Any]) -> Exception | None:
    """Close *source* without blocking; return (not raise) an error from it.

    Memory channels close synchronously; any other channel is closed with
    :func:`trio.aclose_forcefully`, so closing never waits.
    """
    if isinstance(source, trio.MemoryReceiveChannel):
        source.close()
        return None
    try:
        await trio.aclose_forcefully(source)
    except Exception as exc:
        return exc
    return None


def take_leftovers(
    index: int, receive_nowait: Callable[[], T], into: list[tuple[int, T]]
) -> None:
    """Move what a memory channel still holds to *into* as ``(index, item)``.

    That is its buffer and the item of every sender blocked on it (their
    ``send`` then returns): closing the last receive handle would drop them.
    Never waits.
    """
    while True:
        try:
            item = receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        into.append((index, item))


@final
@attrs.frozen
class MergeStatistics:
    """A snapshot of an open_merge() channel.

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
    """The channel open_merge() yields: ``(source_index, item)`` pairs.

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
        # hand over yet; that item, and whatever a memory source still
        # buffers when the pump stops, go to ``undelivered``.
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
        """Like close(), then a checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()

    @property
    def undelivered(self) -> tuple[tuple[int, T], ...]:
        """``(source_index, item)`` taken from a source but never delivered.

        What a pump held when the merge stopped (the block ended, the
        channel was closed, another source failed, or an outside cancel),
        then what a memory source still held: its buffer and the item of
        any sender blocked on it. Per source, in the source's order.
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
            if isinstance(source, trio.MemoryReceiveChannel):
                # Stopped early: what the source still holds would vanish
                # when it is closed; report it as undelivered instead.
                take_leftovers(index, source.receive_nowait, self._undelivered)
            error = await close_quietly(source)
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
      instead of hanging. The item a pump held but had not handed over,
      and what a memory source still buffered, are listed in
      ``merged.undelivered``, never dropped silently.
    * **No hang, no leak**: no pump outlives the block.

    Errors: the first error raised by a source's ``receive`` ends the merge
    (the other pumps stop) and is raised, bare, by the consumer's next
    ``merged.receive()``. If the block ends normally without having
    received that error, it is raised when the block exits. Exceptions from
    the block's own body propagate bare too (not wrapped in an
    :exc:`ExceptionGroup`): the pumps never raise anything but
    :exc:`trio.Cancelled`, so an exception group would only add noise.
    External cancellation propagates as a bare :exc:`trio.Cancelled`
    (never an exception group of them).

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
    sources = check_receive_channels(receivers, "receivers")
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
        cancelled = lone_cancelled(group)
        if cancelled is not None:
            # An outside cancel, which trio's strict nurseries wrap in a
            # group of Cancelled: callers get the plain trio.Cancelled, as
            # from fan_in, the error group and the saga runner.
            raise cancelled from None
        raise
    if merged._error is not None and not merged._error_delivered:
        merged._error_delivered = True
        raise merged._error
