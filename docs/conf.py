"""Sphinx configuration: builds offline, warnings are errors (``nox -s docs``)."""

from __future__ import annotations

import importlib.metadata
import pathlib

project = "trio-sagas"
author = "trio-sagas developers"
copyright = "2026, trio-sagas developers"
release = importlib.metadata.version("trio-sagas")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_attr_annotations = True

default_role = "py:obj"
exclude_patterns = ["_build", "_generated"]
html_theme = "furo"
html_title = "trio-sagas"
html_static_path = ["_static"]
html_css_files = ["timelines.css"]
# No network on build machines: intersphinx stays off, so references to trio
# and the stdlib render as plain text instead of failing the -W build.
nitpicky = False

# Every measured figure a page quotes is a substitution (``|saga.bare.ratio|``)
# written by benchmarks/figures.py from benchmarks/results/: one source of truth.
_FIGURES = pathlib.Path(__file__).parent / "_generated" / "figures.rst"
rst_epilog = _FIGURES.read_text() if _FIGURES.exists() else ""
