"""Localisation: does a map point at the object, given its ground-truth pixel mask, and
how concentrated is its mass?

Maps are ``(B, H, W)`` relevance at pixel resolution, masks ``(B, H, W)`` bool (e.g. the
item masks of :func:`captum_gmar.imagedata.scenes.make_scenes`). Every metric returns one value
per example.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_maps
from .base import Column, MetricGroup, MetricInputs


class ClassSensitivity(NamedTuple):
    """Shares of a map's mass in a two-item scene, each ``(B,)``."""

    #: share on the item whose class was explained
    on_target: Tensor
    #: share on the other item
    on_other: Tensor
    #: ``on_target - on_other``: +1 perfect, 0 class-agnostic, -1 explains the wrong item
    difference: Tensor


def pointing_game(maps: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    """Whether each map's maximum lies on the object (Zhang et al., ECCV 2016).

    The maximum is ``argmax`` of the flattened map: among tied maxima the first in
    row-major order, which is deterministic (a constant map points at the top-left
    pixel).

    Args:
        maps: ``(B, H, W)`` relevance.
        masks: ``(B, H, W)`` bool, the object's pixels.
        tolerance: a hit also counts within this many pixels of the mask, in Chebyshev
            distance (the mask is dilated by a ``(2t + 1)``-square max-pool).

    Returns:
        ``(B,)`` bool hits.
    """
    maps, masks = _check(maps, masks)
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Integral) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
    if tolerance:
        window = 2 * int(tolerance) + 1
        masks = F.max_pool2d(masks.unsqueeze(1).float(), window, stride=1, padding=int(tolerance)).squeeze(1) > 0
    peak = maps.flatten(1).argmax(1, keepdim=True)
    return masks.flatten(1).gather(1, peak).squeeze(1)


def mass_inside(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's positive mass that falls inside the mask.

    Negative relevance (evidence against the class, e.g. from signed methods) is
    clamped to 0: it is no mass placed on a region.

    Args:
        maps: ``(B, H, W)`` relevance.
        masks: ``(B, H, W)`` bool.

    Returns:
        ``(B,)`` float32 in ``[0, 1]``; 0 where a map has no positive mass.
    """
    maps, masks = _check(maps, masks)
    mass = maps.clamp_min(0).flatten(1)
    total = mass.sum(1)
    inside = (mass * masks.flatten(1)).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)


def gini_index(maps: Tensor, patch_size: int | tuple[int, int] = 1) -> Tensor:
    """Concentration of each map's mass: the Gini index of its values.

    ``G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i)`` over the ``n`` values sorted
    ascending: 0 when every value is equal, ``(n - 1) / n`` when all the mass is on one.
    Negative relevance is clamped to 0, as in :func:`mass_inside`.

    Args:
        maps: ``(B, H, W)`` relevance.
        patch_size: average over patches of this size first (the model's patch size), so
            an upsampled patch map is scored on the grid where it has its resolution.

    Returns:
        ``(B,)`` float32 in ``[0, 1)``; 0 where a map has no positive mass.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        raise ValueError(f"maps must be a (B, H, W) tensor, got {getattr(maps, 'shape', type(maps).__name__)}")
    maps = check_maps(maps, (maps.shape[0], maps.shape[1], maps.shape[2]))
    x = F.avg_pool2d(maps.clamp_min(0).unsqueeze(1), patch_size).flatten(1).sort(dim=1).values
    n = x.shape[1]
    rank = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    total = x.sum(1)
    return torch.where(total > 0, ((2 * rank - n - 1) * x).sum(1) / (n * total.clamp_min(torch.finfo(x.dtype).tiny)), 0.0)


def class_sensitivity(maps_target: Tensor, mask_target: Tensor, mask_other: Tensor) -> ClassSensitivity:
    """How much of a map lands on the explained item rather than the other one.

    For two-item scenes: ``maps_target`` explains the class of the item in
    ``mask_target``. Pixels where the masks overlap count for both items.

    Args:
        maps_target: ``(B, H, W)`` relevance for the target item's class.
        mask_target: ``(B, H, W)`` bool, the target item's pixels.
        mask_other: ``(B, H, W)`` bool, the other item's pixels.

    Returns:
        :class:`ClassSensitivity` of ``(B,)`` float32 tensors, built on :func:`mass_inside`.
    """
    on_target = mass_inside(maps_target, mask_target)
    on_other = mass_inside(maps_target, mask_other)
    return ClassSensitivity(on_target, on_other, on_target - on_other)


def _check(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool:
        raise TypeError("masks must be a bool torch.Tensor of shape (B, H, W)")
    if masks.dim() != 3:
        raise ValueError(f"masks must have shape (B, H, W), got {tuple(masks.shape)}")
    maps = check_maps(maps, (masks.shape[0], masks.shape[1], masks.shape[2]))
    return maps, masks.to(maps.device)


class Localisation(MetricGroup):
    """Where the map's mass lies against the explained object's mask (NaN for items
    without the masks a column needs), and how concentrated it is."""

    key = "localisation"
    columns = (
        Column("pointing_game", "Pointing game hit rate (higher is better)", "higher"),
        Column("mass_inside", "Share of the map's mass inside the explained object's mask (higher is better)", "higher"),
        Column("gini", "Gini index of the map on the patch grid (0: mass spread evenly; near 1: on one patch)"),
        Column(
            "class_sensitivity",
            "Images with two labelled objects: mass on the explained one minus mass on the other (higher is better)",
            "higher",
            ("classes",),  # a composite's other cells are one to three photos: its class_specificity instead
        ),
        # a summary column only: composites' class specificity from their rows' mass_inside
        # (captum_gmar.evaluation.photo_similarity.add_class_specificity)
        Column(
            "class_specificity",
            "Composites of photos: the sum over their photos of the map's share on the explained photo's cell, less 1 "
            "(0 for any map that does not change with the target; higher is better)",
            "higher",
            ("similarity",),
        ),
    )

    def compute(self, inputs: MetricInputs) -> dict[str, Tensor]:
        batch, maps, device = inputs.batch, inputs.maps, inputs.x.device
        masks, has_mask = batch.masks.to(device), batch.has_mask.to(device)
        columns = {
            "pointing_game": torch.where(has_mask, pointing_game(maps, masks).float(), math.nan),
            "mass_inside": torch.where(has_mask, mass_inside(maps, masks), math.nan),
        }
        if "class_sensitivity" in self.wanted:
            has_both = (batch.has_mask & batch.has_other).to(device)
            sensitivity = class_sensitivity(maps, masks, batch.other_masks.to(device)).difference
            columns["class_sensitivity"] = torch.where(has_both, sensitivity, math.nan)
        columns["gini"] = gini_index(maps, self.vit.patch_size)
        return columns
