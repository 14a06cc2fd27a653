"""Every Python code block in docs/ runs, and its printed output is checked.

Convention: all ``.. code-block:: python`` blocks of one page run in order in
one namespace. A ``.. code-block:: text`` block that directly follows a
Python block is that block's exact expected output.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).parent.parent / "docs"
_BLOCK = re.compile(
    r"^\.\. code-block:: (\w+)\s*\n((?:[ \t]+:.*\n)*)\n((?:(?:[ \t]+.*)?\n)+)", re.M
)


def _blocks(text: str) -> list[tuple[str, str]]:
    out = []
    for match in _BLOCK.finditer(text):
        body = match.group(3)
        lines = body.split("\n")
        indent = min(
            (len(line) - len(line.lstrip()) for line in lines if line.strip()),
            default=0,
        )
        code = "\n".join(line[indent:] for line in lines).strip("\n") + "\n"
        out.append((match.group(1), code))
    return out


PAGES = sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)


def _page_id(page: pathlib.Path) -> str:
    return str(page.relative_to(DOCS))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_doc_page_code_runs(page: pathlib.Path) -> None:
    """The page's Python blocks run in order and print exactly the text blocks after them."""
    blocks = _blocks(page.read_text())
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    previous_stdout: str | None = None
    for language, code in blocks:
        if language == "python":
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(code, f"{page.name}", "exec"), namespace)
            previous_stdout = buffer.getvalue()
        elif language == "text" and previous_stdout is not None:
            expected = [line.rstrip() for line in code.strip("\n").splitlines()]
            actual = [
                line.rstrip() for line in previous_stdout.strip("\n").splitlines()
            ]
            assert actual == expected, f"{page.name}: output differs"
            previous_stdout = None
        else:
            previous_stdout = None


def test_doc_harness_finds_blocks() -> None:
    """The block parser sees python and text blocks with their options."""
    text = (
        "Intro\n\n.. code-block:: python\n   :caption: x\n\n   print(1)\n\n"
        "   print(2)\n\n.. code-block:: text\n\n   1\n   2\n\nEnd\n"
    )
    assert _blocks(text) == [("python", "print(1)\n\nprint(2)\n"), ("text", "1\n2\n")]
