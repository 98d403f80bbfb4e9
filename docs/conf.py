"""Sphinx configuration of the captum_gmar documentation.

Build (offline, warnings as errors)::

    sphinx-build -W --keep-going -b html docs /tmp/docs-html
"""

from __future__ import annotations

import os
import sys

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
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

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


def setup(app):
    app.connect("autodoc-process-docstring", _save_plain, priority=499)
    app.connect("autodoc-process-docstring", _restore_plain, priority=501)


# No intersphinx: the build must work offline.

html_theme = "furo"
html_title = f"captum_gmar {release}"
html_static_path: list[str] = []
pygments_style = "sphinx"
pygments_dark_style = "monokai"
