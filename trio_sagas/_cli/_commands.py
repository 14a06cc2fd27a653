"""The subcommands of ``trio-sagas``; each returns the exit status.

The journal is read through its public interface (so every backend works),
except by ``check``, which examines a SQLite file directly and read-only.
What the CLI reads of a run record or a worker record is gathered in
:func:`run_fields` and :func:`._leases.worker_fields`, the one place to
adapt when those records change. ``workers`` and ``prune`` live in
:mod:`._leases`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._journal_entries import entry_detail, wall_times
from .._outcome import describe_error
from .._saga import JournalEntry, Scene, compensate_run, recover
from .._saga import _events as se
from .._timeline import render_timeline
from ._check import check_file
from ._journal_url import (
    UsageError,
    format_age,
    load_attr,
    parse_duration,
    sqlite_path,
)
from ._leases import (
    NOW_VAR as NOW_VAR,
)
from ._leases import (
    cmd_prune,
    cmd_workers,
    codec,
    lease_of,
    lease_text,
    now,
    statuses,
    table,
    with_journal,
    workers_by_id,
)

FIELDS = (
    "run_id",
    "status",
    "scene",
    "age",
    "idle",
    "worker",
    "lease",
    "epoch",
    "claims",
    "last_step",
)


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


def cmd_runs(url: str, args: argparse.Namespace) -> int:
    """``runs``: one line per run, oldest first."""
    wanted = statuses(args.status)
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
    at = now()

    async def body(journal: Any) -> list[tuple[dict[str, Any], str | None]]:
        workers = await workers_by_id(journal)
        out = []
        for record in await journal.runs(status=wanted):
            info = run_fields(record)
            if args.scene is not None and info["scene"] != args.scene:
                continue
            if older is not None and at - info["updated_at"] < older:
                continue
            info["lease"] = lease_of(info["worker"], workers, at)
            try:
                last = _last_step(await journal.events(record.run_id))
            except Exception:  # one damaged run must not hide the others
                last = "(entries unreadable: run `trio-sagas check`)"
            out.append((info, last))
        return out

    rows = with_journal(url, args, body)
    if args.json:
        for info, last in rows:
            print(json.dumps({**info, "last_step": last}))
        return 0
    if not rows:
        print("no runs")
        return 0
    lines = [[f.upper().replace("_", " ") for f in fields]]
    for info, last in rows:
        cells = {
            "run_id": info["run_id"],
            "status": info["status"],
            "scene": info["scene"],
            "age": format_age(at - info["created_at"]),
            "idle": format_age(at - info["updated_at"]),
            "worker": info["worker"] or "-",
            "lease": info["lease"],
            "epoch": "-" if info["epoch"] is None else str(info["epoch"]),
            "claims": "-" if info["claims"] is None else str(info["claims"]),
            "last_step": last or "-",
        }
        lines.append([cells[f] for f in fields])
    print(table(lines))
    return 0


def _last_step(events: Sequence[JournalEntry]) -> str | None:
    """``"ActFailed order/charge"``: the latest entry about a step."""
    for entry in reversed(events):
        if entry.kind.startswith(("Act", "Compensation", "Chorus")):
            return f"{entry.kind} {entry.step}"
    return f"{events[-1].kind} {events[-1].step}" if events else None


def cmd_show(url: str, args: argparse.Namespace) -> int:
    """``show RUN_ID``: the record, the state, every entry, errors, the timeline."""
    the_codec = codec(args)

    at = now()

    async def body(journal: Any) -> tuple[Any, Any, tuple[JournalEntry, ...]]:
        record = await journal.get_run(args.run_id)
        if record is None:
            return None, None, ()
        workers = await workers_by_id(journal)
        try:
            return record, workers, await journal.events(args.run_id)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"run {args.run_id!r}: its entries do not decode ({exc}); "
                "run `trio-sagas check`"
            ) from exc

    record, workers, entries = with_journal(url, args, body)
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
    holder = None if workers is None else workers.get(info["worker"])
    lease = lease_of(info["worker"], workers, at)
    if holder is not None:
        lease = lease_text(holder.expires_at, at)
    print(f"lease    {lease}")
    print(f"epoch    {info['epoch']} (claimed {info['claims']} time(s))")
    try:
        state = (
            json.dumps(the_codec.decode(record.state))
            if record.state is not None
            else "-"
        )
    except Exception as exc:
        state = f"(does not decode: {describe_error(exc)})"
    print(f"state    {state}")
    print()
    print("events")
    times = wall_times(entries)
    lines = [["SEQ", "T+", "EVENT", "STEP", "DETAIL"]]
    for entry, offset in zip(entries, times, strict=True):
        lines.append(
            [
                str(entry.seq),
                f"{offset:.3f}",
                entry.kind,
                entry.step,
                entry_detail(entry),
            ]
        )
    print(table(lines) if entries else "  (none)")
    errors = [e for e in entries if e.kind in _STEP_FAILURES]
    if errors:
        print()
        print("errors")
        for entry in errors:
            print(f"  {entry.step}: {entry_detail(entry)}")
    print()
    print("timeline (seconds since the run started)")
    print(render_timeline(entries, ascii_only=args.ascii))
    return 0


_STEP_FAILURES = frozenset(
    kind.__name__ for kind in (se.ActFailed, se.ActCancelled, se.CompensationStepFailed)
)


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
    report = with_journal(
        url,
        args,
        lambda journal: recover(journal, scenes, stale_after=stale_after),
        worker=True,
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
    result = with_journal(
        url,
        args,
        lambda journal: compensate_run(journal, args.run_id, scenes),
        worker=True,
    )
    return 0 if _print_result(result) else 1


def cmd_check(url: str, args: argparse.Namespace) -> int:
    """``check``: SQLite's integrity check and every row decoded."""
    path = sqlite_path(url)
    if path is None:
        raise UsageError("check examines SQLite journals (sqlite:///path)")
    if not path.exists():
        raise FileNotFoundError(f"journal {str(path)!r} does not exist")
    damage = check_file(path, codec(args))
    if not damage:
        print(f"{path}: ok")
        return 0
    runs = sorted({d.run_id for d in damage if d.run_id is not None})
    print(f"{path}: {len(damage)} problem(s), {len(runs)} damaged run(s)")
    for item in damage:
        print(f"  {item.run_id or '(file)'}: {item.problem}")
    return 1


COMMANDS: dict[str, Callable[[str, argparse.Namespace], int]] = {
    "runs": cmd_runs,
    "show": cmd_show,
    "recover": cmd_recover,
    "compensate": cmd_compensate,
    "check": cmd_check,
    "workers": cmd_workers,
    "prune": cmd_prune,
}
