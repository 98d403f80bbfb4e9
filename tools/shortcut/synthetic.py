"""Synthetic classes of patch maps, with or without a planted tag: the maps a strategy
finder is judged on when no model is at hand. Pure functions over arrays; no model, no file.

A class is ``count`` maps on a ``size x size`` grid. Every map holds an object: one to
three elongated Gaussian blobs (the object's parts, each with its own weight), near the
grid's centre (``objects="fixed"``) or anywhere in its middle (``"moving"``), on noise
(the absolute value of Gaussian noise, ``noise`` of the strongest part's peak). A share
``floor`` of each map's mass can be spread over every patch (the diffuse floor of
rollout-like maps; each patch's share of it varies by half of its mean, at random), and ``sharpen`` raises the object map to a power before the tag is
added (the sparse maps of relevance propagation). A share ``tagged`` of the maps also put
a share ``mass`` of their mass (each map's share drawn uniformly within ``mass_spread``
of it, relatively: 0.2 gives 0.8 to 1.2 times ``mass``) on a
``tag x tag`` square of patches at ``place``: ``"corner"`` (the top-left),
``"edge"`` (the middle of the top edge) or ``"object"`` (the grid's centre, on a fixed
object, and on a moving one where it passes). Other shapes than that square
(``"square"``) cover more of the grid, whatever ``tag`` and ``place``: ``"frame"`` the
grid's outer ring of patches, ``"line"`` every other patch of the bottom row (a dashed
caption), ``"bracket"`` the top row and the left column, ``"spread"`` a fixed scatter of
a fifth of the grid's patches (drawn with the seed 0, the same in every class).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

__all__ = ["Setting", "synthetic_class", "tag_mask", "tag_patches", "two_tags_class"]

Place = Literal["corner", "edge", "object"]
Shape = Literal["square", "frame", "line", "bracket", "spread"]


@dataclass(frozen=True)
class Setting:
    """One synthetic class (see the module)."""

    #: the share of each tagged map's mass on the tag (0: no tag)
    mass: float = 0.25
    #: how far a tagged map's share may be from ``mass``, as a share of it
    mass_spread: float = 0.2
    #: the tag's side, in patches
    tag: int = 2
    place: Place = "corner"
    #: the tag's shape: the ``tag x tag`` square at ``place``, or a larger one (see the module)
    shape: Shape = "square"
    #: the share of the maps that carry the tag (0: none)
    tagged: float = 0.1
    #: the share of every map's mass spread evenly over the grid
    floor: float = 0.0
    objects: Literal["fixed", "moving"] = "moving"
    #: the object map raised to this power before normalising (1: as drawn)
    sharpen: float = 1.0
    noise: float = 0.1
    count: int = 1000
    size: int = 14

    @property
    def has_tag(self) -> bool:
        return self.mass > 0 and self.tagged > 0

    def without_tag(self) -> Setting:
        """The same class with no tag: the control."""
        return replace(self, mass=0.0, tagged=0.0)

    def name(self) -> str:
        objects = (
            f"{self.objects} objects"
            + (f", floor {self.floor:.0%}" if self.floor else "")
            + (f", sharpened x{self.sharpen:g}" if self.sharpen != 1 else "")
        )
        if not self.has_tag:
            return f"no tag; {objects}"
        mass = (
            f"{self.mass:.0%}"
            if self.mass_spread == 0.2
            else f"{self.mass * (1 - self.mass_spread):.0%}-{min(1, self.mass * (1 + self.mass_spread)):.0%}"
        )
        what = f"{self.tag}x{self.tag} tag at the {self.place}" if self.shape == "square" else f"{self.shape} tag"
        return f"{what}, {mass} of the mass, on {self.tagged:.0%} of the maps; {objects}"


def tag_patches(setting: Setting) -> tuple[slice, slice]:
    """The rows and columns of the tag's patches."""
    side, size = setting.tag, setting.size
    if setting.place == "corner":
        top, left = 0, 0
    elif setting.place == "edge":
        top, left = 0, (size - side) // 2
    elif setting.place == "object":
        top = left = (size - side) // 2
    else:
        raise ValueError(f"place must be corner, edge or object, got {setting.place!r}")
    return slice(top, top + side), slice(left, left + side)


def tag_mask(setting: Setting) -> np.ndarray:
    """``bool (size, size)``: the tag's patches, for any ``shape``."""
    size = setting.size
    mask = np.zeros((size, size), dtype=bool)
    if setting.shape == "square":
        mask[tag_patches(setting)] = True
    elif setting.shape == "frame":
        mask[[0, -1], :] = mask[:, [0, -1]] = True
    elif setting.shape == "line":
        mask[-1, ::2] = True
    elif setting.shape == "bracket":
        mask[0, :] = mask[:, 0] = True
    elif setting.shape == "spread":
        mask.flat[np.random.default_rng(0).choice(size * size, round(0.2 * size * size), replace=False)] = True
    else:
        raise ValueError(f"shape must be square, frame, line, bracket or spread, got {setting.shape!r}")
    return mask


def synthetic_class(setting: Setting, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The maps ``float32 (count, size, size)`` of one class (each summing to 1) and which
    carry the tag, ``bool (count,)``."""
    rng = np.random.default_rng(seed)
    n, size = setting.count, setting.size
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    if setting.objects == "fixed":
        centre = size / 2 - 0.5 + rng.normal(0, 0.3, (n, 2))
    else:
        centre = rng.uniform(0.2 * size, 0.8 * size, (n, 2))
    maps = np.zeros((n, size, size), dtype=np.float32)
    parts = rng.integers(1, 4, n)
    for part in range(3):
        on = parts > part
        offset = rng.normal(0, 1.0, (n, 2)) if part else np.zeros((n, 2))
        where = (centre + offset).astype(np.float32)
        spread = rng.uniform(1.2, 3.0, (n, 2)).astype(np.float32)
        weight = (1.0 if part == 0 else rng.uniform(0.3, 1.0, n)) * on
        maps += np.float32(weight)[:, None, None] * np.exp(
            -0.5
            * (
                ((rows - where[:, 0, None, None]) / spread[:, 0, None, None]) ** 2
                + ((cols - where[:, 1, None, None]) / spread[:, 1, None, None]) ** 2
            )
        )
    maps += setting.noise * maps.max(axis=(1, 2), keepdims=True) * np.abs(rng.standard_normal((n, size, size), dtype=np.float32))
    maps **= np.float32(setting.sharpen)
    maps /= maps.sum(axis=(1, 2), keepdims=True)
    floor = np.abs(1 + 0.5 * rng.standard_normal((n, size, size), dtype=np.float32))  # a floor is noisy too
    maps = (1 - setting.floor) * maps + setting.floor * floor / floor.sum(axis=(1, 2), keepdims=True)
    tagged = np.zeros(n, dtype=bool)
    if setting.has_tag:
        tagged[rng.choice(n, max(1, round(setting.tagged * n)), replace=False)] = True
        _add_tag(maps, tagged, setting, rng)
    return maps.astype(np.float32), tagged


def two_tags_class(setting: Setting, second: Shape, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class with two shortcuts: ``setting``'s tag on a share ``setting.tagged`` of the
    maps, and a tag of shape ``second`` (the same mass) on as many others. The maps
    ``float32 (count, size, size)`` and which carry each tag, ``bool (count,)`` twice."""
    maps, first = synthetic_class(setting, seed)
    rng = np.random.default_rng([seed, 1])
    others = np.flatnonzero(~first)
    tagged = np.zeros(len(maps), dtype=bool)
    tagged[rng.choice(others, min(int(first.sum()), len(others)), replace=False)] = True
    _add_tag(maps, tagged, replace(setting, shape=second), rng)
    return maps, first, tagged


def _add_tag(maps: np.ndarray, tagged: np.ndarray, setting: Setting, rng: np.random.Generator) -> None:
    """Put ``setting``'s tag on the ``tagged`` maps of ``maps`` ``(n, size, size)``, in place:
    each a share of its mass drawn around ``setting.mass``, spread unevenly over the tag's patches."""
    size = setting.size
    low, high = 1 - setting.mass_spread, 1 + setting.mass_spread
    share = np.clip(setting.mass * rng.uniform(low, high, int(tagged.sum())), 0, 1).astype(np.float32)
    tag = np.zeros((len(share), size, size), dtype=np.float32)
    where = tag_mask(setting)
    tag[:, where] = rng.uniform(0.7, 1.0, (len(share), int(where.sum())))
    tag /= tag.sum(axis=(1, 2), keepdims=True)
    maps[tagged] = (1 - share[:, None, None]) * maps[tagged] + share[:, None, None] * tag
