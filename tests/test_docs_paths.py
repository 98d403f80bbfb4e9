"""Every file, folder and module that the README and the docs name exists: a path in
backquotes or a link, a ``captum_gmar.`` module or object, and the name that
"``file.py``'s ``name``" says a file defines.

A path counts when it is one of the repository's (it starts with one of its top-level
folders, or with a package folder of ``captum_gmar/``, or it is a ``.py`` file name that
some file of the repository has). Names a user chooses (``photo.png``, ``maps/``,
``my-vit/``) start with none of those and are not checked.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "captum_gmar"
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "api").glob("*.rst")])
#: where a path of the repository starts
TOP = ("captum_gmar/", "tests/", "docs/", "benchmarks/", "tools/", "notebooks/", ".ci/")
SUBPACKAGES = tuple(f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_"))
PY_FILES = {path.name for path in ROOT.rglob("*.py") if ".git" not in path.parts and "_build" not in path.parts}

CODE = re.compile(r"``?([^`\s]+?)``?")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
DEFINES = re.compile(r"`([\w./-]+\.py)`'s `([A-Za-z_]\w*)")
MODULE = re.compile(r"captum_gmar(?:\.\w+)+")


def _paths(page: Path) -> set[str]:
    """The repository paths ``page`` names (code spans and links, anchors dropped)."""
    text = page.read_text()
    found = {token.rstrip(".,:;") for token in CODE.findall(text)}
    found |= {target for target in LINK.findall(text) if "://" not in target}
    return {
        token
        for token in found
        if "/" in token or token.endswith(".py")
        if not any(c in token for c in "*<>{}$=")  # globs and placeholders: rank<R>-*, {name}
        if "_build/" not in token  # what a build writes
    }


def _exists(token: str, page: Path) -> bool:
    relative = token.removeprefix("./")
    if (page.parent / relative).exists() or (ROOT / relative).exists():
        return True
    if relative.startswith(SUBPACKAGES):
        return (PACKAGE / relative).exists()
    if relative.startswith(TOP):
        return False
    if "/" not in relative and relative.endswith(".py"):
        return relative in PY_FILES
    return True  # a name the user chooses (photo.png, maps/index.csv): not the repository's


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_path_a_page_names_exists(page):
    missing = sorted(token for token in _paths(page) if not _exists(token, page))
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_module_and_object_a_page_names_exists(page):
    missing = sorted({name for name in MODULE.findall(page.read_text()) if not _resolves(name)})
    assert not missing, f"{page.relative_to(ROOT)} names modules or objects that do not exist: {missing}"


def _defines(file: Path, name: str) -> bool:
    text = file.read_text()
    return re.search(rf"^\s*(?:class|def)\s+{name}\b|^\s*{name}\s*[:=]", text, flags=re.MULTILINE) is not None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_file_a_page_says_defines_a_name_defines_it(page):
    wrong = []
    for file, name in DEFINES.findall(page.read_text()):
        candidates = [ROOT / file, PACKAGE / file] if "/" in file else list(ROOT.glob(f"captum_gmar/**/{file}"))
        if not any(path.is_file() and _defines(path, name) for path in candidates):
            wrong.append(f"{file}'s {name}")
    assert not wrong, f"{page.relative_to(ROOT)} says a file defines a name it does not: {wrong}"
