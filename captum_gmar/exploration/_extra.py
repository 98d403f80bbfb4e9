"""The ``explore`` extra: scikit-learn, SciPy and faiss (the approximate neighbours of large
classes), imported when exploring, never by ``import captum_gmar``."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install 'captum-gmar[explore]'"


def require() -> None:
    """Check, before any work, that scikit-learn and SciPy import.

    Raises:
        ImportError: one is missing, saying how to install the extra.
    """
    need("scipy")
    need("sklearn")


def need(module: str) -> ModuleType:
    """``module`` of scikit-learn, SciPy or faiss, imported.

    Raises:
        ImportError: it is missing, saying how to install the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"exploring maps needs scikit-learn, SciPy and faiss-cpu: {INSTALL_HINT} ({error})") from error
