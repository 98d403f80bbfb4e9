"""The pictures of the pages: arrays as PNG data URIs, maps and tables in colour."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor

from ..visualization import MAP_CMAP, map_scale


def png_data_uri(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of ``pixels``: ``(H, W)`` or ``(H, W, 3|4)`` uint8."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def colour(values: np.ndarray, cmap: str) -> np.ndarray:
    """``values`` in ``[0, 1]`` (any shape) as uint8 RGB ``(..., 3)`` of the colour map."""
    return (colormaps[cmap](np.clip(values, 0, 1))[..., :3] * 255).round().astype(np.uint8)


def hex_colours(values: np.ndarray, cmap: str) -> list:
    """``values`` in ``[0, 1]`` as nested lists of ``#rrggbb`` strings of the colour map."""
    rgb = colour(values, cmap)
    return np.apply_along_axis(lambda c: "#" + bytes(c.tolist()).hex(), -1, rgb).tolist()


def heat(attribution: np.ndarray, scale: float) -> str:
    """One ``(H, W)`` map on ``[0, scale]`` as a PNG data URI (black where the scale is 0)."""
    normalised = np.clip(attribution, 0, None) / scale if scale > 0 else np.zeros_like(attribution)
    return png_data_uri(colour(normalised, MAP_CMAP))


def own_scale(attribution: Tensor) -> np.ndarray:
    """One map on its own scale (0 to its 99th percentile, see :func:`~captum_gmar.visualization.map_scale`), in ``[0, 1]``."""
    scale = map_scale(attribution)
    values = attribution.detach().float().cpu().clamp_min(0).numpy()
    return np.clip(values / scale, 0, 1) if scale > 0 else np.zeros_like(values)


def shrink(values: Tensor, size: tuple[int, int]) -> Tensor:
    """``values`` ``(N, H, W)`` averaged down to ``(N, *size)`` (as they are where that is their size)."""
    if tuple(values.shape[-2:]) == size:
        return values
    return torch.nn.functional.interpolate(values[None], size=size, mode="area")[0]


def thumbnail_uri(pixels: np.ndarray, side: int) -> str:
    """``pixels`` (uint8 ``(H, W)`` or ``(H, W, 3)``) shrunk to at most ``side`` px, as a PNG data URI."""
    picture = Image.fromarray(pixels)
    picture.thumbnail((side, side))
    return png_data_uri(np.asarray(picture))
