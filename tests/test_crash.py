"""Real crashes: a child process runs a journaled saga and is SIGKILLed; this
process (a new one) recovers it from the SQLite file."""

from __future__ import annotations

import os
import pathlib
import signal
import sys
from collections import Counter

import pytest
import trio

import trio_sagas
from trio_sagas import CompensationStepStarted, JournalEntry, RunStatus

from .crash_child import STEPS, build_scene

CHILD = pathlib.Path(__file__).with_name("crash_child.py")
ROOT = CHILD.parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")


async def run_child(db: pathlib.Path, log: pathlib.Path, mode: str, n: int) -> int:
    """Run the child; return its exit code (-9 when it killed itself)."""
    done = await trio.run_process(
        [sys.executable, str(CHILD), str(db), str(log), mode, str(n)],
        cwd=ROOT,
        check=False,
        capture_stdout=True,
        capture_stderr=True,
    )
    assert done.returncode in (0, -9), done.stderr.decode()
    return done.returncode


def log_lines(log: pathlib.Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def undo_keys(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines if line.startswith("undo ")]


def analyse(entries: tuple[JournalEntry, ...]) -> tuple[list[str], list[str]]:
    """Steps completed by record (completion order) and uncertain ones."""
    completed = [e.step for e in entries if e.kind == "ActCompleted"]
    ended = {
        e.step
        for e in entries
        if e.kind in ("ActCompleted", "ActFailed", "ActCancelled")
    }
    uncertain = [
        e.step for e in entries if e.kind == "ActStarted" and e.step not in ended
    ]
    return completed, uncertain


async def expire_dead_workers(journal: trio_sagas.SQLiteJournal) -> None:
    """The operator's part: the killed child's lease would run 15 s more."""
    for worker in await journal.workers():
        if worker.pid != os.getpid():
            await journal.expire_worker(worker.worker_id)


async def recover_in_this_process(
    db: pathlib.Path, log: pathlib.Path
) -> tuple[trio_sagas.RecoveryReport, tuple[JournalEntry, ...]]:
    scene = build_scene(str(log))
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        await expire_dead_workers(journal)
        before = await journal.events("order-1")
        report = await trio_sagas.recover(journal, {"order": scene})
        again = await trio_sagas.recover(journal, {"order": scene})
        assert again == trio_sagas.RecoveryReport()
        (run,) = await journal.runs()
        assert run.status in (RunStatus.COMPENSATED, RunStatus.NEEDS_INTERVENTION)
    return report, before


async def test_crash_mid_forward(tmp_path: pathlib.Path) -> None:
    """Killed inside step 3: s2, s1 undone once each; the uncertain s3 undone too."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    assert await run_child(db, log, "step", 3) == -9
    report, before = await recover_in_this_process(db, log)
    completed, uncertain = analyse(before)
    assert completed == ["order/s1", "order/s2"]
    assert uncertain == ["order/s3"]
    assert log_lines(log) == [
        "run order-1/order/s1",
        "run order-1/order/s2",
        "run order-1/order/s3",
        "undo order-1/order/s3#compensate result=None",
        "undo order-1/order/s2#compensate result=s2-receipt",
        "undo order-1/order/s1#compensate result=s1-receipt",
    ]
    (result,) = report.results
    assert result.compensation is not None
    assert result.compensation.ok
    assert isinstance(result.error, trio_sagas.RecordedFailure)
    assert result.error.interrupted
    assert result.failed_step == "order/s3"
    assert result.state == {}


async def test_crash_mid_compensation(tmp_path: pathlib.Path) -> None:
    """Killed inside s3's undo: s4's undo is not repeated; s3's is retried with the same key."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    assert await run_child(db, log, "undo", 3) == -9
    report, before = await recover_in_this_process(db, log)
    assert [e.kind for e in before][-3:] == [
        "CompensationStepStarted",
        "CompensationStepCompleted",
        "CompensationStepStarted",
    ]
    undos = [line for line in log_lines(log) if line.startswith("undo")]
    assert undos == [
        "undo order-1/order/s4#compensate result=s4-receipt",
        "undo order-1/order/s3#compensate result=s3-receipt",
        "undo order-1/order/s3#compensate result=s3-receipt",
        "undo order-1/order/s2#compensate result=s2-receipt",
        "undo order-1/order/s1#compensate result=s1-receipt",
    ]
    (result,) = report.results
    assert isinstance(result.error, trio_sagas.RecordedFailure)
    assert result.error.error_type == "ValueError"
    assert result.failed_step == f"order/s{STEPS}"


async def test_crash_right_after_the_final_event(tmp_path: pathlib.Path) -> None:
    """Killed after the last write: the run is final; recover has nothing to do."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    total = await count_writes(tmp_path)
    assert await run_child(db, log, "write", total) == -9
    lines_before = log_lines(log)
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        report = await trio_sagas.recover(journal, [build_scene(str(log))])
        (run,) = await journal.runs()
    assert report == trio_sagas.RecoveryReport()
    assert run.status is RunStatus.COMPENSATED
    assert log_lines(log) == lines_before


async def count_writes(tmp_path: pathlib.Path) -> int:
    db, log = tmp_path / "count.db", tmp_path / "count.log"
    done = await trio.run_process(
        [sys.executable, str(CHILD), str(db), str(log), "write", "0"],
        cwd=ROOT,
        capture_stdout=True,
    )
    return int(done.stdout)


async def test_kill_at_every_journal_write(tmp_path: pathlib.Path) -> None:
    """For every write boundary of a 5-step saga whose last step fails, recovery
    undoes each completed (or uncertain) step exactly once, in reverse order."""
    total = await count_writes(tmp_path)
    # create, five intents (each carrying the previous completion), four undo
    # intents (the first with the failure), the final record.
    assert total == 1 + STEPS + (STEPS - 1) + 1
    limiter = trio.CapacityLimiter(4)
    codes: dict[int, int] = {}

    async def one(n: int) -> None:
        async with limiter:
            codes[n] = await run_child(
                tmp_path / f"{n}.db", tmp_path / f"{n}.log", "write", n
            )

    async with trio.open_nursery() as nursery:
        for n in range(1, total + 1):
            nursery.start_soon(one, n)
    assert set(codes.values()) == {-9}
    for n in range(1, total + 1):
        db, log = tmp_path / f"{n}.db", tmp_path / f"{n}.log"
        report, before = await recover_in_this_process(db, log)
        completed, uncertain = analyse(before)
        compensated_before = {
            e.step for e in before if e.kind == "CompensationStepCompleted"
        }
        undone = undo_keys(log_lines(log))
        # s5 is compensated only when uncertain (killed after its intent).
        expected = [
            f"order-1/{step}#compensate" for step in [*uncertain, *reversed(completed)]
        ]
        assert undone == expected, f"kill after write {n}"
        assert all(count == 1 for count in Counter(undone).values()), n
        # Recovery ran exactly the undos the journal had not recorded as done.
        recovered = [] if not report.results else report.results[0].events
        ran = [e.step for e in recovered if isinstance(e, CompensationStepStarted)]
        assert sorted(ran) == sorted(
            s for s in [*uncertain, *completed] if s not in compensated_before
        ), n
        assert (not report.results) == (n == total)


async def test_recovery_killed_after_its_batched_claim(tmp_path: pathlib.Path) -> None:
    """A recovery process is SIGKILLed inside an undo, after its batched claim
    (claim_and_load) bumped the epoch: a second recovery takes the run over,
    repeats only the interrupted undo (same key), and finishes it."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    proc = await recovery_child_in_first_undo(db, log, undo_ms=30000)
    try:
        proc.kill()
        await proc.wait()
    finally:
        await reap(proc)
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        (run,) = await journal.runs()
        assert run.status is RunStatus.RUNNING
        assert run.epoch == 2  # the killed recovery had claimed it
    report, _ = await recover_in_this_process(db, log)
    assert [r.run_id for r in report.results] == ["order-1"]
    assert Counter(undo_keys(log_lines(log))) == Counter(
        {
            "order-1/order/s4#compensate": 2,  # interrupted: its intent was journaled
            "order-1/order/s3#compensate": 1,
            "order-1/order/s2#compensate": 1,
            "order-1/order/s1#compensate": 1,
        }
    )


async def test_ctrl_c_in_a_recovery_lets_its_rollback_finish(
    tmp_path: pathlib.Path,
) -> None:
    """Ctrl-C (SIGINT) to a recovery process inside its first undo: the
    rollback under way is shielded, so it finishes (each undo once, the run
    COMPENSATED), then the process ends with KeyboardInterrupt, its lease
    given up."""
    db, log = tmp_path / "j.db", tmp_path / "log"
    out = tmp_path / "out"
    proc = await recovery_child_in_first_undo(db, log, undo_ms=500, out=out)
    try:
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            await proc.wait()
    finally:
        await reap(proc)
    assert proc.returncode == 1
    assert b"KeyboardInterrupt" in out.read_bytes()
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        (run,) = await journal.runs()
        assert run.status is RunStatus.COMPENSATED
        assert proc.pid not in [w.pid for w in await journal.workers()]
    assert undo_keys(log_lines(log)) == [
        f"order-1/order/{s}#compensate" for s in ("s4", "s3", "s2", "s1")
    ]


async def recovery_child_in_first_undo(
    db: pathlib.Path,
    log: pathlib.Path,
    *,
    undo_ms: int,
    out: pathlib.Path | None = None,
) -> trio.Process:
    """A run killed in its step 4, then a recovery child (undos of *undo_ms*
    each), returned once it is inside its first undo (s4's, uncertain)."""
    assert await run_child(db, log, "step", 4) == -9  # s1..s3 completed
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        await expire_dead_workers(journal)
    command = [sys.executable, str(CHILD), str(db), str(log), "recover", str(undo_ms)]
    if out is None:
        proc = await trio.lowlevel.open_process(command, cwd=ROOT)
    else:
        with out.open("wb") as sink:
            proc = await trio.lowlevel.open_process(
                command, cwd=ROOT, stdout=sink, stderr=sink
            )
    try:
        with trio.fail_after(30):
            # (polls a file another process writes: no trio.Event reaches it)
            while "undo order-1/order/s4#compensate" not in "\n".join(  # noqa: ASYNC110
                log_lines(log)
            ):
                await trio.sleep(0.02)
    except BaseException:
        await reap(proc)
        raise
    return proc


async def reap(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
