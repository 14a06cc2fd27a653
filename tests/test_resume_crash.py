"""Real crashes of a RESUME run: a child process runs a journaled saga (a
chorus, a nested saga, five steps) and is SIGKILLed after a journal write; a
fresh process resumes it from the SQLite file."""

from __future__ import annotations

import json
import pathlib
import sys
from collections import Counter
from typing import Any

import pytest
import trio

import trio_sagas
from trio_sagas import JournalEntry, RunStatus

CHILD = pathlib.Path(__file__).with_name("resume_child.py")
ROOT = CHILD.parent.parent
STEPS = ("a", "pack/b1", "pack/b2", "ship/c1", "ship/c2", "d", "e")
FINAL = {name.rpartition("/")[2]: 1 for name in STEPS}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")


async def child(db: pathlib.Path, log: pathlib.Path, mode: str, n: int) -> str:
    """Run the child; its output, or "KILLED" when it killed itself."""
    done = await trio.run_process(
        [sys.executable, str(CHILD), str(db), str(log), mode, str(n)],
        cwd=ROOT,
        check=False,
        capture_stdout=True,
        capture_stderr=True,
    )
    assert done.returncode in (0, -9), done.stderr.decode()
    return "KILLED" if done.returncode == -9 else done.stdout.decode().strip()


def keys(log: pathlib.Path, what: str) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[1] for line in lines if line.startswith(what + " ")]


def analyse(entries: tuple[JournalEntry, ...]) -> tuple[list[str], list[str]]:
    """Acts completed before the crash, and the uncertain ones."""
    completed = [e.step for e in entries if e.kind == "ActCompleted"]
    uncertain = [
        e.step for e in entries if e.kind == "ActStarted" and e.step not in completed
    ]
    return completed, uncertain


async def journal_facts(
    db: pathlib.Path,
) -> tuple[tuple[JournalEntry, ...], tuple[RunStatus, Any]]:
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        entries = await journal.events("order-1")
        run = await journal.get_run("order-1")
        assert run is not None
        assert run.state is not None
        return entries, (run.status, json.loads(run.state))


async def crash_then_resume(
    tmp_path: pathlib.Path, n: int, *, fail: bool
) -> tuple[pathlib.Path, list[str], list[str], tuple[RunStatus, Any]]:
    db, log = tmp_path / f"{n}-{fail}.db", tmp_path / f"{n}-{fail}.log"
    assert await child(db, log, "write", n) == "KILLED"
    before, _ = await journal_facts(db)
    completed, uncertain = analyse(before)
    await child(db, log, "resume", 1 if fail else 0)
    _, outcome = await journal_facts(db)
    return log, completed, uncertain, outcome


async def test_resume_after_every_journal_write(tmp_path: pathlib.Path) -> None:
    """Killed after each write, resumed by a fresh process: the final state is
    the uncrashed run's; each completed act ran once; the uncertain one at most
    twice, always under the same key."""
    total = int(await child(tmp_path / "count.db", tmp_path / "count.log", "write", 0))
    _, outcome = await journal_facts(tmp_path / "count.db")
    assert outcome == (RunStatus.SUCCEEDED, FINAL)
    limiter = trio.CapacityLimiter(2)
    seen: dict[
        int, tuple[pathlib.Path, list[str], list[str], tuple[RunStatus, Any]]
    ] = {}

    async def one(n: int) -> None:
        async with limiter:
            seen[n] = await crash_then_resume(tmp_path, n, fail=False)

    async with trio.open_nursery() as nursery:
        for n in range(1, total):  # after the last write the run is final
            nursery.start_soon(one, n)
    for n, (log, completed, uncertain, outcome) in sorted(seen.items()):
        assert outcome == (RunStatus.SUCCEEDED, FINAL), n
        runs = Counter(keys(log, "run"))
        assert set(runs) == {f"order-1/order/{s}" for s in STEPS}, n
        for step in completed:
            assert runs[f"order-1/{step}"] == 1, (n, step)
        for step in uncertain:
            assert runs[f"order-1/{step}"] <= 2, (n, step)
        assert max(runs.values()) <= 2
        assert keys(log, "undo") == [], n


async def test_failure_after_resume_rolls_back_everything(
    tmp_path: pathlib.Path,
) -> None:
    """Resumed, then the last step fails: every step completed before the crash
    or after it is undone once, in reverse order; the state is empty."""
    total = int(await child(tmp_path / "count.db", tmp_path / "count.log", "write", 0))
    for n in (2, total // 2, total - 2):
        log, completed, _, outcome = await crash_then_resume(tmp_path, n, fail=True)
        assert outcome == (RunStatus.COMPENSATED, {}), n
        undone = [k.removesuffix("#compensate") for k in keys(log, "undo")]
        assert Counter(undone) == Counter(
            f"order-1/order/{s}" for s in STEPS if s != "e"
        ), n
        assert undone[0] == "order-1/order/d"
        assert undone[-1] == "order-1/order/a"
        for step in completed:
            assert f"order-1/{step}" in undone
