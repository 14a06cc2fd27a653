"""Chaos: worker processes share a PostgreSQL journal while a nemesis strikes.

Four worker processes (tests/pg_chaos_worker.py) run sagas whose steps write
to a ledger table keyed by idempotency key, and take over lapsed runs with
``run_worker``: ``order`` runs (rolled back after a crash) and ``fulfil``
runs (``on_crash=RESUME``: an act, a chorus, a nested saga, an act; finished
after a crash by whichever worker claims them). A seeded nemesis SIGKILLs workers (and starts new ones),
SIGSTOPs them past their lease and resumes them (zombies), kills their
database connections and restarts PostgreSQL (``-m immediate``). Then every
worker is killed and a fresh one drains the journal. The checker verifies: no
run left RUNNING; each run's events have no gap or duplicate seq; epochs never
go backwards; no step has two start or completion records; no undo restarted
after it completed; every ledger effect follows its journaled intent; a
compensated run's ledger nets to zero; and counts zombie effects (a step's
effect written after its run changed hands), reported, not asserted. For
the RESUME runs also: each ends SUCCEEDED with the uncrashed run's state and
no undo, unless its business logic fails (then COMPENSATED, ledger netting
to zero); an act is started again only after a ``RunResumed`` that names it
uncertain, so a completed act ran once and an act ran at most once per
start, always under its one idempotency key; every later epoch of a resumed
run begins with ``RunResumed`` (owner and previous owner differ), and its
timeline shows the takeover.

Real processes and real time (about a minute). ``TRIO_SAGAS_CHAOS_SEED``
picks the seed.
"""

from __future__ import annotations

import collections
import json
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

import trio_sagas

from .pg_chaos_worker import FULFIL_STEPS, business_failure
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

    def logged(self) -> list[str]:
        """The run ids the workers logged (each before starting the run)."""
        return self.log.read_text().split() if self.log.exists() else []

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


def check(
    dsn: str, schema: str, ledger: str, logged: list[str]
) -> tuple[dict[str, int], list[str]]:
    """Every invariant of the module docstring; returns counts for the report
    and the runs that were resumed."""
    s = f'"{schema}"'
    runs = {
        r[0]: r[1:]
        for r in query(
            dsn, f"SELECT run_id, status, last_seq, epoch, scene, state FROM {s}.runs"
        )
    }
    events: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
    data: dict[tuple[str, int], dict[str, Any]] = {}
    for row in query(
        dsn,
        f"SELECT run_id, seq, epoch, kind, step, written_at, data FROM {s}.events "
        "ORDER BY run_id, seq",
    ):
        events[row[0]].append(row[1:6])
        if row[3] == "RunResumed":
            data[(row[0], row[1])] = json.loads(row[6])
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
    resumed: list[str] = []
    for run_id, (status, last_seq, epoch, scene, state) in runs.items():
        evs = events[run_id]
        assert [e[0] for e in evs] == list(range(last_seq + 1)), (
            f"{run_id}: seq gap/dup"
        )
        epochs = [e[1] for e in evs]
        assert epochs == sorted(epochs), f"{run_id}: epoch went backwards {epochs}"
        assert not epochs or epochs[-1] <= epoch
        count = collections.Counter((kind, step) for _, _, kind, step, _ in evs)
        once = ["ActCompleted", "ActFailed", "CompensationStepCompleted"]
        if scene == "order":
            once.append("ActStarted")
            assert not count[("RunResumed", "order")], f"{run_id}: a ROLL_BACK resumed"
        for (kind, step), n in count.items():
            if kind in once:
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
                f"{run_id}: compensated but {done - undone} not undone; "
                f"events {evs}; ledger {by_run.get(run_id)}"
            )
        effects = by_run.get(run_id, [])
        if scene == "fulfil" and check_resumed(
            run_id, status, state, evs, data, effects
        ):
            resumed.append(run_id)
    return {
        "runs": len(runs),
        "resume_runs": sum(1 for r in runs.values() if r[3] == "fulfil"),
        "resumed": len(resumed),
        "compensated": sum(1 for r in runs.values() if r[0] == "compensated"),
        "taken_over": sum(1 for r in runs.values() if r[2] > 1),
        "succeeded": sum(1 for r in runs.values() if r[0] == "succeeded"),
        "needs_intervention": sum(
            1 for r in runs.values() if r[0] == "needs_intervention"
        ),
        "zombie_effects": zombie,
    }, resumed


def check_resumed(
    run_id: str,
    status: str,
    state: bytes | None,
    evs: list[tuple[Any, ...]],
    data: dict[tuple[str, int], dict[str, Any]],
    effects: list[tuple[Any, ...]],
) -> bool:
    """The RESUME invariants of the module docstring for one ``fulfil`` run;
    returns whether the run was resumed (by whichever worker)."""
    final = json.loads(state) if state else None
    do = collections.Counter(step for step, action, _, _ in effects if action == "do")
    undone = {step for step, action, _, _ in effects if action == "undo"}
    for step, action, key, _ in effects:
        suffix = "#compensate" if action == "undo" else ""
        assert key == f"{run_id}/{step}{suffix}", f"{run_id}: {step} under key {key}"
    if business_failure(run_id):
        assert status == "compensated", f"{run_id}: {status}, not compensated"
        assert final == {}, f"{run_id}: compensated with state {final}"
        assert set(do) <= undone, f"{run_id}: {set(do) - undone} not undone"
    else:
        assert status == "succeeded", (
            f"{run_id}: a RESUME run ended {status}; events {evs}; ledger {effects}"
        )
        names = [p.rpartition("/")[2] for p in (*FULFIL_STEPS, "ship")]
        assert final == dict.fromkeys(names, 1), f"{run_id}: final state {final}"
        assert not undone, f"{run_id}: succeeded, yet {undone} undone"
        assert set(do) == {f"fulfil/{p}" for p in (*FULFIL_STEPS, "ship")}, (
            f"{run_id}: effects {dict(do)}"
        )
    # An act starts again only after a RunResumed naming it uncertain; each
    # effect follows one start of its act (at most once per start).
    starts: collections.Counter[str] = collections.Counter()
    uncertain: set[str] = set()
    was_resumed = False
    epoch = evs[0][1] if evs else 0
    for seq, ep, kind, step, _ in evs:
        if ep != epoch:
            epoch = ep
            assert kind == "RunResumed" or status == "compensated", (
                f"{run_id}: epoch {ep} begins with {kind}, not RunResumed"
            )
        if kind == "RunResumed":
            was_resumed = True
            resumed = data[(run_id, seq)]
            assert resumed["owner"] != resumed["previous_owner"], resumed
            uncertain = set(resumed["uncertain"])
        elif kind == "ActStarted":
            if starts[step]:
                assert step in uncertain, f"{run_id}: {step} started again"
                uncertain.discard(step)
            starts[step] += 1
    for step, n in do.items():
        assert n <= starts[step], f"{run_id}: {step} ran {n} times, started {starts}"
    return was_resumed


def resumed_timeline(dsn: str, schema: str, run_id: str) -> str:
    """The text timeline of a run, from its journaled entries."""
    rows = query(
        dsn,
        f'SELECT seq, kind, step, at, data FROM "{schema}".events WHERE run_id = %s '
        "ORDER BY seq",
        run_id,
    )
    entries = [
        trio_sagas.JournalEntry(
            run_id=run_id, seq=seq, kind=kind, step=step, at=at, data=json.loads(d)
        )
        for seq, kind, step, at, d in rows
    ]
    return trio_sagas.render_timeline(entries, ascii_only=True)


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
        # On a loaded machine the workers take a while to start: the nemesis
        # waits for them (else it strikes before there are runs to disturb).
        started = time.monotonic() + 60
        while len(cluster.logged()) < 8 and time.monotonic() < started:
            time.sleep(0.1)
        actions = nemesis(cluster, rng)
        time.sleep(3 * LEASE)  # the survivors go on for a while
        cluster.kill_all()
        ((drain_at,),) = query(pg_server.dsn, "SELECT clock_timestamp()")
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
    counts, resumed = check(pg_server.dsn, schema, ledger, cluster.logged())
    # Resumed and finished by a surviving worker, before the drain began.
    ((finished_by_survivors,),) = query(
        pg_server.dsn,
        f'SELECT count(*) FROM "{schema}".runs r WHERE status = %s AND updated_at < %s '
        f'AND EXISTS (SELECT 1 FROM "{schema}".events e WHERE e.run_id = r.run_id '
        "AND e.kind = 'RunResumed')",
        "succeeded",
        drain_at,
    )
    counts["resumed_finished_by_survivors"] = finished_by_survivors
    print(f"chaos seed {seed}: nemesis {dict(actions)}; {counts}")
    assert counts["runs"] >= 20
    assert counts["taken_over"] >= 1
    assert counts["resume_runs"] >= 10
    assert resumed, "no RESUME run was taken over: the chaos test tested nothing"
    assert finished_by_survivors >= 1, "no survivor finished a resumed run"
    timeline = resumed_timeline(pg_server.dsn, schema, resumed[0])
    assert "resumed by " in timeline, timeline
