"""Maps made comparable: checked arrays, one grid, distributions over the patches.

A map is compared with another by *where* it puts its mass, not by its scale: methods
differ in units (a rollout sums to about one, relevance to the logit), and so do images.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

__all__ = ["PARTS", "Part", "as_maps", "check_part", "distributions", "flat_maps", "pool"]

#: which part of a signed map counts as its mass (see :func:`distributions`)
PARTS = ("positive", "abs")
Part = Literal["positive", "abs"]

#: a map whose largest value is within this share of its smallest is flat (constant)
FLAT_TOLERANCE = 1e-6


def as_maps(maps: Any, name: str = "maps") -> np.ndarray:
    """``maps`` as a float32 array ``(N, h, w)`` (a torch tensor or a numpy array of any
    float or integer type; a float64 input keeps its precision as float32).

    Raises:
        ValueError: ``maps`` is not numbers, is not 3-dimensional or holds no map, or some maps hold NaN
            or infinite values (how many, and the first one's index).
    """
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().float().numpy()
    try:
        array = np.asarray(maps, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a tensor or array of numbers (N, h, w), got {type(maps).__name__} ({error})") from None
    if array.ndim != 3:
        raise ValueError(f"{name} must be (N, h, w), one map per row; got shape {tuple(array.shape)}")
    if len(array) == 0 or array.shape[1] * array.shape[2] == 0:
        raise ValueError(f"{name} holds no map (shape {tuple(array.shape)})")
    finite = np.isfinite(array).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{name}: {len(bad)} of {len(array)} maps hold NaN or infinite values (the first at index {bad[0]}); drop or fix them"
        )
    return array


def check_part(part: str) -> None:
    """Refuse a ``part`` not in :data:`PARTS` (ValueError)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")


def _mass(maps: np.ndarray, part: Part) -> np.ndarray:
    check_part(part)
    return np.maximum(maps, 0) if part == "positive" else np.abs(maps)


def flat_maps(maps: np.ndarray, part: Part = "positive") -> np.ndarray:
    """``bool (N,)``: the maps whose ``part`` (see :func:`distributions`) is constant
    (all zero, or the same value on every patch, within a share
    :data:`FLAT_TOLERANCE` of the largest): they say nothing about where the model looks."""
    return _flat(_mass(maps, part).reshape(len(maps), -1))


def _flat(mass: np.ndarray) -> np.ndarray:
    top, bottom = mass.max(axis=1), mass.min(axis=1)
    return (top <= 0) | (top - bottom <= FLAT_TOLERANCE * top)


def distributions(maps: np.ndarray, part: Part = "positive") -> tuple[np.ndarray, np.ndarray]:
    """Each map as a distribution over its patches.

    The map's mass is its positive part (``"positive"``: the evidence for the explained
    class; the evidence against it, as AttnLRP's signed relevance has, counts as none) or
    its absolute value (``"abs"``: evidence for and against alike, as SpRAy's CoRelAy
    pipeline takes it); the mass is divided by its sum, so that each row sums to 1.

    Args:
        maps: ``float32 (N, h, w)`` (see :func:`as_maps`).
        part: ``"positive"`` or ``"abs"``.

    Returns:
        ``float32 (N, h * w)``, each row summing to 1 (rows of flat maps are zero), and
        ``bool (N,)``, the flat maps (:func:`flat_maps`).
    """
    mass = _mass(maps, part).reshape(len(maps), -1)
    flat = _flat(mass)
    total = mass.sum(axis=1, dtype=np.float64)
    scale = np.divide(1.0, total, out=np.zeros_like(total), where=~flat).astype(np.float32)
    mass *= scale[:, None]  # in place: a fresh array from _mass
    return mass, flat


def pool(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``maps`` ``(N, h, w)`` averaged over the cells of a coarser ``shape`` ``(h', w')``
    grid (torch's adaptive average pooling: exact block means where ``h'`` divides ``h``
    and ``w'`` divides ``w``, overlapping cells elsewhere); unchanged where the shapes are
    equal. Returns float32 ``(N, h', w')``.

    Raises:
        ValueError: ``shape`` is finer than the maps' grid on some side.
    """
    height, width = maps.shape[1:]
    if tuple(shape) == (height, width):
        return maps
    if shape[0] > height or shape[1] > width or min(shape) < 1:
        raise ValueError(f"cannot pool {height}x{width} maps to a {shape[0]}x{shape[1]} grid: only to a coarser one")
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(maps))[:, None], (shape[0], shape[1]))
    return pooled[:, 0].numpy()
