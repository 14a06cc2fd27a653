"""The named cancellation tree."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_sagas import CancelCause, CancellationScope, CancelOrigin, CancelReason


def test_paths_parent_children() -> None:
    """Paths join names from the root; children are listed in creation order."""
    app = CancellationScope("app")
    critical = app.child("critical")
    db = critical.child("db")
    cache = CancellationScope("cache", parent=critical)
    assert db.path == "app/critical/db"
    assert (db.name, db.parent) == ("db", critical)
    assert critical.children == (db, cache)
    assert app.parent is None
    assert list(app.walk()) == [app, critical, db, cache]


@pytest.mark.parametrize("name", ["", "a/b", "/"])
def test_bad_names(name: str) -> None:
    """Empty or '/'-containing names are refused, naming the value."""
    with pytest.raises(ValueError, match="name must be non-empty"):
        CancellationScope(name)


def test_bad_types() -> None:
    """Non-string names and non-scope parents are TypeErrors."""
    with pytest.raises(TypeError, match="name must be a str"):
        CancellationScope(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parent must be a CancellationScope"):
        CancellationScope("x", parent="app")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reason must be a CancelReason"):
        CancellationScope("x").cancel("manual")  # type: ignore[arg-type]


def test_duplicate_child_name() -> None:
    """Two live children may not share a name (their paths would collide)."""
    app = CancellationScope("app")
    db = app.child("db")
    with pytest.raises(
        ValueError, match="'db' is already used by a child of scope 'app'"
    ):
        app.child("db")
    del db
    gc.collect()
    assert app.child("db").path == "app/db"


def test_parent_does_not_keep_children_alive() -> None:
    """A child nobody references is forgotten by its parent."""
    app = CancellationScope("app")
    for index in range(100):
        app.child(f"request-{index}")
    gc.collect()
    assert app.children == ()


async def test_cancel_reaches_descendants_never_parent_or_siblings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling a node cancels tasks under it and its descendants only."""
    app = CancellationScope("app")
    critical, optional = app.child("critical"), app.child("optional")
    db = critical.child("db")
    ended: dict[str, tuple[float, bool]] = {}

    async def worker(node: CancellationScope, label: str) -> None:
        with node.open() as cs:
            await trio.sleep(10)
        ended[label] = (trio.current_time(), cs.cancelled_caught)

    async with trio.open_nursery() as nursery:
        for node, label in [
            (app, "app"),
            (critical, "critical"),
            (db, "db"),
            (optional, "opt"),
        ]:
            nursery.start_soon(worker, node, label)
        await trio.sleep(1)
        assert critical.cancel(CancelReason.STEP_FAILED, triggered_by="auth")
    assert ended == {
        "critical": (1.0, True),
        "db": (1.0, True),
        "app": (10.0, False),
        "opt": (10.0, False),
    }
    assert not app.cancelled
    assert not optional.cancelled
    assert db.cause == critical.cause


async def test_root_cause_and_trio_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Descendants report the ancestor's cause; trio.Cancelled carries its text."""
    app = CancellationScope("app")
    db = app.child("critical").child("db")
    seen: list[str | None] = []

    async def worker() -> None:
        with db.open():
            try:
                await trio.sleep(math.inf)
            except trio.Cancelled as cancelled:
                seen.append(cancelled.reason)
                raise

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.sleep(2)
        app.cancel(
            CancelReason.DEPENDENCY_FAILED, triggered_by="auth", message="no token"
        )
    expected = CancelCause(
        reason=CancelReason.DEPENDENCY_FAILED,
        origin=CancelOrigin.INTERNAL,
        scope="app",
        triggered_by="auth",
        message="no token",
    )
    assert db.cause == expected
    assert seen == [
        "dependency_failed (internal) in scope 'app', triggered by 'auth': no token"
    ]


def test_first_cancel_wins() -> None:
    """A second cancel neither overwrites the cause nor reports success."""
    node = CancellationScope("n")
    assert node.cancel(CancelReason.WINNER, triggered_by="a")
    assert not node.cancel(CancelReason.MANUAL)
    assert node.cause == CancelCause.of(
        CancelReason.WINNER, scope="n", triggered_by="a"
    )


def test_descendant_cancelled_first_keeps_its_own_cause() -> None:
    """A child cancelled before its parent keeps its own (earlier) cause."""
    app = CancellationScope("app")
    db = app.child("db")
    db.cancel(CancelReason.STEP_TIMEOUT, triggered_by="db")
    app.cancel(CancelReason.MANUAL)
    assert db.cause is not None
    assert db.cause.reason is CancelReason.STEP_TIMEOUT
    assert db.cause.scope == "app/db"
    assert app.cause == CancelCause.of(CancelReason.MANUAL, scope="app")


def test_manual_cancel_is_external() -> None:
    """The default reason is MANUAL, an external origin."""
    node = CancellationScope("n")
    node.cancel()
    assert node.cause is not None
    assert (node.cause.reason, node.cause.origin) == (
        CancelReason.MANUAL,
        CancelOrigin.EXTERNAL,
    )


async def test_born_cancelled_and_late_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child of a cancelled node is born cancelled; opening it cancels at once."""
    app = CancellationScope("app")
    app.cancel(CancelReason.GLOBAL_TIMEOUT)
    late = app.child("late")
    assert late.cause == app.cause
    with late.open() as cs:
        await trio.sleep(5)
    assert cs.cancelled_caught
    assert trio.current_time() == 0.0


async def test_open_after_own_cancel(autojump_clock: trio.testing.MockClock) -> None:
    """Opening a node after it was cancelled cancels the new scope at once."""
    node = CancellationScope("n")
    node.cancel(CancelReason.MANUAL)
    with node.open() as cs:
        await trio.sleep(1)
    assert cs.cancelled_caught
    assert trio.current_time() == 0.0


async def test_many_tasks_nested_nurseries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One node shared by many tasks across nested nurseries cancels them all."""
    node = CancellationScope("shared")
    done: list[float] = []

    async def leaf() -> None:
        with node.open():
            await trio.sleep(math.inf)
        done.append(trio.current_time())

    async def branch() -> None:
        async with trio.open_nursery() as inner:
            for _ in range(10):
                inner.start_soon(leaf)

    async with trio.open_nursery() as outer:
        for _ in range(10):
            outer.start_soon(branch)
        await trio.sleep(3)
        assert node.statistics().open_scopes == 100
        node.cancel(CancelReason.SCOPE_CANCELLED)
    assert done == [3.0] * 100
    assert node.statistics().open_scopes == 0


async def test_closed_scopes_are_forgotten() -> None:
    """Thousands of open/close cycles leave no trio scope referenced."""
    node = CancellationScope("hot")
    refs = []
    for _ in range(5000):
        with node.open() as cs:
            await trio.lowlevel.checkpoint()
        refs.append(weakref.ref(cs))
    del cs
    gc.collect()
    assert node.statistics().open_scopes == 0
    assert all(ref() is None for ref in refs)


async def test_scope_exited_by_exception_is_forgotten() -> None:
    """A scope left by an exception is discarded too."""
    node = CancellationScope("n")
    with pytest.raises(KeyError), node.open():
        raise KeyError
    assert node.statistics().open_scopes == 0


def test_repr_and_statistics() -> None:
    """repr says path and state; statistics counts children."""
    app = CancellationScope("app")
    child = app.child("c")
    assert repr(app) == "<trio_sagas.CancellationScope 'app' active>"
    app.cancel()
    assert (
        repr(child)
        == "<trio_sagas.CancellationScope 'app/c' cancelled: manual (external) in scope 'app'>"
    )
    stats = app.statistics()
    assert (stats.open_scopes, stats.children, stats.cancelled) == (0, 1, True)


@st.composite
def _trees(draw: st.DrawFn) -> tuple[int, list[int]]:
    size = draw(st.integers(min_value=1, max_value=40))
    parents = [draw(st.integers(min_value=0, max_value=i - 1)) for i in range(1, size)]
    return size, parents


@given(tree=_trees(), data=st.data())
def test_cancel_property(tree: tuple[int, list[int]], data: st.DataObject) -> None:
    """For any tree and cancel sequence: exactly the descendants of cancelled nodes
    are cancelled, each with the cause of its nearest-first-cancelled ancestor."""
    size, parents = tree
    nodes = [CancellationScope("n0")]
    for index, parent in enumerate(parents, start=1):
        nodes.append(nodes[parent].child(f"n{index}"))
    order = data.draw(st.lists(st.integers(0, size - 1), max_size=6))
    expected: dict[int, CancelCause] = {}

    def ancestors(i: int) -> list[int]:
        chain = [i]
        while chain[-1] != 0:
            chain.append(parents[chain[-1] - 1])
        return chain

    for target in order:
        if target not in expected:
            cause = CancelCause.of(CancelReason.MANUAL, scope=nodes[target].path)
            for i in range(size):
                if target in ancestors(i) and i not in expected:
                    expected[i] = cause
        nodes[target].cancel()
    for i, node in enumerate(nodes):
        assert node.cause == expected.get(i)


@given(st.lists(st.integers(min_value=0, max_value=1_000), min_size=1, max_size=60))
def test_paths_are_the_names_from_the_root_property(parents: list[int]) -> None:
    """In any tree, a node's path joins the names from the root (built on read)."""
    nodes = [CancellationScope("root")]
    expected = ["root"]
    for index, pick in enumerate(parents, start=1):
        parent = pick % len(nodes)
        nodes.append(nodes[parent].child(f"n{index}"))
        expected.append(f"{expected[parent]}/n{index}")
    assert [node.path for node in nodes] == expected
    assert all(node.statistics().children == len(node.children) for node in nodes)
