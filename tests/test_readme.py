"""The README's first example is complete, runnable, and prints what it shows."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.M | re.S)


def test_first_example_is_the_quickstart_file() -> None:
    """The README's first Python block is examples/quickstart.py, docstring aside."""
    script = (ROOT / "examples" / "quickstart.py").read_text()
    code = script.split('"""', 2)[2].lstrip("\n")
    assert _fenced("python")[0] == code


def test_first_example_prints_what_the_readme_shows() -> None:
    """Run as a script, the first example prints exactly the README's text block."""
    done = subprocess.run(
        [sys.executable, "-c", _fenced("python")[0]],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == _fenced("text")[0]
