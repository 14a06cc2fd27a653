"""The driver of the random-kill test (tests/test_random_kill.py).

    python tests/random_kill_child.py DIR SEED FIRST KILLS MAX_TRIALS

runs seeded trials ``FIRST``, ``FIRST + 1``, ... until ``KILLS`` of them
were killed (or ``MAX_TRIALS`` ran). The driver imports everything once and
never runs trio itself (no thread, so forking is safe); each trial costs two
forks instead of two interpreter start-ups:

* the *victim* (a forked process) runs four concurrent durable runs on a
  fresh ``SQLiteJournal(DIR/tN.db)`` -- ``order`` sagas (rolled back after a
  crash) and ``fulfil`` sagas (``on_crash=RESUME``: an act, a chorus, a
  nested saga, an act) -- some of whose last act fails (business logic, by
  the trial's seed), and SIGKILLs itself at a seeded point: right after its
  N-th journal write returned, or from a timer thread at a seeded moment
  (which lands anywhere, inside a commit too);
* the *recoverer* (another forked process, a fresh one for the journal)
  reads the journal as the victim left it, expires the victim's worker,
  runs ``recover()`` twice, and writes the facts to ``DIR/tN.json``: the
  entries before and after, the statuses and states, the effect log.

Every act and undo appends ``"run KEY"`` / ``"undo KEY"`` (its idempotency
key) to ``DIR/tN.log`` *first* (the effect), with one ``write`` (which
survives the SIGKILL of its writer). The test process checks the facts.
Prints ``trials kills`` at the end.
"""

from __future__ import annotations

import gc
import json
import os
import random
import signal
import sys
import threading
from typing import Any

import trio
import trio.lowlevel

import trio_sagas
from trio_sagas import Act, Chorus, OnCrash, Scene, StepContext, Uncertain

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.killing_journal import KillingJournal

RUNS = 4
ORDER = ("a", "b", "c", "d")
"""The acts of an ``order`` run (rolled back after a crash)."""
FULFIL = ("a", "pack/b1", "pack/b2", "pay/c1", "pay/c2", "d")
"""The acts of a ``fulfil`` run (resumed after a crash), by path under it."""
MAX_WRITES = 40
"""Write-count kills pick N in 1..MAX_WRITES (an uncrashed trial makes ~35)."""
MAX_DELAY = 0.05
"""Timer kills pick a moment in 0..MAX_DELAY s after the journal opened (an
uncrashed trial takes ~0.03-0.06 s here; some timers fire too late: no kill)."""


def effect(log: str, line: str) -> None:
    """Append one line with one write (it survives a SIGKILL right after)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def scenes(log: str, failing: frozenset[str]) -> dict[str, Scene]:
    """``order`` (ROLL_BACK) and ``fulfil`` (RESUME); a run in *failing*
    fails at its last act ``d``, before that act's effect."""

    async def run(ctx: StepContext, state: dict[str, int]) -> str:
        assert ctx.idempotency_key is not None
        if ctx.name == "d" and ctx.run_id in failing:
            raise ValueError("declined")
        effect(log, f"run {ctx.idempotency_key}")
        await trio.lowlevel.checkpoint()
        state[ctx.name] = state.get(ctx.name, 0) + 1
        return f"{ctx.name}-receipt"

    async def undo(ctx: StepContext, state: dict[str, int]) -> None:
        assert ctx.idempotency_key is not None
        effect(log, f"undo {ctx.idempotency_key}")
        await trio.lowlevel.checkpoint()
        state.pop(ctx.name, None)

    def act(name: str) -> Act:
        return Act(name, run, compensate=undo, uncertain=Uncertain.RETRY)

    order = Scene("order", [act(name) for name in ORDER], saga=True)
    fulfil = Scene(
        "fulfil",
        [
            act("a"),
            Chorus("pack", [act("b1"), act("b2")]),
            Scene("pay", [act("c1"), act("c2")], saga=True),
            act("d"),
        ],
        saga=True,
        on_crash=OnCrash.RESUME,
    )
    return {"order": order, "fulfil": fulfil}


def plan(seed: int) -> dict[str, Any]:
    """What trial *seed* does: its runs, their failures, where it is killed."""
    rng = random.Random(seed)
    runs = {f"r{i}": rng.choice(["order", "fulfil"]) for i in range(RUNS)}
    failing = sorted(r for r in runs if rng.random() < 0.3)
    if rng.random() < 0.5:
        return {"runs": runs, "failing": failing, "mode": "write",
                "at": rng.randint(1, MAX_WRITES)}  # fmt: skip
    return {"runs": runs, "failing": failing, "mode": "timer",
            "at": rng.uniform(0.0, MAX_DELAY)}  # fmt: skip


async def victim(db: str, log: str, trial: dict[str, Any]) -> None:
    defs = scenes(log, frozenset(trial["failing"]))
    KillingJournal.kill_at = trial["at"] if trial["mode"] == "write" else 0
    with KillingJournal(db) as journal:
        if trial["mode"] == "timer":
            timer = threading.Timer(trial["at"], os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()
        async with trio.open_nursery() as nursery:
            for run_id, name in trial["runs"].items():
                nursery.start_soon(
                    lambda r, n: trio_sagas.run_scene(
                        defs[n], {}, journal=journal, run_id=r
                    ),
                    run_id,
                    name,
                )


def _entries(entries: tuple[trio_sagas.JournalEntry, ...]) -> list[Any]:
    return [[e.seq, e.kind, e.step, dict(e.data)] for e in entries]


async def _read(journal: trio_sagas.SQLiteJournal) -> dict[str, Any]:
    facts = {}
    for record in await journal.runs():
        entries = await journal.events(record.run_id)
        state = None if record.state is None else json.loads(record.state)
        facts[record.run_id] = {
            "scene": record.scene,
            "status": record.status.name,
            "state": state,
            "entries": _entries(entries),
        }
    return facts


async def recovered(db: str, log: str, trial: dict[str, Any]) -> dict[str, Any]:
    """Recover the journal the victim left; the facts before and after."""
    defs = scenes(log, frozenset(trial["failing"]))
    facts: dict[str, Any] = {}
    async with trio_sagas.SQLiteJournal(db, create=False) as journal:
        facts["before"] = await _read(journal)
        for worker in await journal.workers():
            if worker.pid != os.getpid():
                await journal.expire_worker(worker.worker_id)  # the victim
        report = await trio_sagas.recover(journal, defs)
        again = await trio_sagas.recover(journal, defs)
        facts["results"] = len(report.results)
        facts["skipped"] = [s.reason for s in report.skipped]
        facts["again"] = len(again.results) + len(again.skipped)
        facts["after"] = await _read(journal)
    return facts


def recoverer(db: str, log: str, trial: dict[str, Any], out: str) -> None:
    facts: dict[str, Any] = {"trial": trial, "log_before": len(_lines(log))}
    if os.path.exists(db):
        facts.update(trio.run(recovered, db, log, trial))
    else:  # killed before the journal was created
        facts.update(before={}, after={}, results=0, skipped=[], again=0)
    facts["log"] = _lines(log)
    with open(out, "w") as file:
        json.dump(facts, file)


def _lines(log: str) -> list[str]:
    if not os.path.exists(log):
        return []
    with open(log) as file:
        return file.read().splitlines()


def _fork(fn: Any, *args: Any) -> int:
    """Run ``fn(*args)`` in a forked process; its wait status."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            fn(*args)
        except BaseException as exc:
            print(f"{fn.__name__}: {exc!r}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def main(argv: list[str]) -> None:
    directory, seed, first, kills, max_trials = argv
    # The children touch no page of the interpreter's objects but their own:
    # a collection there would copy every page (forks went 5x slower).
    gc.freeze()
    trials = killed = 0
    index = int(first)
    while killed < int(kills) and trials < int(max_trials):
        trial = plan(int(seed) * 1_000_003 + index)
        trial["index"] = index
        base = os.path.join(directory, f"t{index}")
        db, log = base + ".db", base + ".log"
        status = _fork(trio.run, victim, db, log, trial)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            trial["killed"] = True
            killed += 1
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            trial["killed"] = False
        else:
            sys.exit(f"trial {index}: the victim ended with status {status}")
        if _fork(recoverer, db, log, trial, base + ".json") != 0:
            sys.exit(f"trial {index}: the recovery failed")
        trials += 1
        index += 1
    print(trials, killed)


if __name__ == "__main__":
    main(sys.argv[1:])
