"""The deletion check of a cluster: mask its mean map's top patches on its images, against
as many random patches, and see how far the class score falls."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tools.shortcut.train import logits

__all__ = ["deletion_check", "mask_patches", "random_patches", "top_patches"]


def top_patches(mean_map: np.ndarray, k: int) -> np.ndarray:
    """``int (k,)``: the flat indices of the ``k`` largest patches of an ``(h, w)`` map, largest first."""
    return np.argsort(-mean_map.reshape(-1), kind="stable")[:k]


def random_patches(n: int, k: int, patches: int, rng: np.random.Generator) -> np.ndarray:
    """``int (n, k)``: for each of ``n`` images, ``k`` distinct patches of ``patches``."""
    return np.argsort(rng.random((n, patches)), axis=1)[:, :k]


def mask_patches(images: np.ndarray, patches: np.ndarray, patch_size: int) -> np.ndarray:
    """A copy of ``uint8 (N, H, W, 3)`` ``images`` with, in image ``i``, the patches
    ``patches[i]`` (flat indices on the ``patch_size`` grid; ``(k,)`` for the same in every
    image, or ``(N, k)``) filled with the image's mean colour: no edge, no new colour."""
    n, height, width = images.shape[:3]
    columns = width // patch_size
    chosen = np.broadcast_to(patches, (n, np.shape(patches)[-1]))
    out = images.copy()
    fill = images.reshape(n, -1, 3).mean(1).round().astype(np.uint8)
    for i in range(n):
        for p in chosen[i]:
            r, c = divmod(int(p), columns)
            out[i, r * patch_size : (r + 1) * patch_size, c * patch_size : (c + 1) * patch_size] = fill[i]
    return out


def deletion_check(
    model: nn.Module,
    images: np.ndarray,
    mean_map: np.ndarray,
    tag_class: int,
    k: int,
    patch_size: int,
    rng: np.random.Generator,
    draws: int = 5,
) -> dict[str, float]:
    """The mean sigmoid of ``tag_class`` on ``images`` (a cluster's), as they are
    (``score``), with the ``k`` top patches of the cluster's ``mean_map`` masked (``top``),
    and with ``k`` random patches masked, averaged over ``draws`` draws (``random``)."""
    grid = mean_map.size

    def score(x: np.ndarray) -> float:
        return torch.sigmoid(logits(model, x)[:, tag_class]).mean().item()

    random = [score(mask_patches(images, random_patches(len(images), k, grid, rng), patch_size)) for _ in range(draws)]
    return {
        "score": score(images),
        "top": score(mask_patches(images, top_patches(mean_map, k), patch_size)),
        "random": float(np.mean(random)),
    }
