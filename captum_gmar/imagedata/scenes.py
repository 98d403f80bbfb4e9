"""Cluttered Fashion-MNIST scenes with a ground-truth pixel mask per item.

A scene is a ``64 x 64`` RGB canvas holding one or two Fashion-MNIST items of
different classes, each rescaled to 28-32 px (one item: 28-40 px; never below the
native 28 px, so no item loses detail), drawn in a random grey level and placed at a
random position on the 8-px grid of the reference model's patches (so an item looks
the same to the model wherever it is; a small ViT trained on a CPU budget cannot learn
sub-patch shift invariance as well). The background is
coloured noise plus small low-contrast crops of other items in random colours, so
neither the colour nor the global statistics of a scene tell its class and an
explanation has to find the item itself.
Each item's boolean mask marks its visible pixels, which makes the mask the expected
answer of an attribution method. Two items overlap by at most 10% of the smaller mask
whenever one of 50 random placements allows it; on Fashion-MNIST items that fails in
about 0.1% of two-item scenes, and then the least-overlapping placement is kept.

Train scenes draw items and clutter from the Fashion-MNIST training split only,
evaluation scenes from the test split only.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .fashion_mnist import CLASS_NAMES, Split, load_fashion_mnist, resolve_data_dir

__all__ = [
    "IMAGE_SIZE",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "Scenes",
    "make_scenes",
    "to_pixel_values",
]

#: Side of a scene in pixels.
IMAGE_SIZE = 64
#: Per-channel normalisation used by the reference model's image processor.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5

_SCALE_ONE = (28, 40)  # item side in px, one-item scenes (inclusive)
_SCALE_TWO = (28, 32)  # smaller for two items so they fit; never below the native 28 px
_GRID = 8  # item corners sit on multiples of this (the reference model's patch size)
_ITEM_GREY = (0.75, 1.0)  # item brightness: bright on the dark background
_MASK_THRESHOLD = 0.15  # item alpha above which a pixel counts as the item's
_MAX_OVERLAP = 0.1  # of the smaller item's mask, for two-item scenes
_FRAGMENTS = (3, 7)  # clutter crops per scene (inclusive)
_FRAGMENT_SIZE = (5, 10)  # crop side in px: well below an item's 20 px
_FRAGMENT_ALPHA = (0.15, 0.35)  # low contrast: clutter, never an item


@dataclass(frozen=True)
class Scenes:
    """A batch of ``N`` scenes.

    Attributes:
        images: ``uint8 (N, H, W, 3)`` RGB canvases.
        labels: ``int64 (N, 2)`` class of each item; ``-1`` where a scene has no
            second item. The two classes of a scene always differ.
        masks: ``bool (N, 2, H, W)`` visible pixels of each item (all ``False`` for an
            absent item). Masks of one scene do not intersect.
        num_items: ``int64 (N,)`` 1 or 2.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    num_items: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int | slice | np.ndarray) -> Scenes:
        """Select scenes; an integer index keeps the batch dimension (N = 1)."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 or None)
        return Scenes(self.images[index], self.labels[index], self.masks[index], self.num_items[index])

    def targets(self) -> torch.Tensor:
        """Multi-hot targets ``float32 (N, 10)``: 1 for every class present."""
        out = torch.zeros(len(self), len(CLASS_NAMES))
        for slot in range(2):
            present = self.labels[:, slot] >= 0
            out[torch.from_numpy(present), torch.from_numpy(self.labels[present, slot])] = 1.0
        return out


def to_pixel_values(images: np.ndarray) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` images -> ``float32 (N, 3, H, W)`` model input, scaled to
    [0, 1] then normalised with mean 0.5 and std 0.5 (as the reference model's
    ``ViTImageProcessor``)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - PIXEL_MEAN) / PIXEL_STD


@functools.cache
def _resize_matrix(size: int, source: int = 28) -> np.ndarray:
    """``(size, source)`` linear-interpolation matrix (half-pixel centres), so that
    ``A @ img @ A.T`` bilinearly resizes a ``source x source`` image to ``size``."""
    centres = (np.arange(size) + 0.5) * source / size - 0.5
    lo = np.clip(np.floor(centres).astype(int), 0, source - 1)
    hi = np.clip(lo + 1, 0, source - 1)
    w = np.clip(centres - lo, 0.0, 1.0)
    a = np.zeros((size, source), dtype=np.float32)
    a[np.arange(size), lo] += 1 - w
    a[np.arange(size), hi] += w
    return a


@functools.lru_cache(maxsize=4)
def _sources(split: Split, directory: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """The split's images and, per class, the indices of its items (cached per resolved
    directory: finding them costs more than drawing a training batch)."""
    images, labels = load_fashion_mnist(split, directory)
    return images, [np.flatnonzero(labels == c) for c in range(len(CLASS_NAMES))]


def _backgrounds(n: int, rng: np.random.Generator, sources: np.ndarray) -> np.ndarray:
    """``n`` canvases of noise plus small crops of random items in random colours at
    low contrast: ``float32 (n, H, W, 3)`` in [0, 1]. Drawn for the whole batch at
    once; only pasting the crops loops."""
    s = IMAGE_SIZE
    canvas = rng.uniform(0.0, 0.25, (n, 1, 1, 3)).astype(np.float32)
    canvas = canvas + 0.06 * rng.standard_normal((n, s, s, 3), dtype=np.float32)
    # Smooth blotches at patch scale so the noise is not plain i.i.d. pixels.
    blotch = 0.05 * rng.standard_normal((n, 8, 1, 8, 1, 3), dtype=np.float32)
    canvas.reshape(n, 8, s // 8, 8, s // 8, 3)[...] += blotch

    counts = rng.integers(_FRAGMENTS[0], _FRAGMENTS[1] + 1, n)
    total = int(counts.sum())
    owner = np.repeat(np.arange(n), counts)
    source = rng.integers(len(sources), size=total)
    size = rng.integers(_FRAGMENT_SIZE[0], _FRAGMENT_SIZE[1] + 1, total)
    # Crops come from the central region, where items have content.
    crop_yx = rng.integers(4, 24 - size + 1, (2, total))
    paste_yx = rng.integers(0, s - size + 1, (2, total))
    strength = rng.uniform(*_FRAGMENT_ALPHA, total).astype(np.float32)
    # Saturated or grey colours: the brightest channel is at least 0.6.
    tint = rng.uniform(0.0, 1.0, (total, 3)).astype(np.float32)
    tint[np.arange(total), rng.integers(3, size=total)] = rng.uniform(0.6, 1.0, total)
    for f in range(total):
        k, (cy, cx), (y, x) = size[f], crop_yx[:, f], paste_yx[:, f]
        alpha = sources[source[f], cy : cy + k, cx : cx + k, None] * (strength[f] / 255.0)
        region = canvas[owner[f], y : y + k, x : x + k]
        region += alpha * (tint[f] - region)
    return canvas


def _place(rng: np.random.Generator, size: int, taken: np.ndarray | None, alpha: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Pick a top-left corner for an item of side ``size``; with an item already
    placed (mask ``taken``), retry until the two masks overlap by at most
    ``_MAX_OVERLAP`` of the smaller one, keeping the least-overlapping try."""
    best: tuple[float, int, int, np.ndarray] | None = None
    for _ in range(1 if taken is None else 50):
        y, x = (int(v) * _GRID for v in rng.integers(0, (IMAGE_SIZE - size) // _GRID + 1, 2))
        mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        mask[y : y + size, x : x + size] = alpha > _MASK_THRESHOLD
        if taken is None:
            return y, x, mask
        overlap = (mask & taken).sum() / max(1, min(mask.sum(), taken.sum()))
        if best is None or overlap < best[0]:
            best = (overlap, y, x, mask)
        if overlap <= _MAX_OVERLAP:
            break
    assert best is not None
    return best[1], best[2], best[3]


def make_scenes(
    n: int,
    split: Split,
    seed: int | np.random.Generator,
    num_items: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Scenes:
    """Generate ``n`` scenes.

    Args:
        n: number of scenes.
        split: ``"train"`` draws every item and clutter crop from the Fashion-MNIST
            training split, ``"test"`` from the test split (use it for evaluation).
        seed: an integer, for a batch that depends on nothing else, or a
            ``numpy.random.Generator`` to draw from (consumed, e.g. for a stream of
            training batches).
        num_items: 1 or 2 items per scene, or ``None`` for a 50/50 mix.
        data_dir: Fashion-MNIST directory (see
            :func:`captum_gmar.imagedata.fashion_mnist.resolve_data_dir`).

    Returns:
        :class:`Scenes` with ``images uint8 (n, 64, 64, 3)``, ``labels int64 (n, 2)``,
        ``masks bool (n, 2, 64, 64)``, ``num_items int64 (n,)``.
    """
    if num_items not in (1, 2, None):
        raise ValueError(f"num_items must be 1, 2 or None, got {num_items!r}")
    sources, pools = _sources(split, resolve_data_dir(data_dir).resolve())
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    s = IMAGE_SIZE

    images = np.empty((n, s, s, 3), dtype=np.uint8)
    labels = np.full((n, 2), -1, dtype=np.int64)
    masks = np.zeros((n, 2, s, s), dtype=bool)
    counts = np.full(n, num_items, dtype=np.int64) if num_items is not None else rng.integers(1, 3, n).astype(np.int64)
    canvases = _backgrounds(n, rng, sources)
    for i in range(n):
        canvas = canvases[i]
        k = int(counts[i])
        lo, hi = _SCALE_ONE if k == 1 else _SCALE_TWO
        classes = rng.choice(len(CLASS_NAMES), size=k, replace=False)
        taken: np.ndarray | None = None
        for slot, cls in enumerate(classes):
            img = sources[pools[cls][rng.integers(len(pools[cls]))]].astype(np.float32)
            img /= max(img.max(), 1.0)  # dim items (thin sandals) get full opacity too
            size = int(rng.integers(lo, hi + 1))
            a = _resize_matrix(size)
            alpha = np.clip(a @ img @ a.T, 0.0, 1.0)
            if rng.random() < 0.5:  # mirror: items have no preferred side
                alpha = alpha[:, ::-1]
            y, x, mask = _place(rng, size, taken, alpha)
            region = canvas[y : y + size, x : x + size]
            region += alpha[..., None] * (rng.uniform(*_ITEM_GREY) - region)
            masks[i, slot] = mask
            if taken is not None:
                masks[i, 0] &= ~mask  # the later item is drawn on top
            taken = mask
            labels[i, slot] = cls
        images[i] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Scenes(images=images, labels=labels, masks=masks, num_items=counts)
