"""A throwaway PostgreSQL server for the test session (a pytest plugin).

The ``pg_server`` fixture (session scope) yields a :class:`PgServer`:
``TRIO_SAGAS_POSTGRES_DSN`` when set, else a cluster started here with
``initdb`` + ``pg_ctl`` from the PostgreSQL binaries on the machine
(``/usr/lib/postgresql/*/bin``, or ``PG_BINDIR``), in a fresh temp directory
holding data, log and unix socket (no TCP listener), stopped and removed at
the end of the session. As root it runs them as the ``postgres`` user
(PostgreSQL refuses root), in a directory that user owns, so it works from a
checkout ``postgres`` cannot read. ``fsync`` is off (a throwaway cluster:
commits still survive a server crash or ``pg_ctl -m immediate``, not an OS
crash); ``synchronous_commit`` stays on.

No server to be had: the PostgreSQL tests are skipped with a one-line reason,
unless ``TRIO_SAGAS_REQUIRE_POSTGRES=1`` (CI sets it), which makes that a
failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import attrs
import pytest

DSN_VARIABLE = "TRIO_SAGAS_POSTGRES_DSN"
REQUIRE_VARIABLE = "TRIO_SAGAS_REQUIRE_POSTGRES"


@attrs.define
class PgServer:
    """A server the tests may use (and, when started here, restart)."""

    dsn: str
    data_dir: pathlib.Path | None = None
    bindir: pathlib.Path | None = None
    owner: str | None = None

    def new_schema(self) -> str:
        """A schema name no other test uses (each test gets its own tables)."""
        return f"t_{uuid.uuid4().hex[:12]}"

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on the throwaway cluster (restart it, kill it)."""
        if self.data_dir is None or self.bindir is None:
            pytest.skip(
                "the server was given (TRIO_SAGAS_POSTGRES_DSN), not started here"
            )
        # -l: a (re)started server must not inherit our pipes.
        log = str(self.data_dir.parent / "server.log")
        _as_owner(
            self.owner, str(self.bindir / "pg_ctl"), "-D", str(self.data_dir),
            "-l", log, *args,
        )  # fmt: skip


def _as_owner(owner: str | None, *command: str) -> subprocess.CompletedProcess[str]:
    if owner is not None:
        command = ("runuser", "-u", owner, "--", *command)
    return subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=120
    )


def _bindir() -> pathlib.Path | None:
    given = os.environ.get("PG_BINDIR")
    candidates = [given] if given else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    for candidate in reversed(candidates):
        path = pathlib.Path(candidate)
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    found = shutil.which("pg_ctl")
    return pathlib.Path(found).parent if found else None


def start_server(*, durable: bool = False) -> tuple[PgServer, pathlib.Path]:
    """Start a throwaway cluster; return it and the directory to remove.

    *durable*: keep ``fsync`` on (benchmarks); tests run with it off.
    """
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) found")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "running as root and there is no 'postgres' user"
            ) from None
        owner = "postgres"
    top = pathlib.Path(tempfile.mkdtemp(prefix="trio_sagas_pg_"))
    top.chmod(0o700)
    if owner is not None:
        shutil.chown(top, owner, owner)
    data = top / "data"
    try:
        _as_owner(
            owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--locale=C", "-N", "--no-instructions",
        )  # fmt: skip
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = ''\nport = 5432\n"
                f"unix_socket_directories = '{top}'\nmax_connections = 200\n"
            )
            if not durable:
                conf.write("fsync = off\nfull_page_writes = off\n")
        _as_owner(
            owner, str(bindir / "pg_ctl"), "-D", str(data), "-l",
            str(top / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        log = top / "server.log"
        detail = getattr(exc, "stderr", "") or (log.read_text() if log.exists() else "")
        shutil.rmtree(top, ignore_errors=True)
        raise RuntimeError(
            f"could not start PostgreSQL: {exc} {detail}".strip()
        ) from None
    dsn = f"host={top} port=5432 user=postgres dbname=postgres"
    return PgServer(dsn=dsn, data_dir=data, bindir=bindir, owner=owner), top


def stop_server(server: PgServer, top: pathlib.Path) -> None:
    """Stop the cluster (fast) and remove its directory."""
    try:
        server.pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
    except subprocess.SubprocessError:
        with contextlib.suppress(subprocess.SubprocessError):
            server.pg_ctl("-m", "immediate", "stop")
    shutil.rmtree(top, ignore_errors=True)


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"PostgreSQL required ({REQUIRE_VARIABLE}=1) but {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (given, or started here)."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed")
    given = os.environ.get(DSN_VARIABLE)
    if given:
        try:
            psycopg.connect(given, connect_timeout=5).close()
        except psycopg.Error as exc:
            _unavailable(f"{DSN_VARIABLE} does not connect: {exc}")
        yield PgServer(dsn=given)
        return
    try:
        server, top = start_server()
    except RuntimeError as exc:
        _unavailable(str(exc).splitlines()[0])
    try:
        yield server
    finally:
        stop_server(server, top)
