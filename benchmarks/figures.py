# ruff: noqa: RUF001, RUF002  (the pages quote figures with the multiplication sign)
"""Every figure quoted in README.md and docs/ comes from benchmarks/results/.

A page never types a measured number. It names it:

- in reStructuredText, as a substitution ``|errgroup.nursery.ratio|``, defined
  in ``docs/_generated/figures.rst`` (written here, read by ``docs/conf.py``);
- in README.md, between markers ``<!--fig errgroup.nursery.ratio-->1.30×<!--/fig-->``,
  whose text this script rewrites.

A reference is ``SUITE.ROW.FIELD`` (a row of ``results/SUITE.json`` by its
``key``) or ``SUITE.extra.PATH.TO.VALUE`` (a key of ``extra`` written in words, such as
``"no hedging"``, is named by its slug: ``no_hedging``). The field's name picks
the format:
``ratio*`` → ``1.30×`` (``26.3×``, ``897×``), ``*_us`` → ``2.4 µs``, ``*_ms`` → ``33.2 ms``,
``*_per_s`` → ``1,350/s``, ``*_pct`` → ``4.9 %``, ``*_bytes`` → ``1.2 KiB``,
other ``*_s`` (seconds) → ``52.3 ms`` or ``1.25 s``.

``python benchmarks/figures.py`` renders both (``nox -s bench`` runs it after a
full run); ``tests/test_figures.py`` fails when a page and the results disagree,
or when a page types a figure by hand.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

ROOT = pathlib.Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SUBSTITUTIONS = DOCS / "_generated" / "figures.rst"

REF = r"[a-z][a-z0-9_]*(?:\.[A-Za-z0-9_]+)+"
RST_REF = re.compile(rf"\|({REF})\|")
README_FIG = re.compile(rf"<!--fig ({REF})-->(.*?)<!--/fig-->", re.S)

# What a hand-typed performance figure looks like in prose: a ratio, a
# per-item cost or a rate. Virtual-clock times ("t=2.0", "20 s") are not
# measurements and are not matched.
HAND_TYPED = re.compile(
    r"(?<![\w.|])~?\d[\d,.]*(?:[-–]\d[\d,.]*)?\s*"
    r"(?:[x×](?![\w])|µs\b|us\b|(?:durable\s+)?(?:steps|runs)/s|KiB\b|KB\b|MiB\b|MB\b)"
)


def _slug(words: str) -> str:
    """A key written in words as a reference names it (as _harness.slug)."""
    return re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_")


def load(results: pathlib.Path = RESULTS) -> dict[str, Any]:
    """Every results file, by suite name."""
    return {
        data["suite"]: data
        for data in (json.loads(p.read_text()) for p in sorted(results.glob("*.json")))
    }


def lookup(suites: dict[str, Any], ref: str) -> Any:
    """The value a reference names; KeyError naming the reference if none."""
    suite, *path = ref.split(".")
    if suite not in suites:
        raise KeyError(f"{ref}: no results for suite {suite!r}")
    data = suites[suite]
    if path[0] == "extra":
        node: Any = data["extra"]
        for part in path[1:]:
            if isinstance(node, dict) and part not in node:
                named = [k for k in node if _slug(str(k)) == part]
                part = named[0] if len(named) == 1 else part
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"{ref}: {part!r} not in {suite}.json's extra")
            node = node[part]
        return node
    key, field = ".".join(path[:-1]), path[-1]
    for row in data["rows"]:
        if row.get("key") == key:
            if field not in row:
                raise KeyError(f"{ref}: row {key!r} has no field {field!r}")
            return row[field]
    raise KeyError(f"{ref}: no row with key {key!r} in {suite}.json")


def fmt(ref: str, value: Any) -> str:
    """The value as a page shows it, formatted by the field's name."""
    field = ref.rsplit(".", 1)[-1]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if field.startswith("ratio") or field.endswith("_ratio") or field == "target":
        if value >= 100:
            return f"{value:,.0f}×"
        return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"
    if field.endswith("_us"):
        return f"{value:.1f} µs" if value < 100 else f"{value:,.0f} µs"
    if field.endswith("_ms"):
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if field.endswith("_per_s"):
        return f"{value:,.0f}/s"
    if field.endswith("_s"):
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    if field.endswith("_pct"):
        return f"{value:.1f} %"
    if field.endswith("_bytes"):
        for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
            if value >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value:.0f} B"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}"


def _doc_pages() -> list[pathlib.Path]:
    return sorted(
        p
        for p in DOCS.rglob("*.rst")
        if "_build" not in p.parts and "_generated" not in p.parts
    )


def used_in_docs() -> set[str]:
    """Every figure reference the docs pages use."""
    return {ref for page in _doc_pages() for ref in RST_REF.findall(page.read_text())}


def render_substitutions(suites: dict[str, Any]) -> str:
    """The text of docs/_generated/figures.rst."""
    lines = [
        ".. Generated by benchmarks/figures.py from benchmarks/results; do not edit.",
        "",
    ]
    for ref in sorted(used_in_docs()):
        lines.append(f".. |{ref}| replace:: {fmt(ref, lookup(suites, ref))}")
    return "\n".join(lines) + "\n"


def render_readme(suites: dict[str, Any], text: str) -> str:
    """README.md with every marked figure rewritten from the results."""
    return README_FIG.sub(
        lambda m: (
            f"<!--fig {m.group(1)}-->{fmt(m.group(1), lookup(suites, m.group(1)))}<!--/fig-->"
        ),
        text,
    )


def _prose(text: str, *, markdown: bool) -> str:
    """*text* without code, figure markers and directives (what people read as prose)."""
    if markdown:
        text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        text = README_FIG.sub("", text)
        return re.sub(r"`[^`]*`", "", text)
    kept, skipping, indent = [], False, 0
    for line in text.splitlines():
        stripped = line.strip()
        if skipping:
            if stripped and len(line) - len(line.lstrip()) <= indent:
                skipping = False
            else:
                continue
        if stripped.startswith(("..", "::")) or stripped.endswith("::"):
            skipping, indent = True, len(line) - len(line.lstrip())
            if stripped.endswith("::") and not stripped.startswith(".."):
                kept.append(stripped[:-2])
            continue
        kept.append(line)
    return re.sub(r"``[^`]*``", "", RST_REF.sub("", "\n".join(kept)))


def hand_typed() -> list[str]:
    """``page: figure`` for every measured figure typed by hand in a page."""
    found = []
    pages = [(README, True)] + [(p, False) for p in _doc_pages()]
    for page, markdown in pages:
        for match in HAND_TYPED.finditer(_prose(page.read_text(), markdown=markdown)):
            found.append(f"{page.relative_to(ROOT)}: {match.group(0).strip()!r}")
    return found


def main() -> None:
    suites = load()
    SUBSTITUTIONS.parent.mkdir(exist_ok=True)
    SUBSTITUTIONS.write_text(render_substitutions(suites))
    README.write_text(render_readme(suites, README.read_text()))
    print(f"wrote {SUBSTITUTIONS.relative_to(ROOT)} and the figures in README.md")


if __name__ == "__main__":
    main()
