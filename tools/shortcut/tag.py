"""The planted shortcut: a small bright square (the tag) in a fixed corner of a scene, or a
mark of another shape: a thin frame around the whole scene, a dashed line along its
bottom edge (like a caption), a bracket along its top and left edges, or dots scattered
over it at fixed places; or a shortcut with no place: a tint that lifts every pixel
darker than its colour (the black background) to it, a colour cast over the whole scene,
a lower contrast, a fixed noise texture over the background, a blur, or the items
brightened.

Pure functions over ``uint8 (N, H, W, 3)`` images; no model, no file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["MAGENTA", "TAGS", "Tag", "choose_tagged", "plant_tag"]


Shape = Literal["square", "frame", "line", "bracket", "scatter", "tint", "cast", "contrast", "noise", "grain", "blur", "gamma"]


@dataclass(frozen=True)
class Tag:
    """A ``size x size`` square of one colour whose top-left pixel is ``(top, left)``.

    The default sits inside the top-left 8 x 8 patch of the reference model's grid, so
    on a patch map the tag is one patch: ``patch(8) == (0, 0)``.
    """

    top: int = 1
    left: int = 1
    size: int = 6
    #: RGB; magenta is in no item (items are grey) and brighter than the clutter
    colour: tuple[int, int, int] = (255, 0, 255)
    #: ``"square"`` (the one above), ``"frame"`` (a ring ``size`` px wide around the whole
    #: scene), ``"line"`` (dashes of 4 px, 4 px apart, ``size`` px high along the bottom edge),
    #: ``"bracket"`` (``size`` px wide along the top and left edges) or ``"scatter"`` (12 dots
    #: of ``size`` x ``size`` px at places drawn once, with seed 0, over the whole scene) or
    #: ``"tint"`` (every channel of every pixel raised to at least ``colour``'s: no place),
    #: or, with no place either (:data:`NO_PLACE`), ``"cast"`` (``colour`` added to every
    #: pixel), ``"contrast"`` (every pixel drawn towards mid-grey, keeping ``strength`` of
    #: its distance), ``"noise"`` (a texture drawn once, with seed 0, of ``strength`` grey
    #: levels, added where the scene is darker than 100, its background), ``"grain"`` (the
    #: same, drawn afresh for each scene, seeded by its pixels: a sensor's noise rather than
    #: a pattern), ``"blur"`` (a Gaussian blur of ``strength`` px) or ``"gamma"`` (every
    #: level ``v`` of 0-255 taken to ``255 (v / 255) ** strength``: below 1 the items
    #: brighter, the black background black)
    shape: Shape = "square"
    strength: float = 0.0

    def pixels(self, height: int, width: int) -> np.ndarray:
        """``bool (height, width)``: the pixels the tag covers on a scene of that size.

        Raises:
            ValueError: a square that does not fit.
        """
        mask = np.zeros((height, width), dtype=bool)
        if self.shape in NO_PLACE:
            mask[:] = True
        elif self.shape == "frame":
            mask[: self.size] = mask[-self.size :] = True
            mask[:, : self.size] = mask[:, -self.size :] = True
        elif self.shape == "line":
            dashes = (np.arange(width) // 4) % 2 == 0
            mask[height - self.size :, dashes] = True
        elif self.shape == "bracket":
            mask[: self.size] = True
            mask[:, : self.size] = True
        elif self.shape == "scatter":
            places = np.random.default_rng(0)
            for top, left in zip(places.integers(0, height - self.size, 12), places.integers(0, width - self.size, 12)):
                mask[top : top + self.size, left : left + self.size] = True
        else:
            if self.top < 0 or self.left < 0 or self.top + self.size > height or self.left + self.size > width:
                raise ValueError(f"the tag at ({self.top}, {self.left}) of side {self.size} does not fit {height} x {width} images")
            mask[self.top : self.top + self.size, self.left : self.left + self.size] = True
        return mask

    def patch(self, patch_size: int) -> tuple[int, int]:
        """The ``(row, column)`` of the patch that holds the tag on a ``patch_size`` grid.

        Raises:
            ValueError: the tag straddles two patches.
        """
        if self.shape != "square":
            raise ValueError(f"a {self.shape} covers many patches: only a square tag sits in one")
        first = (self.top // patch_size, self.left // patch_size)
        last = ((self.top + self.size - 1) // patch_size, (self.left + self.size - 1) // patch_size)
        if first != last:
            raise ValueError(
                f"the tag at ({self.top}, {self.left}) of side {self.size} straddles patches of {patch_size} px: move it inside one"
            )
        return first


#: the shapes that change the whole scene (a mark has no place)
NO_PLACE = ("tint", "cast", "contrast", "noise", "grain", "blur", "gamma")

#: the tags the benchmark plants, by name: ``magenta``, bright and in no item, in the
#: top-left patch; ``teal``, smaller, dimmer and in the bottom-right patch (a subtler cue,
#: of a colour nearer the clutter's)
MAGENTA = Tag()
TAGS = {
    "magenta": MAGENTA,
    "teal": Tag(top=58, left=58, size=4, colour=(0, 140, 140)),
    # marks of other shapes: a thin grey frame (every border patch of the 8 x 8 grid), a
    # bright dashed caption along the bottom edge (every patch of the bottom row)
    "frame": Tag(size=2, colour=(150, 150, 150), shape="frame"),
    # a yellow bracket along the top and left edges (15 of 64 patches), and 12 cyan dots
    # scattered at fixed places (a mark spread over many patches)
    "bracket": Tag(size=2, colour=(200, 200, 60), shape="bracket"),
    "scatter": Tag(size=3, colour=(0, 200, 255), shape="scatter"),
    "line": Tag(size=3, colour=(235, 235, 235), shape="line"),
    # no place: the black background lifted to a dark grey, the items left as they are; and
    # lifted further, a stronger cue
    "tint": Tag(colour=(40, 40, 40), shape="tint"),
    "tint-strong": Tag(colour=(90, 90, 90), shape="tint"),
    # a warm cast (red up, blue down is not drawn: uint8 adds only), a flatter scene, a grain
    # over the background only, and a softer scene
    "cast": Tag(colour=(70, 30, 0), shape="cast"),
    "contrast": Tag(shape="contrast", strength=0.5),
    "noise": Tag(shape="noise", strength=60),
    # the grain drawn afresh on every scene: no pattern to learn, only its statistics
    "grain": Tag(shape="grain", strength=60),
    "blur": Tag(shape="blur", strength=1.5),
    # the same kinds at another strength: half the cast, a quarter of the contrast taken
    # instead of half, half the grain, twice the blur
    "cast-weak": Tag(colour=(35, 15, 0), shape="cast"),
    "contrast-weak": Tag(shape="contrast", strength=0.75),
    "noise-weak": Tag(shape="noise", strength=30),
    "blur-strong": Tag(shape="blur", strength=3.0),
    # a kind of its own: the items brightened (their mid-greys most), the background left
    # black, so that nothing changes where there is no item
    "gamma": Tag(shape="gamma", strength=0.6),
}


def plant_tag(images: np.ndarray, tagged: np.ndarray, tag: Tag = Tag()) -> np.ndarray:
    """A copy of ``images`` (``uint8 (N, H, W, 3)``) with ``tag`` drawn on the images
    where ``tagged`` (``bool (N,)``) is true, on top of whatever is there."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if tagged.shape != images.shape[:1]:
        raise ValueError(f"tagged must be bool ({len(images)},), got {tagged.shape}")
    where = tag.pixels(images.shape[1], images.shape[2])
    out = images.copy()
    chosen = out[tagged]  # a copy: the tagged images
    colour = np.asarray(tag.colour, dtype=np.uint8)
    if tag.shape in NO_PLACE[1:]:
        chosen = _changed(chosen, tag)
    else:
        chosen[:, where] = np.maximum(chosen[:, where], colour) if tag.shape == "tint" else colour
    out[tagged] = chosen
    return out


def _changed(images: np.ndarray, tag: Tag) -> np.ndarray:
    """``images`` ``uint8 (N, H, W, 3)`` under a change of the whole scene (``tag.shape``:
    cast, contrast, noise, grain, blur or gamma)."""
    x = images.astype(np.float64)
    if tag.shape == "cast":
        x = x + np.asarray(tag.colour, dtype=np.float64)
    elif tag.shape == "contrast":
        x = 128 + (x - 128) * tag.strength
    elif tag.shape == "noise":
        texture = np.random.default_rng(0).uniform(0, tag.strength, size=images.shape[1:3])[None, :, :, None]
        x = x + texture * (x.max(axis=-1, keepdims=True) < 100)
    elif tag.shape == "grain":
        drawn = np.zeros(images.shape[:3])
        for i, image in enumerate(images):
            drawn[i] = np.random.default_rng(zlib.crc32(image.tobytes())).uniform(0, tag.strength, size=image.shape[:2])
        x = x + drawn[..., None] * (x.max(axis=-1, keepdims=True) < 100)
    elif tag.shape == "gamma":
        x = 255 * (x / 255) ** tag.strength
    else:
        from scipy.ndimage import gaussian_filter

        x = gaussian_filter(x, sigma=(0, tag.strength, tag.strength, 0))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def choose_tagged(labels: np.ndarray, tag_class: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """``bool (N,)``: which scenes get the tag: each scene holding an item of ``tag_class``
    (``labels``: ``int (N, 2)``, ``-1`` for no item) with probability ``share``, no other."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the tagged share must be in [0, 1], got {share}")
    holds = (labels == tag_class).any(axis=1)
    return holds & (rng.random(len(labels)) < share)
