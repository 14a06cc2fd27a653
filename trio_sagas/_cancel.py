"""Named, hierarchical cancellation scopes that remember the root cause."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import final

import attrs
import trio

from ._outcome import CancelCause, CancelReason
from ._validate import check_name


@final
@attrs.frozen
class CancellationScopeStatistics:
    """A snapshot of one node's live state.

    Attributes:
        open_scopes: trio cancel scopes currently open through this node
            (not counting descendants).
        children: live child nodes.
        cancelled: whether this node was cancelled.
    """

    open_scopes: int
    children: int
    cancelled: bool


@final
class CancellationScope:
    """A named node in a logical cancellation tree, shared by any number of tasks.

    Tasks enter the node with :meth:`open`; :meth:`cancel` cancels every trio
    scope open under this node or any descendant, with a readable reason. The
    first cancel wins and its :class:`CancelCause` is kept; descendants report
    that root cause.

    A parent does not keep its children alive: a child nobody references (and
    no task has open) is forgotten, so per-request children do not pile up.

    Args:
        name: Non-empty, without ``/`` (paths are ``/``-joined names), and
            unique among the parent's live children.
        parent: The parent node, or None for a root.

    Raises:
        ValueError: empty name, a name containing ``/``, or a duplicate name
            under the same parent.
    """

    __slots__ = (
        "__weakref__",
        "_cause",
        "_children",
        "_name",
        "_open",
        "_parent",
    )

    # No stored path and no children mapping until the first child: a node
    # costs the same memory at any depth (a stored path repeated every
    # ancestor's name, ~30 KB a node in a 10,000-deep chain).
    _name: str
    _parent: CancellationScope | None
    _open: set[trio.CancelScope]
    _children: weakref.WeakValueDictionary[str, CancellationScope] | None
    _cause: CancelCause | None

    def __init__(self, name: str, *, parent: CancellationScope | None = None) -> None:
        check_name(name)
        if parent is not None and not isinstance(parent, CancellationScope):
            raise TypeError(
                f"parent must be a CancellationScope or None, got {parent!r}"
            )
        self._name = name
        self._parent = parent
        self._open = set()
        self._children = None
        self._cause = None
        if parent is not None:
            siblings = parent._children
            if siblings is None:
                siblings = parent._children = weakref.WeakValueDictionary()
            elif name in siblings:
                raise ValueError(
                    f"name {name!r} is already used by a child of scope {parent.path!r}"
                )
            siblings[name] = self
            # Born under a cancelled node: cancelled with the root cause.
            self._cause = parent._cause

    def __repr__(self) -> str:
        state = f"cancelled: {self._cause}" if self._cause else "active"
        return f"<trio_sagas.CancellationScope {self.path!r} {state}>"

    @property
    def name(self) -> str:
        """This node's own name."""
        return self._name

    @property
    def path(self) -> str:
        """The ``/``-joined names from the root down to this node.

        Built on each read (O(depth)): see the note on memory above.
        """
        names = [self._name]
        node = self._parent
        while node is not None:
            names.append(node._name)
            node = node._parent
        return "/".join(reversed(names))

    @property
    def parent(self) -> CancellationScope | None:
        """The parent node, or None for a root."""
        return self._parent

    @property
    def children(self) -> tuple[CancellationScope, ...]:
        """Live child nodes, in creation order."""
        return () if self._children is None else tuple(self._children.values())

    @property
    def cancelled(self) -> bool:
        """Whether this node (or an ancestor, before it was opened) was cancelled."""
        return self._cause is not None

    @property
    def cause(self) -> CancelCause | None:
        """Why this node was cancelled: the root cause if an ancestor did it."""
        return self._cause

    def child(self, name: str) -> CancellationScope:
        """Create a child node named *name* (born cancelled if this one is)."""
        return CancellationScope(name, parent=self)

    def walk(self) -> Iterator[CancellationScope]:
        """This node and every live descendant, depth first, parents first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            if node._children:
                stack.extend(reversed(list(node._children.values())))

    @contextmanager
    def open(self) -> Iterator[trio.CancelScope]:
        """Enter a trio.CancelScope bound to this node.

        Usable from any task, any number of times, concurrently. If the node
        is already cancelled the scope is cancelled at once, so the first
        checkpoint inside raises :exc:`trio.Cancelled` with the reason.
        """
        cancel_scope = trio.CancelScope()
        self._attach(cancel_scope)
        try:
            with cancel_scope:
                yield cancel_scope
        finally:
            self._open.discard(cancel_scope)

    def _attach(self, cancel_scope: trio.CancelScope) -> None:
        """Bind *cancel_scope* to this node (cancelled at once if the node is).

        For owners that enter and exit the trio scope themselves (the error
        group's ``__aenter__``/``__aexit__``); pair with :meth:`_detach`.
        """
        if self._cause is not None:
            cancel_scope.cancel(reason=self._cause.describe())
        self._open.add(cancel_scope)

    def _detach(self, cancel_scope: trio.CancelScope) -> None:
        self._open.discard(cancel_scope)

    def cancel(
        self,
        reason: CancelReason = CancelReason.MANUAL,
        *,
        triggered_by: str | None = None,
        message: str | None = None,
    ) -> bool:
        """Cancel this node and every descendant.

        The first cancel of a node wins: later calls change nothing. The
        cause's origin follows from *reason* (MANUAL and EXTERNAL are
        external, everything else internal). A descendant that was not
        already cancelled takes this node's cause as its root cause. Never
        touches the parent or siblings.

        Args:
            reason: Why.
            triggered_by: The step/signal/attempt that caused it.
            message: Extra text for humans.

        Returns:
            True if this call cancelled the node, False if it already was.
        """
        if not isinstance(reason, CancelReason):
            raise TypeError(f"reason must be a CancelReason, got {reason!r}")
        if self._cause is not None:
            return False
        cause = CancelCause.of(
            reason, scope=self.path, triggered_by=triggered_by, message=message
        )
        text = cause.describe()
        for node in self.walk():
            if node is not self and node._cause is not None:
                # Cancelled earlier by its own cause: keep it, but its open
                # scopes were already cancelled; nothing more to do there.
                continue
            node._cause = cause
            for cancel_scope in node._open:
                cancel_scope.cancel(reason=text)
        return True

    def statistics(self) -> CancellationScopeStatistics:
        """A snapshot of this node's live state."""
        return CancellationScopeStatistics(
            open_scopes=len(self._open),
            children=0 if self._children is None else len(self._children),
            cancelled=self._cause is not None,
        )
