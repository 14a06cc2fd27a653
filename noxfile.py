"""The single entry point for every developer and CI task: ``nox -s NAME``."""

from __future__ import annotations

import glob
import os
import pathlib
import shutil
import subprocess

import nox

nox.options.default_venv_backend = "uv|venv"
nox.options.download_python = "never"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typing"]

ROOT = pathlib.Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
SUPPORTED = ("3.11", "3.12", "3.13")


def _pythons() -> list[str]:
    """The supported interpreters this machine has (nox never downloads one).

    pyenv installs are added to PYENV_VERSION, since its shims only answer
    for the selected versions.
    """
    pyenv = pathlib.Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser()
    if (pyenv / "versions").is_dir():
        selected = [v for v in os.environ.get("PYENV_VERSION", "").split(":") if v]
        for version in SUPPORTED:
            for path in sorted(glob.glob(str(pyenv / "versions" / f"{version}.*"))):
                if pathlib.Path(path).name not in selected:
                    selected.append(pathlib.Path(path).name)
        if selected:
            os.environ["PYENV_VERSION"] = ":".join(selected)
    found = []
    for version in SUPPORTED:
        exe = shutil.which(f"python{version}")
        if exe is None:
            continue
        ran = subprocess.run([exe, "-c", "pass"], capture_output=True, check=False)
        if ran.returncode == 0:
            found.append(version)
    return found


PYTHONS = _pythons()
MISSING = [version for version in SUPPORTED if version not in PYTHONS]
if MISSING and __name__ != "__main__":
    print(f"nox: no Python {', '.join(MISSING)} on this machine; sessions skip it")


def _install(session: nox.Session, *groups: str, project: bool = True) -> None:
    requirements: list[str] = []
    for group in groups:
        requirements.extend(nox.project.dependency_groups(PYPROJECT, group))
    if requirements:
        session.install(*requirements)
    if project:
        session.install("-e", ".")


@nox.session(python=PYTHONS or None)
def tests(session: nox.Session) -> None:
    """Run the test suite on every supported Python this machine has."""
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
    # Screenshots of the pages people look at first, to be looked at (the
    # text timelines must keep their columns in a real browser).
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        session.log("no chromium: no screenshots (apt-get install chromium)")
        return
    shots = ROOT / "docs" / "_build" / "screenshots"
    shots.mkdir(exist_ok=True)
    for page in ("index", "timelines", "performance"):
        html = ROOT / "docs" / "_build" / "html" / f"{page}.html"
        session.run(
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={session.create_tmp()}/chromium",
            "--window-size=1300,2600",
            f"--screenshot={shots / page}.png",
            html.as_uri(),
            external=True,
            silent=True,
        )
    session.log(f"screenshots in {shots.relative_to(ROOT)}")


@nox.session
def demo(session: nox.Session) -> None:
    """Run every example in examples/, in name order."""
    _install(session)
    # The PostgreSQL and OpenTelemetry examples need their extras.
    session.install("-e", ".[postgres,otel]")
    for script in sorted((ROOT / "examples").glob("*.py")):
        session.log(f"--- {script.name}")
        session.run("python", str(script))


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (ratios against baselines, measured in the same run).

    ``nox -s bench`` refreshes benchmarks/results/ and every figure the README
    and docs quote; ``nox -s bench -- --quick`` is a smoke run (under a minute)
    writing to benchmarks/scratch/ only. Other arguments pick scripts by name
    (``nox -s bench -- saga journal``).
    """
    _install(session, "bench")
    quick = "--quick" in session.posargs
    names = [arg for arg in session.posargs if not arg.startswith("-")]
    scripts = [
        script
        for script in sorted((ROOT / "benchmarks").glob("bench_*.py"))
        if not names or any(name in script.stem for name in names)
    ]
    for script in scripts:
        session.log(f"--- {script.name}")
        session.run("python", str(script), *(["--quick"] if quick else []))
    if quick or not scripts:
        session.log("smoke run: results in benchmarks/scratch/, no figure changed")
        return
    session.run("python", str(ROOT / "benchmarks" / "make_report.py"))
    session.run("python", str(ROOT / "benchmarks" / "figures.py"))
    # The timeline pictures of the docs (matplotlib is in this group).
    session.run(
        "python", str(ROOT / "examples" / "timelines.py"), "--png", "docs/_static"
    )


@nox.session
def build(session: nox.Session) -> None:
    """Build the wheel and sdist into dist/, then install the wheel in a fresh venv."""
    session.install("build>=1.2")
    shutil.rmtree(ROOT / "dist", ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", "dist", str(ROOT))
    wheels = sorted((ROOT / "dist").glob("trio_sagas-*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in dist/, found {wheels}")
    check = pathlib.Path(session.create_tmp()) / "wheel-check"
    shutil.rmtree(check, ignore_errors=True)
    session.run("python", "-m", "venv", str(check))
    python = str(check / "bin" / "python")
    session.run(python, "-m", "pip", "install", "--quiet", str(wheels[0]))
    session.run(
        python,
        "-c",
        "import trio_sagas, trio; print('installed trio-sagas', trio_sagas.__version__)",
        external=True,
    )


@nox.session
def mutate(session: nox.Session) -> None:
    """Mutation testing of the critical modules (not in CI: minutes, not seconds).

    Prints the kill rate and every surviving mutant; arguments go to
    tools/mutate.py (``nox -s mutate -- compensation --all``).
    """
    _install(session, "tests")
    session.run("python", str(ROOT / "tools" / "mutate.py"), *session.posargs)
