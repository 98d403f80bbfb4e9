"""Fixtures of the reference-model tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from captum_gmar.reference.cache import CACHE_ENV


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty cache folder, set as ``$CAPTUM_GMAR_CACHE`` for the test module, so the
    tests convert the backbone themselves and leave the user's cache alone."""
    path = tmp_path_factory.mktemp("captum_gmar_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(path))
        yield path
