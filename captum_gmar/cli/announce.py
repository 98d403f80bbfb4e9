"""The first line every command that loads a model prints: which model, what it was
trained on where the package knows, and its classes (or the references or prompts that
stand for them); then, on standard error, a warning where the images to explain are far
larger than what a bundled reference model was trained on."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import loading

#: images whose size the warning samples from a data set (their headers only)
SAMPLED = 8


def announce(spec: str | None, folder: Path, classes: Sequence[str], kind: str = "classes") -> None:
    """Print :func:`~captum_gmar.loading.describe_model`'s line, once (rank 0 under ``torchrun``)."""
    if os.environ.get("RANK", "0") == "0":
        print(loading.describe_model(spec, loading.read_config(folder), classes, kind), flush=True)


def warn_if_far(spec: str | None, sizes: Sequence[tuple[int, int]]) -> None:
    """Print :func:`~captum_gmar.loading.trained_on_warning`'s warning for images of ``sizes``
    ``(width, height)`` on standard error, where there is one, once."""
    warning = loading.trained_on_warning(spec, sizes)
    if warning and os.environ.get("RANK", "0") == "0":
        print(warning, file=sys.stderr, flush=True)


def sample_sizes(data: Any) -> list[tuple[int, int]]:
    """``(width, height)`` of the first :data:`SAMPLED` images of an image folder's data set
    (read from their headers; an image that cannot be read is left out), none for other data."""
    from PIL import Image

    from ..evaluation.data import ImageFolderTasks

    if not isinstance(data, ImageFolderTasks):
        return []
    sizes = []
    for item in data.items[:SAMPLED]:
        try:
            with Image.open(data.root / item.file) as image:
                sizes.append(image.size)
        except (OSError, Image.DecompressionBombError):
            continue
    return sizes
