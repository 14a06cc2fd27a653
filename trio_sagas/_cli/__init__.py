"""The ``trio-sagas`` command line (also ``python -m trio_sagas``).

An operator's view of a journal: list runs, read one, recover or compensate
runs with the application's scene definitions, check the file, list the
workers and their leases, prune finished runs. Exit status: 0 all is well, 1 something was found wrong (a damaged
journal, a failed undo, a missing run) or could not be done, 2 the command
line itself is wrong. Errors are one line on stderr; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._commands import COMMANDS
from ._journal_url import ENV_VAR, UsageError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-sagas",
        description="Inspect and operate the saga runs in a trio-sagas journal.",
        epilog=f"The journal URL may also come from ${ENV_VAR}. "
        "Exit status: 0 ok, 1 problems found, 2 usage error.",
    )
    parser.add_argument(
        "--journal",
        metavar="URL",
        help=f"sqlite:///relative.db, sqlite:////absolute.db or a file path (default ${ENV_VAR})",
    )
    parser.add_argument(
        "--codec",
        metavar="MODULE:ATTR",
        help="the application's codec for states and results (default JSON)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one line"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    runs = sub.add_parser("runs", help="list runs (oldest first)")
    runs.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only runs with this status (repeatable): running, succeeded, "
        "failed, compensated, needs_intervention",
    )
    runs.add_argument("--scene", metavar="NAME", help="only runs of this scene")
    runs.add_argument(
        "--older-than",
        metavar="DURATION",
        help="only runs whose latest write is older than this (90, 90s, 10m, 2h, 1d)",
    )
    runs.add_argument(
        "--fields",
        metavar="A,B,...",
        help="columns to show: run_id,status,scene,age,idle,worker,lease,epoch,"
        "claims,last_step",
    )
    runs.add_argument("--json", action="store_true", help="one JSON object per line")

    show = sub.add_parser("show", help="one run: record, events, errors, timeline")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--json", action="store_true", help="the entries as JSON lines")
    show.add_argument("--ascii", action="store_true", help="ASCII-only timeline")

    recover = sub.add_parser(
        "recover",
        help="roll back every RUNNING run whose worker's lease lapsed",
    )
    recover.add_argument("--app", required=True, metavar="MODULE:ATTR")
    recover.add_argument(
        "--stale-after",
        default="0",
        metavar="DURATION",
        help="extra grace: only runs not written to for this long (default 0; "
        "a run whose worker's lease is live is never taken over)",
    )

    compensate = sub.add_parser(
        "compensate",
        help="undo a FAILED run, or retry a NEEDS_INTERVENTION run's undos",
    )
    compensate.add_argument("run_id", metavar="RUN_ID")
    compensate.add_argument("--app", required=True, metavar="MODULE:ATTR")

    sub.add_parser("check", help="integrity check: every row must decode")

    workers = sub.add_parser("workers", help="workers and their leases")
    workers.add_argument(
        "--expire",
        metavar="WORKER_ID",
        help="declare this worker dead: its lease lapses now",
    )
    workers.add_argument(
        "--fields",
        metavar="A,B,...",
        help="columns to show: worker,host,pid,up,renewed,lease,running",
    )

    prune = sub.add_parser(
        "prune", help="delete finished runs (and their entries) no longer needed"
    )
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="only runs whose latest write is at least this old (90s, 10m, 2h, 30d)",
    )
    prune.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only runs with this status (repeatable): succeeded, compensated, "
        "failed (default: all three; running and needs_intervention never)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else EXIT_USAGE
    journal_url = args.journal or os.environ.get(ENV_VAR)
    try:
        if not journal_url:
            raise UsageError(f"no journal: pass --journal URL or set ${ENV_VAR}")
        return COMMANDS[args.command](journal_url, args)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"trio-sagas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("trio-sagas: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        text = str(exc) or type(exc).__name__
        print(f"trio-sagas: {text}", file=sys.stderr)
        return EXIT_PROBLEMS


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
