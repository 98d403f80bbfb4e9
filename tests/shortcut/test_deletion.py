"""The deletion check's masking: which patches, filled with what."""

from __future__ import annotations

import numpy as np

from tools.shortcut.deletion import mask_patches, random_patches, top_patches


def test_mask_patches_fills_the_chosen_patches_with_the_image_mean_colour() -> None:
    images = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    images[:, :8, :8] = 200  # a quarter of the image: mean 50
    out = mask_patches(images, np.array([[0], [3]]), 8)
    assert (out[0, :8, :8] == 50).all() and (out[0, 8:] == 0).all()
    assert (out[1, 8:, 8:] == 50).all() and (out[1, :8, :8] == 200).all()
    assert (mask_patches(images, np.array([0, 1]), 8)[:, :8] == 50).all()  # the same patches in every image


def test_top_and_random_patches() -> None:
    assert top_patches(np.array([[0.1, 0.5], [0.3, 0.0]]), 2).tolist() == [1, 2]
    drawn = random_patches(100, 4, 64, np.random.default_rng(0))
    assert drawn.shape == (100, 4) and all(len(set(row)) == 4 for row in drawn.tolist()) and drawn.max() < 64
