"""Opening the journal for a command, the clock of the report, and the
commands about workers and retention: ``workers`` and ``prune``.

Read-only commands use the journal without registering a worker; commands
that take runs over (``recover``, ``compensate``) enter it with ``async
with``, so the command line is a worker for as long as it runs and its
registration is removed when it exits.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import trio

from .._saga import JSONCodec, RunStatus
from ._journal_url import (
    UsageError,
    format_age,
    load_attr,
    open_journal,
    parse_duration,
)

NOW_VAR = "TRIO_SAGAS_NOW"
"""Unix time the report treats as *now* (reproducible output in docs and tests).
It changes what is printed only: leases and ``prune`` use the journal's clock."""

WORKER_FIELDS = ("worker", "host", "pid", "up", "renewed", "lease", "running")

PRUNABLE = (RunStatus.SUCCEEDED, RunStatus.COMPENSATED, RunStatus.FAILED)


def now() -> float:
    """The report's *now*: ``$TRIO_SAGAS_NOW`` or the wall clock."""
    text = os.environ.get(NOW_VAR)
    if not text:
        return time.time()
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"${NOW_VAR} must be a Unix time, got {text!r}") from None


def codec(args: argparse.Namespace) -> Any:
    """The application's codec (``--codec``), else JSON."""
    return JSONCodec() if args.codec is None else load_attr(args.codec, "--codec")


def with_journal(
    url: str,
    args: argparse.Namespace,
    body: Callable[[Any], Awaitable[Any]],
    *,
    worker: bool = False,
) -> Any:
    """Run ``body(journal)`` in trio, then close the journal.

    With *worker*, the journal is entered (``async with``): registered as a
    worker, its lease renewed while *body* runs, unregistered at the end.
    """
    journal = open_journal(url, codec(args))

    async def main() -> Any:
        if worker and hasattr(journal, "__aenter__"):
            async with journal:
                return await body(journal)
        try:
            return await body(journal)
        finally:
            close = getattr(journal, "aclose", None) or getattr(journal, "close", None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result

    return trio.run(main)


def statuses(names: Iterable[str] | None) -> list[RunStatus] | None:
    """``--status`` values as :class:`RunStatus` (None: not given)."""
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


def table(rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, two spaces apart (trailing blanks stripped)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def worker_fields(worker: Any, at: float) -> dict[str, Any]:
    """What the CLI shows of a :class:`WorkerRecord`."""
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": worker.started_at,
        "renewed_at": worker.renewed_at,
        "expires_at": worker.expires_at,
        "live": worker.expires_at > at,
    }


def lease_text(expires_at: float, at: float) -> str:
    """``live, 12s left`` or ``lapsed 9m ago``."""
    if expires_at > at:
        return f"live, {format_age(expires_at - at)} left"
    return f"lapsed {format_age(at - expires_at)} ago"


def lease_of(
    worker_id: str | None, workers: Mapping[str, Any] | None, at: float
) -> str:
    """The lease a run's worker holds: ``live``, ``lapsed``, ``gone`` (its
    row was removed) or ``-`` (no worker: the run is finished, or the
    journal has no leases)."""
    if worker_id is None or workers is None:
        return "-"
    worker = workers.get(worker_id)
    if worker is None:
        return "gone"
    return "live" if worker.expires_at > at else "lapsed"


async def workers_by_id(journal: Any) -> dict[str, Any] | None:
    """The journal's workers by id; None when its backend has no leases."""
    if not hasattr(journal, "workers"):
        return None
    return {w.worker_id: w for w in await journal.workers()}


def cmd_workers(url: str, args: argparse.Namespace) -> int:
    """``workers``: every worker, its lease and its running runs;
    ``--expire`` declares one dead."""
    fields = WORKER_FIELDS
    if args.fields:
        fields = tuple(f.strip() for f in args.fields.split(","))
        unknown = [f for f in fields if f not in WORKER_FIELDS]
        if unknown:
            raise UsageError(
                f"--fields: unknown field {unknown[0]!r} (use {','.join(WORKER_FIELDS)})"
            )
    at = now()

    async def body(journal: Any) -> Any:
        if not hasattr(journal, "workers"):
            return None
        if args.expire is not None:
            if await journal.expire_worker(args.expire):
                return True
            # Not live: say whether it had lapsed already or is unknown.
            return (await workers_by_id(journal) or {}).get(args.expire, False)
        held: dict[str | None, int] = {}
        for record in await journal.runs(status=[RunStatus.RUNNING]):
            held[record.owner] = held.get(record.owner, 0) + 1
        return [
            (worker, held.get(worker.worker_id, 0))
            for worker in await journal.workers()
        ]

    result = with_journal(url, args, body)
    if result is None:
        print(
            "trio-sagas: this journal has no worker leases (its backend predates them)"
        )
        return 1
    if args.expire is not None:
        if result is False:
            raise LookupError(f"no worker {args.expire!r} in the journal")
        if result is True:
            print(f"worker {args.expire}: lease expired; its runs can be claimed now")
        else:
            print(
                f"worker {args.expire}: lease already "
                f"{lease_text(result.expires_at, at)}; its runs can be claimed"
            )
        return 0
    if not result:
        print("no workers")
        return 0
    rows = [[f.upper() for f in fields]]
    for worker, running in result:
        info = worker_fields(worker, at)
        cells = {
            "worker": info["worker_id"],
            "host": info["host"],
            "pid": str(info["pid"]),
            "up": format_age(at - info["started_at"]),
            "renewed": f"{format_age(at - info['renewed_at'])} ago",
            "lease": lease_text(info["expires_at"], at),
            "running": str(running),
        }
        rows.append([cells[f] for f in fields])
    print(table(rows))
    return 0


def cmd_prune(url: str, args: argparse.Namespace) -> int:
    """``prune --older-than``: delete finished runs last written that long ago."""
    older_than = parse_duration(args.older_than, "--older-than")
    wanted = statuses(args.status) or list(PRUNABLE)
    kept = [s.value for s in wanted if s not in PRUNABLE]
    if kept:
        raise UsageError(
            f"--status: {', '.join(kept)} runs are never pruned "
            "(a running run may be live; one needing intervention awaits an operator)"
        )

    async def body(journal: Any) -> int:
        deleted: int = await journal.prune(older_than=older_than, statuses=wanted)
        return deleted

    deleted = with_journal(url, args, body)
    names = ", ".join(s.value for s in wanted)
    print(
        f"pruned {deleted} run(s) ({names}) not written to for "
        f"{format_age(older_than)} or more"
    )
    return 0
