"""Fault tests with real processes on one SQLite journal: several recoveries
at once, a worker paused past its lease, a SIGINT during a rollback."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import trio

import trio_sagas
from trio_sagas import JournalEntry, RunStatus, SQLiteJournal

from .crash_child import build_scene

CHILD = pathlib.Path(__file__).with_name("crash_child.py")
ROOT = CHILD.parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def child(db: pathlib.Path, log: pathlib.Path, mode: str, n: int) -> list[str]:
    return [sys.executable, str(CHILD), str(db), str(log), mode, str(n)]


def undo_keys(log: pathlib.Path) -> Counter[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[1] for line in lines if line.startswith("undo "))


def _has_line(log: pathlib.Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


async def wait_for_line(log: pathlib.Path, text: str) -> None:
    """Poll the other process's log (no trio.Event reaches across processes)."""
    with trio.fail_after(20):
        while not _has_line(log, text):  # noqa: ASYNC110
            await trio.sleep(0.02)


async def start_child(args: list[str], out: pathlib.Path) -> trio.Process:
    with out.open("wb") as file:
        return await trio.lowlevel.open_process(
            args, cwd=ROOT, stdout=file, stderr=subprocess.STDOUT
        )


async def leased(journal: SQLiteJournal, pid: int) -> bool:
    """Whether the process *pid* holds a live lease."""
    workers = await journal.workers()
    return any(w.expires_at > time.time() for w in workers if w.pid == pid)


async def expire_others(journal: SQLiteJournal) -> None:
    """The operator's part: workers of dead (or paused) processes are dead."""
    for worker in await journal.workers():
        if worker.pid != os.getpid():
            await journal.expire_worker(worker.worker_id)


async def fabricate_crashed_runs(db: pathlib.Path, count: int) -> list[str]:
    """Runs of the crash child's scene, as a dead process leaves them: s1 and
    s2 completed, s3 started (uncertain)."""
    kinds = [
        ("SceneStarted", "order", None),
        ("ActStarted", "order/s1", None),
        ("ActCompleted", "order/s1", b'"s1-receipt"'),
        ("ActStarted", "order/s2", None),
        ("ActCompleted", "order/s2", b'"s2-receipt"'),
        ("ActStarted", "order/s3", None),
    ]
    ids = [f"run-{i}" for i in range(count)]
    with SQLiteJournal(db) as dead:
        for run_id in ids:
            fence = await dead.create_run(run_id, scene="order", state=b"{}")
            await dead.append(
                fence,
                [
                    JournalEntry(run_id, seq, kind, step, 0.0, value=value)
                    for seq, (kind, step, value) in enumerate(kinds)
                ],
            )
        async with SQLiteJournal(db) as operator:
            await operator.expire_worker(dead.worker_id)
    return ids


@pytest.mark.parametrize("processes", [2, 3])
async def test_concurrent_recoveries_in_processes_split_the_work(
    tmp_path: pathlib.Path, processes: int
) -> None:
    """Several processes call recover() at once on one journal, with slow undos:
    every undo runs exactly once, each run is rolled back by one of them, and
    the others report it under the one HELD_ELSEWHERE reason; none fails."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    ids = await fabricate_crashed_runs(db, 30)  # more than one recover() does at once
    outputs: list[dict[str, list[str]]] = []

    async def recover_in_child() -> None:
        done = await trio.run_process(
            child(db, log, "recover", 100),
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(json.loads(done.stdout))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(processes):
                nursery.start_soon(recover_in_child)
    recovered = [run_id for out in outputs for run_id in out["results"]]
    assert sorted(recovered) == sorted(ids)  # each run once, by one process
    for out in outputs:
        assert set(out["skipped"]) <= {trio_sagas.HELD_ELSEWHERE}
    keys = undo_keys(log)
    assert set(keys.values()) == {1}  # no undo ran twice
    assert len(keys) == 3 * len(ids)
    async with SQLiteJournal(db) as journal:
        runs = await journal.runs()
    assert {r.status for r in runs} == {RunStatus.COMPENSATED}


async def test_paused_worker_loses_its_run_and_runs_no_undo(
    tmp_path: pathlib.Path,
) -> None:
    """A worker SIGSTOPped inside a step past its lease: another process takes
    the run over and rolls it back; the paused worker, resumed, runs no further
    step and no undo, and its run_scene raises RunClaimedError."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    out = tmp_path / "out"
    proc = await start_child(child(db, log, "stop", 2), out)
    try:
        await wait_for_line(log, "run order-1/order/s2")
        proc.send_signal(signal.SIGSTOP)
        async with SQLiteJournal(db) as journal:
            with trio.fail_after(10):  # the paused worker's 1 s lease lapses
                while await leased(journal, proc.pid):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            report = await trio_sagas.recover(journal, [build_scene(str(log))])
            assert [r.run_id for r in report.results] == ["order-1"]
            proc.send_signal(signal.SIGCONT)
            with trio.fail_after(20):
                await proc.wait()
            run = await journal.get_run("order-1")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            await proc.wait()
    output = out.read_bytes()
    assert proc.returncode == 3, output.decode()
    assert b"LOST" in output
    assert run is not None
    assert run.status is RunStatus.COMPENSATED
    assert undo_keys(log) == Counter(
        {"order-1/order/s2#compensate": 1, "order-1/order/s1#compensate": 1}
    )
    assert "run order-1/order/s3" not in log.read_text()


async def test_sigint_during_rollback_leaves_the_run_running(
    tmp_path: pathlib.Path,
) -> None:
    """A real SIGINT to a child while it rolls back: the run stays RUNNING
    (never COMPENSATED), and recover() finishes it; the interrupted undo runs
    again (its intent was journaled), every other undo once."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    out = tmp_path / "out"
    proc = await start_child(child(db, log, "sigint", 3), out)
    try:
        await wait_for_line(log, "undo order-1/order/s3#compensate")
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in out.read_bytes()
    async with SQLiteJournal(db) as journal:
        run = await journal.get_run("order-1")
        assert run is not None
        assert run.status is RunStatus.RUNNING
        await expire_others(journal)
        report = await trio_sagas.recover(journal, [build_scene(str(log))])
        assert [r.run_id for r in report.results] == ["order-1"]
        run = await journal.get_run("order-1")
    assert run is not None
    assert run.status is RunStatus.COMPENSATED
    assert undo_keys(log) == Counter(
        {
            "order-1/order/s4#compensate": 1,
            "order-1/order/s3#compensate": 2,
            "order-1/order/s2#compensate": 1,
            "order-1/order/s1#compensate": 1,
        }
    )
