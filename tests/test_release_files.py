"""The files a release needs are in the checkout and declared for the wheel (.ci/run builds
and checks the wheel itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

import captum_gmar

ROOT = Path(captum_gmar.__file__).parent.parent


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_py_typed_marker_is_shipped():
    assert (ROOT / "captum_gmar" / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["captum_gmar"]


def test_the_pages_templates_are_shipped():
    from fnmatch import fnmatch

    globs = _pyproject()["tool"]["setuptools"]["package-data"]["captum_gmar"]
    templates = [path.relative_to(ROOT / "captum_gmar").as_posix() for path in (ROOT / "captum_gmar" / "pages" / "templates").iterdir()]
    assert templates and all(any(fnmatch(name, glob) for glob in globs) for name in templates)


def test_license_matches_the_declared_one():
    project = _pyproject()["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "captum_gmar developers" in text


def test_changelog_names_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert f"## [{captum_gmar.__version__}]" in text
