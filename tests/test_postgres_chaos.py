"""Chaos: worker processes share a PostgreSQL journal while a nemesis strikes.

Four worker processes (tests/pg_chaos_worker.py) run order sagas whose steps
write to a ledger table keyed by idempotency key, and take over lapsed runs
with ``run_worker``. A seeded nemesis SIGKILLs workers (and starts new ones),
SIGSTOPs them past their lease and resumes them (zombies), kills their
database connections and restarts PostgreSQL (``-m immediate``). Then every
worker is killed and a fresh one drains the journal. The checker verifies: no
run left RUNNING; each run's events have no gap or duplicate seq; epochs never
go backwards; no step has two start or completion records; no undo restarted
after it completed; every ledger effect follows its journaled intent; a
compensated run's ledger nets to zero; and counts zombie effects (a step's
effect written after its run changed hands), reported, not asserted.

Real processes and real time (about a minute). ``TRIO_SAGAS_CHAOS_SEED``
picks the seed.
"""

from __future__ import annotations

import collections
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from .pg_server import PgServer

WORKER = pathlib.Path(__file__).parent / "pg_chaos_worker.py"
LEASE = 1.5
NEMESIS_SECONDS = 20.0


def query(dsn: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    for _ in range(100):  # the server may be restarting
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                cursor = conn.execute(statement, params or None)
                return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError("server unreachable")


class Cluster:
    """The worker processes of one chaos run."""

    def __init__(self, server: PgServer, schema: str, ledger: str, tmp: pathlib.Path):
        self.server, self.schema, self.ledger, self.tmp = server, schema, ledger, tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.outputs: list[Any] = []
        self.next_index = 0
        self.log = tmp / "runs.log"

    def start(self, runs: int, seed: int) -> None:
        index = self.next_index
        self.next_index += 1
        out = (self.tmp / f"worker{index}.out").open("wb")
        self.outputs.append(out)
        self.procs[index] = subprocess.Popen(
            [sys.executable, str(WORKER), self.server.dsn, self.schema, self.ledger,
             str(index), str(runs), str(seed), str(LEASE), str(self.log)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def alive(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.poll() is None]

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()
        for out in self.outputs:
            out.close()


def nemesis(cluster: Cluster, rng: random.Random) -> collections.Counter[str]:
    done: collections.Counter[str] = collections.Counter()
    paused: dict[int, float] = {}
    restarted = False
    end = time.monotonic() + NEMESIS_SECONDS
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.5, 1.5))
        now = time.monotonic()
        for index, until in list(paused.items()):
            if now >= until:
                cluster.procs[index].send_signal(signal.SIGCONT)
                del paused[index]
        live = [i for i in cluster.alive() if i not in paused]
        action = rng.choice(["kill", "pause", "terminate", "terminate", "restart"])
        if action == "kill" and len(live) > 1:
            cluster.procs[rng.choice(live)].kill()
            cluster.start(runs=10, seed=rng.randrange(1 << 30))
        elif action == "pause" and len(live) > 1:
            index = rng.choice(live)
            cluster.procs[index].send_signal(signal.SIGSTOP)
            paused[index] = now + rng.uniform(1.5, 3.0) * LEASE
        elif action == "terminate":
            query(
                cluster.server.dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'trio-sagas%%' ORDER BY random() LIMIT 2",
            )
        elif action == "restart" and not restarted:
            restarted = True
            cluster.server.pg_ctl("-m", "immediate", "-w", "-t", "60", "restart")
        else:
            continue
        done[action] += 1
    for index in paused:
        cluster.procs[index].send_signal(signal.SIGCONT)
    return done


def check(dsn: str, schema: str, ledger: str, logged: list[str]) -> dict[str, int]:
    """Every invariant of the module docstring; returns counts for the report."""
    s = f'"{schema}"'
    runs = {
        r[0]: r[1:]
        for r in query(dsn, f"SELECT run_id, status, last_seq, epoch FROM {s}.runs")
    }
    events: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
    for row in query(
        dsn,
        f"SELECT run_id, seq, epoch, kind, step, written_at FROM {s}.events ORDER BY run_id, seq",
    ):
        events[row[0]].append(row[1:])
    effects = query(
        dsn, f"SELECT run_id, step, action, key, at FROM {ledger} ORDER BY id"
    )
    by_run: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
    for row in effects:
        by_run[row[0]].append(row[1:])

    assert not [r for r, (status, *_) in runs.items() if status == "running"], (
        "runs left RUNNING"
    )
    for run_id in logged:
        if run_id not in runs:
            assert run_id not in by_run, f"{run_id}: effects of a run the journal lost"
    zombie = 0
    for run_id, (status, last_seq, epoch) in runs.items():
        evs = events[run_id]
        assert [e[0] for e in evs] == list(range(last_seq + 1)), (
            f"{run_id}: seq gap/dup"
        )
        epochs = [e[1] for e in evs]
        assert epochs == sorted(epochs), f"{run_id}: epoch went backwards {epochs}"
        assert not epochs or epochs[-1] <= epoch
        count = collections.Counter((kind, step) for _, _, kind, step, _ in evs)
        for (kind, step), n in count.items():
            if kind in (
                "ActStarted",
                "ActCompleted",
                "ActFailed",
                "CompensationStepCompleted",
            ):
                assert n == 1, f"{run_id}: {kind} {step} journaled {n} times"
        completed_undo: set[str] = set()
        for _, _, kind, step, _ in evs:
            if kind == "CompensationStepCompleted":
                completed_undo.add(step)
            elif kind == "CompensationStepStarted":
                assert step not in completed_undo, f"{run_id}: undo {step} restarted"
        first_of_epoch: dict[int, Any] = {}
        for _, ep, _, _, written in evs:
            first_of_epoch.setdefault(ep, written)
        for step, action, _, at in by_run.get(run_id, []):
            intent = "ActStarted" if action == "do" else "CompensationStepStarted"
            starts = [e for e in evs if e[2] == intent and e[3] == step]
            assert starts, f"{run_id}: {action} {step} without a journaled intent"
            assert starts[0][4] <= at, f"{run_id}: {action} {step} before its intent"
            # An act's effect landing after a later epoch began: a zombie's.
            if action == "do" and any(
                ep > starts[0][1] and t < at for ep, t in first_of_epoch.items()
            ):
                zombie += 1
        if status == "compensated":
            done = {
                step for step, action, _, _ in by_run.get(run_id, []) if action == "do"
            }
            undone = {
                step
                for step, action, _, _ in by_run.get(run_id, [])
                if action == "undo"
            }
            assert done <= undone, (
                f"{run_id}: compensated but {done - undone} not undone"
            )
    return {
        "runs": len(runs),
        "compensated": sum(1 for r in runs.values() if r[0] == "compensated"),
        "taken_over": sum(1 for r in runs.values() if r[2] > 1),
        "needs_intervention": sum(
            1 for r in runs.values() if r[0] == "needs_intervention"
        ),
        "zombie_effects": zombie,
    }


def test_chaos_no_run_lost_no_step_twice(
    pg_server: PgServer, tmp_path: pathlib.Path
) -> None:
    """Workers killed, paused past their lease, cut off, and the server restarted:
    the survivors finish every run, and every journal/ledger invariant holds."""
    if pg_server.data_dir is None:
        pytest.skip("needs the throwaway server (it is restarted)")
    seed = int(os.environ.get("TRIO_SAGAS_CHAOS_SEED", "20261130"))
    rng = random.Random(seed)
    schema = pg_server.new_schema()
    ledger = f"ledger_{schema}"
    query(
        pg_server.dsn,
        f"CREATE TABLE {ledger} (id bigserial PRIMARY KEY, run_id text, step text, "
        "action text, key text, worker text, at timestamptz DEFAULT clock_timestamp())",
    )
    cluster = Cluster(pg_server, schema, ledger, tmp_path)
    try:
        for _ in range(4):
            cluster.start(runs=30, seed=rng.randrange(1 << 30))
        actions = nemesis(cluster, rng)
        time.sleep(3 * LEASE)  # the survivors go on for a while
        cluster.kill_all()
        # A fresh worker drains what the dead ones held.
        cluster.start(runs=0, seed=0)
        deadline = time.monotonic() + 60
        while query(
            pg_server.dsn, f'SELECT 1 FROM "{schema}".runs WHERE status = %s', "running"
        ):
            assert time.monotonic() < deadline, (
                "runs still RUNNING a minute after the drain began"
            )
            time.sleep(0.2)
    finally:
        cluster.kill_all()
    logged = cluster.log.read_text().split() if cluster.log.exists() else []
    counts = check(pg_server.dsn, schema, ledger, logged)
    print(f"chaos seed {seed}: nemesis {dict(actions)}; {counts}")
    assert counts["runs"] >= 20
    assert counts["taken_over"] >= 1
