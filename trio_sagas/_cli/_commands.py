"""The subcommands of ``trio-sagas``; each returns the exit status.

The journal is read through its public interface (so every backend works),
except by ``check``, which examines a SQLite file directly and read-only.
What the CLI reads of a run record or a worker record is gathered in
:func:`run_fields` and :func:`worker_fields`, the one place to adapt when
those records change.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import trio

from .._outcome import describe_error
from .._saga import JournalEntry, JSONCodec, RunStatus, Scene, compensate_run, recover
from .._timeline import render_timeline
from ._check import check_file
from ._entries import entry_detail, timeline_from_entries, wall_times
from ._journal_url import (
    UsageError,
    format_age,
    load_attr,
    open_journal,
    parse_duration,
    sqlite_path,
)

NOW_VAR = "TRIO_SAGAS_NOW"
"""Unix time the report treats as *now* (reproducible output in docs and tests)."""

FIELDS = ("run_id", "status", "scene", "age", "idle", "worker", "last_step")


def _now() -> float:
    text = os.environ.get(NOW_VAR)
    if not text:
        return time.time()
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"${NOW_VAR} must be a Unix time, got {text!r}") from None


def run_fields(record: Any) -> dict[str, Any]:
    """What the CLI shows of a :class:`RunRecord` (``worker`` or ``owner``)."""
    worker = getattr(record, "worker", None) or getattr(record, "owner", None)
    return {
        "run_id": record.run_id,
        "status": record.status.value,
        "scene": record.scene,
        "worker": worker,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "last_seq": record.last_seq,
        "epoch": getattr(record, "epoch", None),
        "claims": getattr(record, "claims", None),
    }


def worker_fields(worker: Any, now: float) -> dict[str, Any]:
    """What the CLI shows of a worker record."""
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": worker.started_at,
        "renewed_at": worker.renewed_at,
        "expires_at": worker.expires_at,
        "live": worker.expires_at > now,
    }


def _codec(args: argparse.Namespace) -> Any:
    return JSONCodec() if args.codec is None else load_attr(args.codec, "--codec")


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def _with_journal(
    url: str, args: argparse.Namespace, body: Callable[[Any], Any]
) -> Any:
    journal = open_journal(url, _codec(args))

    async def main() -> Any:
        try:
            return await body(journal)
        finally:
            close = getattr(journal, "aclose", None) or getattr(journal, "close", None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result

    return trio.run(main)


def _statuses(names: Iterable[str] | None) -> list[RunStatus] | None:
    if not names:
        return None
    out = []
    for name in names:
        try:
            out.append(RunStatus(name.lower()))
        except ValueError:
            choices = ", ".join(s.value for s in RunStatus)
            raise UsageError(
                f"--status must be one of {choices}, got {name!r}"
            ) from None
    return out


def cmd_runs(url: str, args: argparse.Namespace) -> int:
    """``runs``: one line per run, oldest first."""
    statuses = _statuses(args.status)
    older = None
    if args.older_than is not None:
        older = parse_duration(args.older_than, "--older-than")
    fields = FIELDS
    if args.fields:
        fields = tuple(f.strip() for f in args.fields.split(","))
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise UsageError(
                f"--fields: unknown field {unknown[0]!r} (use {','.join(FIELDS)})"
            )
    now = _now()

    async def body(journal: Any) -> list[tuple[dict[str, Any], str | None]]:
        out = []
        for record in await journal.runs(status=statuses):
            info = run_fields(record)
            if args.scene is not None and info["scene"] != args.scene:
                continue
            if older is not None and now - info["updated_at"] < older:
                continue
            try:
                last = _last_step(await journal.events(record.run_id))
            except Exception:  # one damaged run must not hide the others
                last = "(entries unreadable: run `trio-sagas check`)"
            out.append((info, last))
        return out

    rows = _with_journal(url, args, body)
    if args.json:
        for info, last in rows:
            print(json.dumps({**info, "last_step": last}))
        return 0
    if not rows:
        print("no runs")
        return 0
    table = [[f.upper().replace("_", " ") for f in fields]]
    for info, last in rows:
        cells = {
            "run_id": info["run_id"],
            "status": info["status"],
            "scene": info["scene"],
            "age": format_age(now - info["created_at"]),
            "idle": format_age(now - info["updated_at"]),
            "worker": info["worker"] or "-",
            "last_step": last or "-",
        }
        table.append([cells[f] for f in fields])
    print(_table(table))
    return 0


def _last_step(events: Sequence[JournalEntry]) -> str | None:
    """``"ActFailed order/charge"``: the latest entry about a step."""
    for entry in reversed(events):
        if entry.kind.startswith(("Act", "Compensation", "Chorus")):
            return f"{entry.kind} {entry.step}"
    return f"{events[-1].kind} {events[-1].step}" if events else None


def cmd_show(url: str, args: argparse.Namespace) -> int:
    """``show RUN_ID``: the record, the state, every entry, errors, the timeline."""
    codec = _codec(args)

    async def body(journal: Any) -> tuple[Any, tuple[JournalEntry, ...]]:
        record = await journal.get_run(args.run_id)
        if record is None:
            return None, ()
        try:
            return record, await journal.events(args.run_id)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"run {args.run_id!r}: its entries do not decode ({exc}); "
                "run `trio-sagas check`"
            ) from exc

    record, entries = _with_journal(url, args, body)
    if record is None:
        raise LookupError(f"no run {args.run_id!r} in the journal")
    if args.json:
        for entry in entries:
            print(json.dumps(_entry_json(entry)))
        return 0
    info = run_fields(record)
    print(f"run      {info['run_id']}")
    print(f"scene    {info['scene']}")
    print(f"status   {info['status']}")
    print(f"worker   {info['worker'] or '-'}")
    try:
        state = (
            json.dumps(codec.decode(record.state)) if record.state is not None else "-"
        )
    except Exception as exc:
        state = f"(does not decode: {describe_error(exc)})"
    print(f"state    {state}")
    print()
    print("events")
    times = wall_times(entries)
    table = [["SEQ", "T+", "EVENT", "STEP", "DETAIL"]]
    for entry, at in zip(entries, times, strict=True):
        table.append(
            [str(entry.seq), f"{at:.3f}", entry.kind, entry.step, entry_detail(entry)]
        )
    print(_table(table) if entries else "  (none)")
    errors = [e for e in entries if e.kind in _STEP_FAILURES]
    if errors:
        print()
        print("errors")
        for entry in errors:
            print(f"  {entry.step}: {entry_detail(entry)}")
    print()
    print("timeline (seconds since the run started)")
    print(render_timeline(timeline_from_entries(entries), ascii_only=args.ascii))
    return 0


_STEP_FAILURES = frozenset({"ActFailed", "ActCancelled", "CompensationStepFailed"})


def _entry_json(entry: JournalEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "step": entry.step,
        "at": entry.at,
        "written_at": entry.written_at,
        "data": dict(entry.data),
    }


def _scenes(reference: str) -> list[Scene]:
    value = load_attr(reference, "--app")
    if isinstance(value, Scene):
        return [value]
    items = value.values() if isinstance(value, Mapping) else value
    try:
        scenes = list(items)
    except TypeError:
        raise UsageError(
            f"--app {reference!r} must name a Scene, a mapping or a list of "
            f"scenes, got {type(value).__name__}"
        ) from None
    bad = [s for s in scenes if not isinstance(s, Scene)]
    if bad:
        raise UsageError(f"--app {reference!r}: {bad[0]!r} is not a Scene")
    return scenes


def _print_result(result: Any) -> bool:
    """Print one rolled-back run; returns whether every undo succeeded."""
    report = result.compensation
    outcomes = () if report is None else report.outcomes
    ok = report is None or report.ok
    verdict = "compensated" if ok else "needs intervention"
    print(f"{result.run_id}: {verdict} ({len(outcomes)} undo(s))")
    for outcome in outcomes:
        detail = "" if outcome.error is None else f": {describe_error(outcome.error)}"
        print(f"  undo {outcome.name}  {outcome.status.value}{detail}")
    return ok


def cmd_recover(url: str, args: argparse.Namespace) -> int:
    """``recover --app``: roll back every RUNNING run, print the report."""
    scenes = _scenes(args.app)
    stale_after = parse_duration(args.stale_after, "--stale-after")
    report = _with_journal(
        url, args, lambda journal: recover(journal, scenes, stale_after=stale_after)
    )
    if not report.results and not report.skipped:
        print("nothing to recover")
        return 0
    ok = all([_print_result(result) for result in report.results])
    for skipped in report.skipped:
        print(f"{skipped.run_id}: skipped ({skipped.scene}): {skipped.reason}")
    return 0 if ok and not report.skipped else 1


def cmd_compensate(url: str, args: argparse.Namespace) -> int:
    """``compensate RUN_ID --app``: undo a failed run, print the report."""
    scenes = _scenes(args.app)
    result = _with_journal(
        url, args, lambda journal: compensate_run(journal, args.run_id, scenes)
    )
    return 0 if _print_result(result) else 1


def cmd_check(url: str, args: argparse.Namespace) -> int:
    """``check``: SQLite's integrity check and every row decoded."""
    path = sqlite_path(url)
    if path is None:
        raise UsageError("check examines SQLite journals (sqlite:///path)")
    if not path.exists():
        raise FileNotFoundError(f"journal {str(path)!r} does not exist")
    damage = check_file(path, _codec(args))
    if not damage:
        print(f"{path}: ok")
        return 0
    runs = sorted({d.run_id for d in damage if d.run_id is not None})
    print(f"{path}: {len(damage)} problem(s), {len(runs)} damaged run(s)")
    for item in damage:
        print(f"  {item.run_id or '(file)'}: {item.problem}")
    return 1


def cmd_workers(url: str, args: argparse.Namespace) -> int:
    """``workers``: every worker and its lease; ``--expire`` declares one dead."""
    now = _now()

    async def body(journal: Any) -> Any:
        if not hasattr(journal, "workers"):
            return None
        if args.expire is not None:
            return await journal.expire_worker(args.expire)
        return await journal.workers()

    result = _with_journal(url, args, body)
    if result is None:
        print(
            "trio-sagas: this journal has no worker leases (its backend predates them)"
        )
        return 1
    if args.expire is not None:
        if not result:
            raise LookupError(f"no worker {args.expire!r} in the journal")
        print(f"worker {args.expire}: lease expired; its runs can be claimed now")
        return 0
    if not result:
        print("no workers")
        return 0
    table = [["WORKER", "HOST", "PID", "UP", "RENEWED", "LEASE"]]
    for worker in result:
        info = worker_fields(worker, now)
        lease = (
            f"live, {format_age(info['expires_at'] - now)} left"
            if info["live"]
            else f"lapsed {format_age(now - info['expires_at'])} ago"
        )
        table.append(
            [
                info["worker_id"],
                info["host"],
                str(info["pid"]),
                format_age(now - info["started_at"]),
                f"{format_age(now - info['renewed_at'])} ago",
                lease,
            ]
        )
    print(_table(table))
    return 0


COMMANDS: dict[str, Callable[[str, argparse.Namespace], int]] = {
    "runs": cmd_runs,
    "show": cmd_show,
    "recover": cmd_recover,
    "compensate": cmd_compensate,
    "check": cmd_check,
    "workers": cmd_workers,
}
