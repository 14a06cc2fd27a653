"""The single entry point for every developer and CI task: ``nox -s NAME``."""

from __future__ import annotations

import pathlib

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.download_python = "never"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typing"]

ROOT = pathlib.Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, *groups: str, project: bool = True) -> None:
    requirements: list[str] = []
    for group in groups:
        requirements.extend(nox.project.dependency_groups(PYPROJECT, group))
    if requirements:
        session.install(*requirements)
    if project:
        session.install("-e", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (virtual time; a few minutes at most)."""
    _install(session, "tests")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint (with the ASYNC rules) and format check."""
    _install(session, "lint", project=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on the package, the tests and the examples."""
    _install(session, "typing")
    session.run("mypy", "trio_sagas", "tests", "examples")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx site offline, warnings as errors."""
    _install(session, "docs")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Run every example in examples/, in name order."""
    _install(session)
    for script in sorted((ROOT / "examples").glob("*.py")):
        session.log(f"--- {script.name}")
        session.run("python", str(script))


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks in benchmarks/ (ratios against baselines, same run)."""
    _install(session, "bench")
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if not scripts:
        session.log("no benchmarks yet")
    for script in scripts:
        session.log(f"--- {script.name}")
        session.run("python", str(script), *session.posargs)
    if scripts:
        session.run("python", str(ROOT / "benchmarks" / "make_report.py"))
        # The timeline pictures of the docs (matplotlib is in this group).
        session.run(
            "python", str(ROOT / "examples" / "timelines.py"), "--png", "docs/_static"
        )
