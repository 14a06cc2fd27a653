"""Hundreds of seeded random kills: durable runs on SQLite, SIGKILLed anywhere.

Two driver processes (tests/random_kill_child.py) run seeded trials until
each has :data:`KILLS_PER_DRIVER` kills. A trial runs four concurrent runs
(ROLL_BACK ``order`` sagas and RESUME ``fulfil`` sagas with a chorus and a
nested saga, some failing at their last act) in a forked process killed at a
seeded point -- after its N-th journal write, or from a timer at a seeded
moment (inside a commit too) -- then recovers the journal in another fresh
process. For every trial this test checks:

* nothing lost: every run that left an effect is in the journal, recovery
  keeps every run, a second recovery finds nothing, nothing is skipped;
* no run RUNNING after recovery;
* no effect before its intent: each act or undo the killed process ran was
  journaled as started before the kill;
* a ROLL_BACK run the kill interrupted (and any run failing at its last act)
  ends COMPENSATED with an empty state, every act that ran undone; an undo
  ran twice only if the kill caught it in flight;
* a RESUME run that does not fail ends SUCCEEDED with the uncrashed run's
  state and no undo; an act ran twice only if the kill left it uncertain,
  always under its one idempotency key; the recovery said ``RunResumed``.

Real processes and real time; 31-39 s on two loaded cores, so it runs on
one interpreter only (3.11), like a benchmark. ``TRIO_SAGAS_KILL_SEED``
picks the seed.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import pytest

from .helpers import was_failing
from .random_kill_child import FULFIL, ORDER

CHILD = pathlib.Path(__file__).with_name("random_kill_child.py")
ROOT = CHILD.parent.parent
KILLS_PER_DRIVER = 160
DRIVERS = 2

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="fork and SIGKILL are POSIX"),
    pytest.mark.skipif(
        sys.version_info[:2] != (3, 11),
        reason="heavy (real processes, ~30 s): runs on Python 3.11 only",
    ),
]


def effects(lines: list[str]) -> list[tuple[str, str, str]]:
    """``(action, run_id, path)`` per effect line ("run r0/order/a")."""
    out = []
    for line in lines:
        action, key = line.split()
        run_id, _, path = key.partition("/")
        out.append((action, run_id, path.removesuffix("#compensate")))
    return out


def check_trial(facts: dict[str, Any]) -> collections.Counter[str]:
    """Every invariant of the module docstring for one trial; counts."""
    trial = facts["trial"]
    where = f"trial {trial['index']} ({trial['mode']} {trial['at']})"
    before, after = facts["before"], facts["after"]
    log = effects(facts["log"])
    victim = log[: facts["log_before"]]
    counts: collections.Counter[str] = collections.Counter()
    counts["kills"] += trial["killed"]
    assert facts["skipped"] == [], where
    assert facts["again"] == 0, f"{where}: a second recovery found work"
    assert set(after) == set(before), f"{where}: recovery lost or made runs"
    assert {run for _, run, _ in log} <= set(before), f"{where}: a run was lost"
    for run_id, run in after.items():
        assert run["status"] != "RUNNING", f"{where}: {run_id} still RUNNING"
    # No effect before its intent: the killed process's effects are all
    # announced by the journal it left.
    for action, run_id, path in victim:
        kind = "ActStarted" if action == "run" else "CompensationStepStarted"
        entries = before[run_id]["entries"]
        assert [kind, path] in [[e[1], e[2]] for e in entries], (
            f"{where}: {action} {run_id}/{path} with no journaled intent"
        )
    for run_id, run in after.items():
        counts[run["scene"]] += 1
        ran = collections.Counter(p for a, r, p in log if r == run_id and a == "run")
        undone = collections.Counter(
            p for a, r, p in log if r == run_id and a == "undo"
        )
        old = before[run_id]
        kinds = [(e[1], e[2]) for e in old["entries"]]
        ended = {s for k, s in kinds if k in ("ActCompleted", "ActFailed")}
        uncertain = {s for k, s in kinds if k == "ActStarted" and s not in ended}
        in_flight = {s for k, s in kinds if k == "CompensationStepStarted"} - {
            s for k, s in kinds if k == "CompensationStepCompleted"
        }
        for path, n in undone.items():
            assert n == 1 or (n == 2 and path in in_flight), (
                f"{where}: {run_id} undid {path} {n} times"
            )
        for path, n in ran.items():
            assert n == 1 or (n == 2 and path in uncertain), (
                f"{where}: {run_id} ran {path} {n} times"
            )
        failing = run_id in trial["failing"]
        interrupted = old["status"] == "RUNNING"
        failing_then = was_failing(kinds)
        paths: tuple[str, ...] = ORDER if run["scene"] == "order" else FULFIL
        if run["scene"] == "order":
            ends_undone = failing or interrupted
        else:
            ends_undone = failing
            resumed = [e for e in run["entries"] if e[1] == "RunResumed"]
            if interrupted and not failing_then:
                (mark,) = resumed
                assert sorted(mark[3]["uncertain"]) == sorted(uncertain), where
                counts["resumed"] += 1
            else:
                assert not resumed, f"{where}: {run_id} resumed"
        if ends_undone:
            assert run["status"] == "COMPENSATED", f"{where}: {run_id} {run}"
            assert run["state"] == {}, f"{where}: {run_id} state {run['state']}"
            assert set(ran) <= set(undone), f"{where}: {run_id} left {ran - undone}"
            counts["rolled_back"] += interrupted
        else:
            assert run["status"] == "SUCCEEDED", f"{where}: {run_id} {run}"
            names = [p.rpartition("/")[2] for p in paths]
            assert run["state"] == dict.fromkeys(names, 1), f"{where}: {run_id}"
            assert not undone, f"{where}: {run_id} succeeded, undid {undone}"
            assert set(ran) == {f"{run['scene']}/{p}" for p in paths}, (
                f"{where}: {run_id} ran {ran}"
            )
    return counts


def test_hundreds_of_random_kills(tmp_path: pathlib.Path) -> None:
    """At least 300 seeded SIGKILLs at random writes and moments: recovery
    loses nothing, leaves nothing RUNNING, undoes (ROLL_BACK) or finishes
    (RESUME) every interrupted run, and no effect precedes its intent."""
    seed = int(os.environ.get("TRIO_SAGAS_KILL_SEED", "13"))
    # On tmpfs when there is one: fsync is free there, and a SIGKILL (unlike
    # a power cut) loses nothing the process wrote, whatever the sync mode.
    shm = pathlib.Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    with tempfile.TemporaryDirectory(dir=base, prefix="trio_sagas_kill_") as work:
        drivers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(CHILD),
                    work,
                    str(seed),
                    str(k * 100_000),
                    str(KILLS_PER_DRIVER),
                    str(3 * KILLS_PER_DRIVER),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for k in range(DRIVERS)
        ]
        trials = kills = 0
        for driver in drivers:
            out, err = driver.communicate(timeout=600)
            assert driver.returncode == 0, err.decode()
            ran, killed = map(int, out.split())
            trials += ran
            kills += killed
        counts: collections.Counter[str] = collections.Counter()
        for path in sorted(pathlib.Path(work).glob("t*.json")):
            counts += check_trial(json.loads(path.read_text()))
    print(f"random kills, seed {seed}: {trials} trials; {dict(counts)}")
    assert counts["kills"] == kills >= DRIVERS * KILLS_PER_DRIVER
    assert counts["resumed"] >= 50
    assert counts["rolled_back"] >= 50
