"""Helpers of the data-set job's tests: the tiny classifier's classes, and image folders."""

from __future__ import annotations

import numpy as np
from PIL import Image

CLASSES = {0: "cat", 1: "dog", 2: "fox", 3: "owl", 4: "eel"}


def write_images(folder, count: int, seed: int = 0, classes=("cat", "dog", "owl")) -> None:
    """``count`` random 40 x 36 px images spread over class folders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        label = classes[i % len(classes)]
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(folder / label / f"{i:04d}.png")
