"""The dependency graph check of an Ignition: unknown names and cycles.

Run once before anything starts, in O(signals + dependencies), so a bad
graph is refused with a message naming the signals involved.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence


def check_graph(depends_on: Mapping[str, Sequence[str]]) -> None:
    """Raise :exc:`ValueError` for an unknown dependency or a cycle.

    Args:
        depends_on: Each signal's name mapped to the names it depends on, in
            the order the signals were added.

    Raises:
        ValueError: ``signal 'a' depends on unknown signal 'ghost'``, or
            ``dependency cycle: 'a' -> 'b' -> 'a'`` (the members in order).
    """
    for name, deps in depends_on.items():
        for unknown in deps:
            if unknown not in depends_on:
                raise ValueError(
                    f"signal {name!r} depends on unknown signal {unknown!r}"
                )
    # Iterative depth-first search (a deep chain must not hit the recursion
    # limit). ON_PATH marks the nodes of the current path, DONE the finished.
    on_path, done = 1, 2
    colour: dict[str, int] = {}
    for root in depends_on:
        if root in colour:
            continue
        colour[root] = on_path
        path = [root]
        stack: list[Iterator[str]] = [iter(depends_on[root])]
        while stack:
            dep: str | None = next(stack[-1], None)
            if dep is None:
                colour[path.pop()] = done
                stack.pop()
                continue
            state = colour.get(dep)
            if state == on_path:
                members = [*path[path.index(dep) :], dep]
                raise ValueError(
                    "dependency cycle: " + " -> ".join(repr(n) for n in members)
                )
            if state is None:
                colour[dep] = on_path
                path.append(dep)
                stack.append(iter(depends_on[dep]))
