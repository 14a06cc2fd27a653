"""Every measured figure in README.md and docs/ comes from the committed results."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location(
    "bench_figures", ROOT / "benchmarks" / "figures.py"
)
assert _spec is not None
assert _spec.loader is not None
figures = importlib.util.module_from_spec(_spec)
sys.modules["bench_figures"] = figures
_spec.loader.exec_module(figures)


def test_readme_figures_match_the_results() -> None:
    """Each marked figure in the README is what the results file holds."""
    text = figures.README.read_text()
    assert figures.README_FIG.search(text), "the README quotes no figure"
    assert figures.render_readme(figures.load(), text) == text


def test_docs_figures_match_the_results() -> None:
    """The docs' figure substitutions are rendered from the results as they are."""
    expected = figures.render_substitutions(figures.load())
    assert figures.SUBSTITUTIONS.read_text() == expected


def test_no_figure_is_typed_by_hand() -> None:
    """No page types a ratio, a per-item cost or a rate outside a figure reference."""
    assert figures.hand_typed() == []


def test_a_wrong_figure_is_caught() -> None:
    """A README figure that differs from the results is found (the check can fail)."""
    text = figures.README.read_text()
    match = figures.README_FIG.search(text)
    assert match is not None
    wrong = text.replace(
        match.group(0),
        f"<!--fig {match.group(1)}-->0.01×<!--/fig-->",  # noqa: RUF001
    )
    assert figures.render_readme(figures.load(), wrong) != wrong


def test_hand_typed_figures_are_found() -> None:
    """The hand-typed detector sees ratios, per-item costs and rates in prose."""
    prose = "costs ~4x a loop, 2.4 µs per step, 1,350 durable steps/s; t=2.0 s"
    found = figures.HAND_TYPED.findall(figures._prose(prose, markdown=True))
    assert [f.strip() for f in found] == ["~4x", "2.4 µs", "1,350 durable steps/s"]
