"""Every public module of the package has a place in the API reference (``docs/api/``).

A module is public when no part of its dotted name starts with an underscore. A page covers
it when it names the module (``automodule``, ``currentmodule``) or documents an object the
module defines (``autoclass``, ``autofunction``, ``autodata``, ...): a class re-exported at
the top level, documented there, covers the module that defines it.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import captum_gmar

API = Path(__file__).resolve().parents[1] / "docs" / "api"
DIRECTIVE = re.compile(r"^\.\. (auto\w+|currentmodule|module)::\s*(\S+)", re.MULTILINE)


def public_modules() -> list[str]:
    """The package's modules whose dotted names have no part starting with ``_``."""
    found = [captum_gmar.__name__]
    for module in pkgutil.walk_packages(captum_gmar.__path__, prefix="captum_gmar."):
        if not any(part.startswith("_") for part in module.name.split(".")):
            found.append(module.name)
    return sorted(found)


def _defining_module(dotted: str) -> str | None:
    """The module that defines the object ``dotted`` names (itself for a module), or ``None``
    where it names nothing importable."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute, None)
        if obj is None:
            return None
        return getattr(obj, "__module__", None) if split < len(parts) else obj.__name__
    return None


def covered_modules() -> dict[str, str]:
    """Module -> the page that covers it, over every page of ``docs/api``."""
    covered = {}
    for page in sorted(API.glob("*.rst")):
        for directive, name in DIRECTIVE.findall(page.read_text()):
            module = name if directive in ("automodule", "currentmodule", "module") else _defining_module(name)
            if module is not None:
                covered.setdefault(module, page.name)
    return covered


def test_every_public_module_has_a_page_in_the_api_reference():
    covered = covered_modules()
    missing = [module for module in public_modules() if module not in covered]
    assert not missing, f"no page of docs/api documents these modules or anything they define: {', '.join(missing)}"


def test_the_repair_module_has_its_own_page():
    assert covered_modules().get("captum_gmar.repair") == "repair.rst"


def test_the_rule_sees_a_module_that_no_page_names():
    # a class re-exported at the top level counts for the module defining it, a module alone for itself
    assert _defining_module("captum_gmar.GMARAttribution") == "captum_gmar.methods.gmar"
    assert _defining_module("captum_gmar.core.rollout") == "captum_gmar.core.rollout"
    assert _defining_module("captum_gmar.no_such_thing") is None
    assert "captum_gmar.core.rollout" in public_modules() and not any("._" in m for m in public_modules())
