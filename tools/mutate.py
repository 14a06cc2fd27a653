"""Mutation testing of the critical paths: plant one bug at a time, run the tests.

Each mutant is one small change to one module's syntax tree, of the kind a
tired engineer makes: a comparison flipped (``<`` for ``<=``), ``and`` for
``or``, a condition negated, ``True`` for ``False`` (so ``shield=True``
becomes ``shield=False``), ``reversed(x)`` for ``x``, a number off by one,
a ``break``/``continue`` swapped, a call statement deleted (an ``await
checkpoint()``, a ``clear()``, a ``notify()``). The module's own test files
run against it (``pytest -x``, with a time limit so a hang counts as a catch);
a mutant the tests pass is a *survivor* and is printed with its line.

Mutants are planted in a private copy of the checkout (a temporary
directory, first on ``PYTHONPATH``), never in the checkout itself: a run
killed half-way leaves no bug behind, and the checkout can be edited while
a run goes on (the run tests the tree as it was when it started).

Usage (``nox -s mutate`` installs what it needs)::

    python tools/mutate.py                 # every target, a seeded sample each
    python tools/mutate.py compensation --all
    python tools/mutate.py --list          # the mutants, without running
    python tools/mutate.py saga --sample 6 --only _worker.py:109  # re-check some
    python tools/mutate.py saga:worker --all --tests tests/test_mutants_saga_worker.py

Exit status 0 whatever the rate; the figure goes in the issue notes.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent

TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {}
"""name -> (module, the test files that must catch its bugs); see :func:`discover`."""

CRITICAL: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (name, module glob, test files; tests whose name mentions the name join)
    ("compensation", "trio_sagas/_compensation.py", ("tests/test_compensation.py",)),
    (
        "context",
        "trio_sagas/_context.py",
        ("tests/test_compensation.py", "tests/test_mutants_compensation.py"),
    ),
    (
        "errgroup",
        "trio_sagas/_errgroup/*.py",
        ("tests/test_errgroup.py", "tests/test_validation.py"),
    ),
    ("cancel", "trio_sagas/_cancel.py", ("tests/test_cancel.py",)),
    ("outcome", "trio_sagas/_outcome.py", ("tests/test_outcome.py",)),
    (
        "retry",
        "trio_sagas/_retry/_loop.py",
        ("tests/test_retry.py", "tests/test_compensation.py"),
    ),
    (
        "saga",
        "trio_sagas/_saga/*.py",
        (
            "tests/test_saga.py",
            "tests/test_recovery.py",
            "tests/test_saga_leases.py",
            "tests/test_resume.py",  # _resume.py's own tests
            "tests/test_durable_undo.py",  # _durable.py's own tests
            "tests/test_claims.py",  # _claims.py's own tests
            "tests/test_recovery_batch.py",  # recover()'s batches
            "tests/test_validation.py",  # every constructor's argument checks
            "tests/test_resume_journal_failure.py",  # _resumable.py's own tests
        ),
    ),
    (
        "journal",
        "trio_sagas/_journal/_sqlite*.py",
        (
            "tests/test_journal.py",
            "tests/test_faults.py",  # file faults, damaged rows, leases
            "tests/test_claims.py",  # the batched claims
            "tests/test_group_commit.py",
            "tests/test_saga_leases.py",
            "tests/test_validation.py",
        ),
    ),
    ("hedge", "trio_sagas/_hedge/*.py", ("tests/test_hedge.py",)),
)

_FLIP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass(frozen=True)
class Mutant:
    target: str
    path: str
    index: int  # which mutation point, in tree-walk order
    line: int
    what: str


def _points(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Every node that can be mutated, with what the mutation does."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) in _FLIP:
                    yield node, f"{type(op).__name__} -> {_FLIP[type(op)].__name__}"
                    break
        elif isinstance(node, ast.BoolOp):
            yield node, f"{type(node.op).__name__.lower()} -> the other"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "drop 'not'"
        elif isinstance(node, (ast.If, ast.While)) and not _is_type_checking(node):
            yield node, f"negate the {type(node).__name__.lower()} condition"
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield node, f"{node.value} -> {not node.value}"
        elif (
            isinstance(node, ast.Constant)
            and type(node.value) is int
            and node.value in (0, 1, 2)
        ):
            yield node, f"{node.value} -> {node.value + 1}"
        elif isinstance(node, (ast.Break, ast.Continue)):
            yield node, f"{type(node).__name__.lower()} -> the other"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "reversed"
            and len(node.args) == 1
        ):
            yield node, "reversed(x) -> x"
        elif isinstance(node, ast.Expr) and isinstance(
            node.value, (ast.Call, ast.Await)
        ):
            yield node, "delete the call statement"


def _is_type_checking(node: ast.If | ast.While) -> bool:
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(
            node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        ):
            body = node.body
            if body and isinstance(body[0], ast.Expr):
                ids.add(id(body[0]))
    return ids


def mutants_of(target: str, path: str) -> list[Mutant]:
    tree = ast.parse((ROOT / path).read_text())
    skip = _docstring_nodes(tree)
    found = []
    for index, (node, what) in enumerate(_points(tree)):
        if id(node) in skip:
            continue
        found.append(Mutant(target, path, index, getattr(node, "lineno", 0), what))
    return found


def _mutate(node: ast.AST, what: str) -> ast.AST:
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _FLIP:
                node.ops[i] = _FLIP[type(op)]()
                break
        return node
    if isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return node
    if isinstance(node, ast.UnaryOp):
        return node.operand
    if isinstance(node, (ast.If, ast.While)):
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        return node
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        node.value = not node.value
        return node
    if isinstance(node, ast.Constant):
        node.value = node.value + 1
        return node
    if isinstance(node, ast.Break):
        return ast.Continue()
    if isinstance(node, ast.Continue):
        return ast.Break()
    if isinstance(node, ast.Call):
        return node.args[0]
    if isinstance(node, ast.Expr):
        return ast.Pass()
    raise AssertionError(what)


class _Replace(ast.NodeTransformer):
    def __init__(self, index: int, what: str) -> None:
        self.index = index
        self.what = what
        self.targets: dict[int, int] = {}

    def generic_visit(self, node: ast.AST) -> ast.AST:
        node = super().generic_visit(node)
        if id(node) in self.targets:
            return ast.copy_location(_mutate(node, self.what), node)
        return node


def mutated_source(mutant: Mutant, root: pathlib.Path = ROOT) -> str:
    tree = ast.parse((root / mutant.path).read_text())
    points = list(_points(tree))
    node, what = points[mutant.index]
    replacer = _Replace(mutant.index, what)
    replacer.targets[id(node)] = mutant.index
    new = replacer.visit(copy.copy(tree))
    ast.fix_missing_locations(new)
    return ast.unparse(new)


_IGNORE = shutil.ignore_patterns(
    ".git",
    ".nox",
    ".venv",
    "__pycache__",
    "*_cache",
    ".hypothesis",
    "scratch",
    "_build",
    "*.db",
    "*.db-*",
)


def private_copy() -> pathlib.Path:
    """A copy of the checkout to plant the mutants in (see the module docs)."""
    where = pathlib.Path(tempfile.mkdtemp(prefix="trio-sagas-mutate-")) / "tree"
    shutil.copytree(ROOT, where, ignore=_IGNORE, symlinks=True)
    return where


def run_tests(tests: tuple[str, ...], limit: float, root: pathlib.Path = ROOT) -> str:
    """'killed', 'survived' or 'timeout' (a hang: counted as killed)."""
    # The copy comes first on the path, before the editable install's ROOT;
    # child processes the tests start inherit it.
    path = os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=path)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "faulthandler_timeout=0",
                *tests,
            ],
            cwd=root,
            capture_output=True,
            timeout=limit,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def discover() -> None:
    """Fill :data:`TARGETS` from the modules as they are in the tree."""
    for name, pattern, tests in CRITICAL:
        for path in sorted(ROOT.glob(pattern)):
            if path.name == "__init__.py" or "events" in path.name:
                continue
            extra = tuple(
                str(p.relative_to(ROOT))
                for p in sorted(ROOT.glob("tests/test_*.py"))
                if name in p.stem and str(p.relative_to(ROOT)) not in tests
            )
            present = tuple(t for t in tests if (ROOT / t).exists())
            TARGETS[f"{name}:{path.stem.lstrip('_')}"] = (
                str(path.relative_to(ROOT)),
                present + extra,
            )


def main() -> None:
    discover()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"any of {sorted(TARGETS)}")
    parser.add_argument("--all", action="store_true", help="every mutant")
    parser.add_argument("--sample", type=int, default=25, help="mutants per target")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FILE:LINE",
        help="of the chosen mutants, run only those at FILE:LINE (the file name's end; repeatable)",
    )
    parser.add_argument(
        "--tests",
        action="append",
        default=[],
        metavar="FILE",
        help="run these test files instead of the target's (check that a new test kills a mutant)",
    )
    args = parser.parse_args()
    names = [
        n for n in TARGETS if not args.targets or any(t in n for t in args.targets)
    ]
    rng = random.Random(args.seed)
    chosen: list[Mutant] = []
    for name in names:
        path, _ = TARGETS[name]
        found = mutants_of(name, path)
        if not args.all and len(found) > args.sample:
            found = sorted(rng.sample(found, args.sample), key=lambda m: m.index)
        chosen.extend(found)
    if args.only:
        chosen = [
            m
            for m in chosen
            if any(f"{m.path}:{m.line}".endswith(o) for o in args.only)
        ]
    if args.list:
        for m in chosen:
            print(f"{m.path}:{m.line}  {m.what}")
        print(f"{len(chosen)} mutants")
        return
    results: dict[str, int] = {"killed": 0, "timeout": 0, "survived": 0}
    survivors: list[Mutant] = []
    started = time.monotonic()
    root = private_copy()
    try:
        _run(chosen, root, args.limit, results, survivors, tuple(args.tests))
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
    caught = results["killed"] + results["timeout"]
    total = max(1, len(chosen))
    print(
        f"\nmutants: {len(chosen)}, killed: {results['killed']}, caught by a hang: "
        f"{results['timeout']}, survived: {results['survived']}; kill rate "
        f"{100 * caught / total:.1f} % in {time.monotonic() - started:.0f} s"
    )
    for mutant in survivors:
        print(f"SURVIVOR {mutant.path}:{mutant.line}  {mutant.what}")


def _run(
    chosen: list[Mutant],
    root: pathlib.Path,
    limit: float,
    results: dict[str, int],
    survivors: list[Mutant],
    tests: tuple[str, ...] = (),
) -> None:
    for number, mutant in enumerate(chosen, 1):
        path = root / mutant.path
        original = path.read_text()
        try:
            path.write_text(mutated_source(mutant, root))
            verdict = run_tests(tests or TARGETS[mutant.target][1], limit, root)
        finally:
            path.write_text(original)
        results[verdict] += 1
        if verdict == "survived":
            survivors.append(mutant)
        print(
            f"[{number}/{len(chosen)}] {verdict:<8} {mutant.path}:{mutant.line} {mutant.what}",
            flush=True,
        )


if __name__ == "__main__":
    main()
