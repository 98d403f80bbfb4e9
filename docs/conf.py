"""Sphinx configuration of the captum_gmar documentation.

Build (offline, warnings as errors)::

    sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

# The package is imported by autodoc from the repository, whether or not it is installed.
sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # autodoc imports transformers; never reach the network

import captum_gmar  # noqa: E402

project = "captum_gmar"
author = "captum_gmar developers"
copyright = "captum_gmar developers"
release = captum_gmar.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# results/*/: a run's raw files (its tables as the scripts wrote them), read from the pages that cite them
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store", "results/*/*.md"]

# Markdown: $...$ and $$...$$ formulas; anchors for headings up to level 3 (page.md#anchor links).
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True
myst_heading_anchors = 3

# API reference: Google-style docstrings, types from the annotations.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True


# Napoleon reads the first line of a data or attribute docstring as "type: description",
# so a ``#:`` comment such as "tokens before the patches: CLS, ..." would render with
# "tokens before the patches" as its type. This package writes those docstrings as plain
# prose (types come from the annotations), so they bypass napoleon: saved before it runs
# (priority 499) and put back after (priority 501).
_plain_docstrings: dict[str, list[str]] = {}


def _save_plain(app, what, name, obj, options, lines):
    if what in ("data", "attribute"):
        _plain_docstrings[name] = list(lines)


def _restore_plain(app, what, name, obj, options, lines):
    if what in ("data", "attribute") and name in _plain_docstrings:
        lines[:] = _plain_docstrings.pop(name)


# Formulas render offline: MathJax 3 is copied next to the built pages instead of being
# loaded from a CDN (without network, a CDN page shows the raw TeX). The copy comes from the
# django-static-mathjax wheel of the docs extra: MathJax 3.2.2 as plain files, which needs no
# Django. tex-svg.js draws each glyph as an SVG path, so the pages need no web fonts. Only
# its es5 folder is copied, without the other combined bundles beside tex-svg.js (the
# extensions, menu and accessibility parts that tex-svg.js loads on demand stay).
_MATHJAX_BUNDLE = "tex-svg.js"
_mathjax_spec = importlib.util.find_spec("mathjax")
_MATHJAX = Path(_mathjax_spec.origin).parent / "static" / "mathjax" / "es5" if _mathjax_spec is not None and _mathjax_spec.origin else None
if _MATHJAX is not None and (_MATHJAX / _MATHJAX_BUNDLE).is_file():
    mathjax_path = f"mathjax/{_MATHJAX_BUNDLE}"  # relative to _static
else:
    _MATHJAX = None


def _skip_other_bundles(folder, names):
    if Path(folder) != _MATHJAX:
        return []
    return [n for n in names if n.endswith(".js") and n != _MATHJAX_BUNDLE]


def _copy_mathjax(app, exception):
    if exception is None and _MATHJAX is not None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        shutil.copytree(_MATHJAX, target, ignore=_skip_other_bundles, dirs_exist_ok=True)


def _mathjax_missing(app):
    if _MATHJAX is None and app.builder.format == "html":
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            "MathJax is not installed (pip install django-static-mathjax, in the docs extra): "
            "the pages load it from a CDN and show raw TeX offline"
        )


# Table cells that hold a short value (a number with its standard error, "6.3e-03 (6.9e-03)",
# a time such as "42.9 ms") and short row names (a method's, "GMAR (L1)", in a table's first
# column) get the class "nowrap", which wide-tables.css keeps on one line: a browser would
# otherwise break "6.3e-03" at its hyphen, "0.168 ± 0.006" at its spaces and "GMAR (L1)"
# before its bracket to squeeze a table into the page. A value is a cell of at most 40
# characters with at least as many digits as letters, a row name a first cell of at most 20;
# other cells (words, "CLS, distillation"; sentences) and header cells wrap as usual, so that
# a table of words fits the page. A table wider than the page scrolls sideways
# (wide-tables.css); .ci/check_doc_tables.py fails the check when one does in a 1,400 px window.
_VALUE_MAX_CHARS, _ROW_NAME_MAX_CHARS = 40, 20


def _stays_on_one_line(text: str, first: bool) -> bool:
    if first and len(text) <= _ROW_NAME_MAX_CHARS:
        return True
    return len(text) <= _VALUE_MAX_CHARS and sum(c.isdigit() for c in text) >= sum(c.isalpha() for c in text)


def _mark_short_cells(app, doctree):
    from docutils import nodes

    for body in doctree.findall(nodes.tbody):
        for row in body.findall(nodes.row):
            for column, entry in enumerate(row.findall(nodes.entry)):
                if _stays_on_one_line(entry.astext(), first=column == 0):
                    entry["classes"].append("nowrap")


def setup(app):
    app.connect("doctree-read", _mark_short_cells)
    app.connect("autodoc-process-docstring", _save_plain, priority=499)
    app.connect("autodoc-process-docstring", _restore_plain, priority=501)
    app.connect("builder-inited", _mathjax_missing)
    app.connect("build-finished", _copy_mathjax)


# No intersphinx: the build must work offline (MathJax too, above).

html_theme = "furo"
html_title = f"captum_gmar {release}"
html_static_path = ["_static"]
# Wide tables (results.md) scroll sideways inside the page, with a shade on the side that
# has more columns, and short cells stay on one line (_mark_short_cells above).
html_css_files = ["wide-tables.css"]
pygments_style = "sphinx"
pygments_dark_style = "monokai"
