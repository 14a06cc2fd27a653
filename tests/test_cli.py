"""The ``trio-sagas`` console script, run for real in subprocesses against real journals."""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from trio_sagas._cli import main
from trio_sagas._cli._journal_url import format_age, parse_duration, sqlite_path

SCRIPT = pathlib.Path(sys.executable).with_name("trio-sagas")

APP = textwrap.dedent(
    """
    import os, signal, sys
    import trio, trio.testing
    import trio_sagas
    from trio_sagas import Act, Scene

    async def ok(ctx, state):
        await trio.sleep(1)
        state.setdefault("done", []).append(ctx.path)

    async def undo(ctx, state):
        await trio.sleep(1)
        state.setdefault("undone", []).append(ctx.path)

    async def declined(ctx, state):
        await trio.sleep(1)
        raise ValueError("card declined")

    async def refund(ctx, state):
        if os.environ.get("REFUND_FIXED") != "1":
            raise RuntimeError("refund service down")
        state["refunded"] = True

    async def crash(ctx, state):
        os.kill(os.getpid(), signal.SIGKILL)

    order = Scene("order", [Act("reserve", ok, compensate=undo), Act("ship", ok)])
    refunds = Scene(
        "refunds",
        [Act("reserve", ok, compensate=undo), Act("charge", ok, compensate=refund),
         Act("ship", declined)],
        saga=True,
    )
    plain = Scene("plain", [Act("reserve", ok, compensate=undo), Act("charge", declined)])
    crashing = Scene(
        "crashing", [Act("reserve", ok, compensate=undo), Act("charge", crash)], saga=True
    )
    SCENES = [order, refunds, plain, crashing]

    async def make(what):
        # The crashing process holds a long lease: its run stays its own
        # until the lease lapses or an operator expires it.
        lease = 3600 if what == "crash" else 15
        async with trio_sagas.SQLiteJournal("sagas.db", lease=lease) as journal:
            if what == "crash":
                await trio_sagas.run_scene(crashing, {}, journal=journal, run_id="crash-1")
                return
            await trio_sagas.run_scene(order, {}, journal=journal, run_id="ok-1")
            await trio_sagas.run_scene(refunds, {}, journal=journal, run_id="refund-1")
            await trio_sagas.run_scene(plain, {}, journal=journal, run_id="plain-1")

    if __name__ == "__main__":
        trio.run(make, sys.argv[1], clock=trio.testing.MockClock(autojump_threshold=0))
    """
)


def _cli(
    cwd: pathlib.Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "TRIO_SAGAS_JOURNAL": "sqlite:///sagas.db", **(env or {})}
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A journal holding a succeeded, a failed, a needs-intervention and a crashed run."""
    where = tmp_path_factory.mktemp("cli")
    (where / "app.py").write_text(APP)
    subprocess.run(
        [sys.executable, "app.py", "runs"], cwd=where, check=True, timeout=60
    )
    crashed = subprocess.run(
        [sys.executable, "app.py", "crash"], cwd=where, check=False, timeout=60
    )
    assert crashed.returncode == -9
    return where


@pytest.fixture
def fresh(journal_dir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A private copy of the journal (for the commands that write)."""
    for name in ("app.py", "sagas.db", "sagas.db-wal", "sagas.db-shm"):
        source = journal_dir / name
        if source.exists():
            (tmp_path / name).write_bytes(source.read_bytes())
    return tmp_path


def test_runs_lists_every_run_in_aligned_columns(journal_dir: pathlib.Path) -> None:
    """`runs` prints a header and one aligned line per run, oldest first."""
    out = _cli(journal_dir, "runs", "--fields", "run_id,status,scene,last_step")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "RUN ID    STATUS              SCENE     LAST STEP",
        "ok-1      succeeded           order     ActCompleted order/ship",
        "refund-1  needs_intervention  refunds   CompensationCompleted refunds",
        "plain-1   failed              plain     ActFailed plain/charge",
        "crash-1   running             crashing  ActStarted crashing/charge",
    ]


def test_runs_filters_and_json(journal_dir: pathlib.Path) -> None:
    """--status/--scene filter; --json gives one object per line."""
    out = _cli(
        journal_dir, "runs", "--status", "running", "--status", "failed", "--json"
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["run_id"], r["status"]) for r in rows] == [
        ("plain-1", "failed"),
        ("crash-1", "running"),
    ]
    assert rows[1]["worker"] is not None  # the crashed process still holds it
    assert rows[1]["last_step"] == "ActStarted crashing/charge"
    out = _cli(journal_dir, "runs", "--scene", "order", "--fields", "run_id")
    assert out.stdout.splitlines() == ["RUN ID", "ok-1"]


def test_runs_older_than_and_ages(journal_dir: pathlib.Path) -> None:
    """--older-than compares with the latest write; ages are whole units."""
    out = _cli(journal_dir, "runs", "--older-than", "1h", "--fields", "run_id")
    assert out.stdout.strip() == "no runs"
    later = {"TRIO_SAGAS_NOW": str(_updated(journal_dir, "crash-1") + 7200.5)}
    out = _cli(
        journal_dir, "runs", "--older-than", "1h", "--fields", "run_id,idle", env=later
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "RUN ID    IDLE"
    assert "crash-1   2h" in lines


def _updated(where: pathlib.Path, run_id: str) -> float:
    with sqlite3.connect(where / "sagas.db") as conn:
        value = conn.execute(
            "SELECT updated_at FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
    conn.close()
    return float(value)


def test_show_prints_events_errors_and_timeline(journal_dir: pathlib.Path) -> None:
    """`show` prints the record, every entry, the errors and the text timeline."""
    out = _cli(journal_dir, "show", "refund-1", "--ascii")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith(
        "run      refund-1\nscene    refunds\nstatus   needs_intervention\n"
    )
    assert "9    3.000  CompensationStepStarted    refunds/charge" in text
    assert "errors\n  refunds/ship: ValueError: card declined\n" in text
    assert "  refunds/charge: RuntimeError: refund service down\n" in text
    timeline = text.split("timeline (seconds since the run started)\n")[1].splitlines()
    assert timeline[0].startswith("refunds/reserve        |")
    assert timeline[0].endswith("| 0..1 succeeded")
    assert timeline[-2].startswith("refunds/reserve (undo) |")
    assert timeline[-2].endswith("| 4.5..5.5 succeeded")


def test_show_of_a_crashed_run_marks_the_interrupted_step(
    journal_dir: pathlib.Path,
) -> None:
    """A step whose process died ends, interrupted, at the process's last entry."""
    out = _cli(journal_dir, "show", "crash-1", "--ascii")
    assert out.returncode == 0, out.stderr
    assert "crashing/charge (interrupted) |" in out.stdout
    assert "status   running" in out.stdout


def test_show_json_and_missing_run(journal_dir: pathlib.Path) -> None:
    """--json gives the entries; an unknown run is one line on stderr, exit 1."""
    out = _cli(journal_dir, "show", "ok-1", "--json")
    kinds = [json.loads(line)["kind"] for line in out.stdout.splitlines()]
    assert kinds[0] == "SceneStarted"
    assert kinds[-1] == "SceneCompleted"
    out = _cli(journal_dir, "show", "nope")
    assert out.returncode == 1
    assert out.stderr == "trio-sagas: no run 'nope' in the journal\n"


def test_recover_rolls_back_the_crashed_run(fresh: pathlib.Path) -> None:
    """A dead worker's run is left alone while its lease is live; once the
    operator expires the worker, `recover --app` rolls the run back."""
    out = _cli(fresh, "recover", "--app", "app:SCENES")
    assert out.returncode == 1
    assert out.stdout == (
        "crash-1: skipped (crashing): not claimable: held by a live worker "
        "(still running, or being recovered by another call), or written to "
        "within stale_after\n"
    )
    worker = _crashed_worker(fresh)
    out = _cli(fresh, "workers", "--expire", worker)
    assert (out.returncode, out.stdout) == (
        0,
        f"worker {worker}: lease expired; its runs can be claimed now\n",
    )
    out = _cli(fresh, "recover", "--app", "app:SCENES")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "crash-1: compensated (1 undo(s))",
        "  undo crashing/reserve  succeeded",
    ]
    again = _cli(fresh, "recover", "--app", "app:SCENES")
    assert again.stdout == "nothing to recover\n"
    runs = _cli(fresh, "runs", "--status", "running", "--fields", "run_id")
    assert runs.stdout == "no runs\n"
    runs = _cli(fresh, "runs", "--scene", "crashing", "--json")
    row = json.loads(runs.stdout)
    assert (row["status"], row["worker"], row["epoch"], row["claims"]) == (
        "compensated",
        None,
        2,
        1,
    )
    # The command line was a worker while it recovered, and is gone now.
    assert [w[0] for w in _worker_rows(fresh)] == [worker]


def test_recover_stale_after_is_extra_grace(fresh: pathlib.Path) -> None:
    """--stale-after leaves a lapsed worker's run alone until it is that old."""
    _cli(fresh, "workers", "--expire", _crashed_worker(fresh))
    out = _cli(fresh, "recover", "--app", "app:SCENES", "--stale-after", "1d")
    assert out.returncode == 1
    assert out.stdout.startswith("crash-1: skipped (crashing): not claimable")
    out = _cli(fresh, "recover", "--app", "app:SCENES", "--stale-after", "0")
    assert out.returncode == 0, out.stderr


def _crashed_worker(where: pathlib.Path) -> str:
    with sqlite3.connect(where / "sagas.db") as conn:
        (worker,) = conn.execute(
            "SELECT owner FROM runs WHERE run_id = 'crash-1'"
        ).fetchone()
    conn.close()
    return str(worker)


def _worker_rows(where: pathlib.Path) -> list[tuple[str, float, float, float]]:
    with sqlite3.connect(where / "sagas.db") as conn:
        rows = conn.execute(
            "SELECT worker_id, started_at, renewed_at, expires_at FROM workers "
            "ORDER BY started_at"
        ).fetchall()
    conn.close()
    return [(str(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in rows]


def test_compensate_needs_intervention_then_fixed(fresh: pathlib.Path) -> None:
    """`compensate` retries a failed undo: exit 1 while it fails, 0 once fixed."""
    out = _cli(fresh, "compensate", "refund-1", "--app", "app:SCENES")
    assert out.returncode == 1
    assert out.stdout.splitlines()[0] == "refund-1: needs intervention (1 undo(s))"
    assert "RuntimeError: refund service down" in out.stdout
    out = _cli(
        fresh,
        "compensate",
        "refund-1",
        "--app",
        "app:SCENES",
        env={"REFUND_FIXED": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "refund-1: compensated (1 undo(s))",
        "  undo refunds/charge  succeeded",
    ]
    out = _cli(fresh, "compensate", "plain-1", "--app", "app:SCENES")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "plain-1: compensated (1 undo(s))"


def test_compensate_a_succeeded_run_is_one_line(fresh: pathlib.Path) -> None:
    """Refused operations print one line, no traceback, exit 1."""
    out = _cli(fresh, "compensate", "ok-1", "--app", "app:SCENES")
    assert out.returncode == 1
    assert len(out.stderr.splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_check_healthy_then_damaged(fresh: pathlib.Path) -> None:
    """`check` says ok, then lists each damaged run and exits 1."""
    out = _cli(fresh, "check")
    assert (out.returncode, out.stdout) == (0, "sagas.db: ok\n")
    with sqlite3.connect(fresh / "sagas.db") as conn:
        conn.execute(
            "UPDATE events SET data = '{oops' WHERE run_id = 'ok-1' AND seq = 2"
        )
        conn.execute("UPDATE runs SET state = x'ff00' WHERE run_id = 'plain-1'")
        conn.execute("DELETE FROM events WHERE run_id = 'refund-1' AND seq = 3")
    conn.close()
    out = _cli(fresh, "check")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0] == "sagas.db: 3 problem(s), 3 damaged run(s)"
    assert lines[1].startswith("  ok-1: entry 2 (ActCompleted): data is not JSON")
    assert lines[2] == "  refund-1: entry 3 missing (next is 4)"
    assert lines[3].startswith("  plain-1: state does not decode: UnicodeDecodeError")
    # The other commands still work around the damaged run.
    runs = _cli(fresh, "runs", "--fields", "run_id,last_step")
    assert runs.returncode == 0, runs.stderr
    assert "ok-1      (entries unreadable: run `trio-sagas check`)" in runs.stdout
    show = _cli(fresh, "show", "ok-1")
    assert show.returncode == 1
    assert show.stderr.startswith(
        "trio-sagas: run 'ok-1' in journal 'sagas.db' is damaged: "
        "its event at seq 2 cannot be read"
    )
    assert len(show.stderr.splitlines()) == 1


def test_check_a_file_that_is_not_sqlite(tmp_path: pathlib.Path) -> None:
    """A garbage file is reported in one line with exit 1."""
    (tmp_path / "sagas.db").write_bytes(b"not a database at all" * 300)
    out = _cli(tmp_path, "check")
    assert out.returncode == 1
    assert out.stdout.startswith("sagas.db: 1 problem(s), 0 damaged run(s)\n  (file): ")
    assert "Traceback" not in out.stdout + out.stderr


def test_check_an_overwritten_page(fresh: pathlib.Path) -> None:
    """Bytes overwritten inside the file: found, exit 1, no traceback."""
    with sqlite3.connect(fresh / "sagas.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray((fresh / "sagas.db").read_bytes())
    page = 4096
    data[page + 100 : page * 2] = b"\xa5" * (page - 100)
    (fresh / "sagas.db").write_bytes(bytes(data))
    out = _cli(fresh, "check")
    assert out.returncode == 1
    assert "problem(s)" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_workers_lists_the_dead_worker_and_its_lease(fresh: pathlib.Path) -> None:
    """`workers` shows the crashed process's worker (live lease, one running
    run), then lapsed once expired; a clean exit left no worker behind."""
    ((worker, started, _renewed, expires),) = _worker_rows(fresh)
    assert worker == _crashed_worker(fresh)
    env = {"TRIO_SAGAS_NOW": str(started + 90)}
    out = _cli(fresh, "workers", env=env)
    assert out.returncode == 0, out.stderr
    header, line = out.stdout.splitlines()
    assert header.split() == [
        "WORKER", "HOST", "PID", "UP", "RENEWED", "LEASE", "RUNNING"
    ]  # fmt: skip
    left = format_age(expires - started - 90)
    assert line.split()[0] == worker
    assert line.split()[3:] == ["1m", "1m", "ago", "live,", left, "left", "1"]
    runs = _cli(fresh, "runs", "--fields", "run_id,lease,epoch,claims", env=env)
    assert runs.stdout.splitlines()[-1].split() == ["crash-1", "live", "1", "0"]
    _cli(fresh, "workers", "--expire", worker)
    later = {"TRIO_SAGAS_NOW": str(time.time() + 600)}
    out = _cli(fresh, "workers", env=later)
    assert out.stdout.splitlines()[1].split()[-4:] == ["lapsed", "10m", "ago", "1"]
    show = _cli(fresh, "show", "crash-1", env=later)
    assert "\nlease    lapsed 10m ago\nepoch    1 (claimed 0 time(s))\n" in show.stdout
    again = _cli(fresh, "workers", "--expire", worker, env=later)
    assert again.returncode == 0
    assert again.stdout == (
        f"worker {worker}: lease already lapsed 10m ago; its runs can be claimed\n"
    )
    missing = _cli(fresh, "workers", "--expire", "nobody")
    assert missing.returncode == 1
    assert missing.stderr == "trio-sagas: no worker 'nobody' in the journal\n"


def test_prune_deletes_old_finished_runs_only(fresh: pathlib.Path) -> None:
    """`prune` deletes finished runs older than --older-than, of the given
    statuses; running and needs_intervention are refused (exit 2)."""
    out = _cli(fresh, "prune", "--older-than", "1h")
    assert (out.returncode, out.stdout) == (
        0,
        "pruned 0 run(s) (succeeded, compensated, failed) not written to for 1h or more\n",
    )
    out = _cli(fresh, "prune", "--older-than", "0", "--status", "succeeded")
    assert out.stdout == "pruned 1 run(s) (succeeded) not written to for 0s or more\n"
    out = _cli(fresh, "prune", "--older-than", "0s")
    assert out.stdout.startswith("pruned 1 run(s) (succeeded, compensated, failed)")
    runs = _cli(fresh, "runs", "--fields", "run_id")
    assert runs.stdout.splitlines() == ["RUN ID", "refund-1", "crash-1"]
    for status in ("running", "needs_intervention"):
        refused = _cli(fresh, "prune", "--older-than", "0", "--status", status)
        assert refused.returncode == 2
        assert f"--status: {status} runs are never pruned" in refused.stderr
    assert _cli(fresh, "show", "plain-1").returncode == 1  # its entries went too
    with sqlite3.connect(fresh / "sagas.db") as conn:
        left = conn.execute("SELECT DISTINCT run_id FROM events").fetchall()
    conn.close()
    assert sorted(r[0] for r in left) == ["crash-1", "refund-1"]


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        ((), {}, 2, "the following arguments are required: COMMAND"),
        (("runs",), {"TRIO_SAGAS_JOURNAL": ""}, 2, "no journal: pass --journal URL"),
        (("--journal", "mysql://x", "runs"), {}, 2, "unknown scheme 'mysql'"),
        (
            ("--journal", "postgresql://127.0.0.1:1/x", "runs"),
            {},
            1,
            "PostgreSQL journal 127.0.0.1/x schema 'trio_sagas': connection failed",
        ),
        (("runs", "--status", "lost"), {}, 2, "--status must be one of"),
        (("runs", "--older-than", "soon"), {}, 2, "--older-than must be a duration"),
        (("runs", "--fields", "colour"), {}, 2, "unknown field 'colour'"),
        (("workers", "--fields", "cpu"), {}, 2, "unknown field 'cpu'"),
        (("prune",), {}, 2, "the following arguments are required: --older-than"),
        (("prune", "--older-than", "x"), {}, 2, "--older-than must be a duration"),
        (("recover", "--app", "app"), {}, 2, "--app must be MODULE:ATTR, got 'app'"),
        (("recover", "--app", "nosuch:X"), {}, 2, "no module named 'nosuch'"),
        (("recover", "--app", "app:NOPE"), {}, 2, "has no attribute 'NOPE'"),
        (
            ("recover", "--app", "app:SCENES", "--stale-after", "x"),
            {},
            2,
            "--stale-after must be a duration",
        ),
        (("--journal", "sqlite:///missing.db", "runs"), {}, 1, "does not exist"),
    ],
)
def test_errors_are_one_line(
    journal_dir: pathlib.Path,
    args: tuple[str, ...],
    env: dict[str, str],
    code: int,
    message: str,
) -> None:
    """Usage errors exit 2, problems exit 1; one line on stderr, no traceback."""
    out = _cli(journal_dir, *args, env=env)
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    if code == 1 or args:
        assert len(out.stderr.strip().splitlines()) <= 3  # argparse adds its usage


def test_debug_shows_the_traceback(journal_dir: pathlib.Path) -> None:
    """--debug lets the exception through with its traceback."""
    out = _cli(journal_dir, "--debug", "--journal", "sqlite:///missing.db", "runs")
    assert out.returncode == 1
    assert "Traceback" in out.stderr


def test_python_dash_m(journal_dir: pathlib.Path) -> None:
    """`python -m trio_sagas` is the same command line."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_sagas",
            "--journal",
            "sqlite:///sagas.db",
            "runs",
            "--fields",
            "run_id",
        ],
        cwd=journal_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1] == "ok-1"


def test_helpers() -> None:
    """URLs, durations and ages parse and print as documented."""
    assert sqlite_path("sqlite:///a.db") == pathlib.Path("a.db")
    assert sqlite_path("sqlite:////var/a.db") == pathlib.Path("/var/a.db")
    assert sqlite_path("a.db") == pathlib.Path("a.db")
    assert sqlite_path("postgresql://x") is None
    assert [
        parse_duration(t, "d") for t in ("90", "90s", "10m", "2h", "1d", "1.5m")
    ] == [
        90,
        90,
        600,
        7200,
        86400,
        90,
    ]
    assert [format_age(s) for s in (-1, 0, 59.9, 60, 3599, 3600, 86400 * 3)] == [
        "0s",
        "0s",
        "59s",
        "1m",
        "59m",
        "1h",
        "3d",
    ]


def test_main_returns_usage_status(capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns 2 for a bad command line instead of exiting."""
    assert main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


class _JournalWithoutLeases:
    """Stands in for a backend that predates worker leases."""

    def __init__(self, path: object, codec: object = None) -> None:
        pass

    async def runs(self, *, status: object = None) -> tuple[object, ...]:
        from trio_sagas import RunRecord, RunStatus

        return (RunRecord("r-1", "order", RunStatus.RUNNING, None, "tok", 0.0, 0.0, 0),)

    async def events(self, run_id: str) -> tuple[object, ...]:
        return ()

    def close(self) -> None:
        pass


def test_workers_without_leases(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backend without leases: `workers` says so (exit 1); `runs` shows no lease."""
    from trio_sagas._cli import _leases

    monkeypatch.setattr(_leases, "open_journal", _JournalWithoutLeases)
    assert main(["--journal", "sqlite:///x.db", "workers"]) == 1
    assert "no worker leases" in capsys.readouterr().out
    assert (
        main(["--journal", "sqlite:///x.db", "runs", "--fields", "run_id,lease"]) == 0
    )
    assert capsys.readouterr().out.splitlines() == ["RUN ID  LEASE", "r-1     -"]


def test_timeline_from_entries_across_processes() -> None:
    """Entries of two processes (unrelated trio clocks) land on one time axis."""
    from trio_sagas import JournalEntry, render_timeline, timeline_from_entries
    from trio_sagas._journal_entries import segments

    def entry(seq: int, kind: str, step: str, at: float, wall: float) -> JournalEntry:
        return JournalEntry("r", seq, kind, step, at, {}, None, wall)

    entries = [
        entry(0, "SceneStarted", "s", 5000.0, 100.0),
        entry(1, "ActStarted", "s/a", 5000.0, 100.0),
        entry(2, "ActCompleted", "s/a", 5002.0, 102.0),
        entry(3, "ActStarted", "s/b", 5002.0, 102.0),
        # the process dies; another recovers 8 s later, its clock at 70000
        entry(4, "CompensationStarted", "s", 70000.0, 110.0),
        entry(5, "CompensationStepStarted", "s/a", 70000.0, 110.0),
        entry(6, "CompensationStepCompleted", "s/a", 70001.0, 111.0),
    ]
    assert segments(entries) == [0, 0, 0, 0, 1, 1, 1]
    spans = timeline_from_entries(entries)
    assert [(s.name, s.status.value, s.started_at, s.finished_at) for s in spans] == [
        ("s/a", "succeeded", 0.0, 2.0),
        ("s/b (interrupted)", "cancelled", 2.0, 2.0),
        ("s/a (undo)", "succeeded", 10.0, 11.0),
    ]
    assert render_timeline(spans, width=11, ascii_only=True).splitlines()[0] == (
        "s/a               |##         | 0..2 succeeded"
    )
