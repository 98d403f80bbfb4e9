"""Does the model rely on what a cluster's maps point at? The causal check: mask the
cluster's region on its images, and see how far the class score falls, against as many
random patches masked on the same images, and against the same region masked on the
class's other images.

A masked patch is filled with its image's mean value per channel (no edge and no colour
the image lacks). The check is pure, over pixel values and a scoring function
(:func:`causal_check`); :class:`~captum_gmar.exploration.checker.ClusterChecker` runs it
with a model on a maps folder's clusters, beside the transplant check
(:mod:`captum_gmar.exploration.transplant`: the region pasted on other classes' images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .transplant import Transplant

__all__ = ["CausalCheck", "causal_check", "mask_patches", "random_patches"]


@dataclass(frozen=True)
class CausalCheck:
    """The mean class score of a cluster's images and of the class's other images, as
    they are and masked (see :mod:`captum_gmar.exploration.causal`)."""

    #: how many of the cluster's images were scored (0: not masked, the figures NaN; only
    #: the clusters the transplant confirms are, or where nothing could be pasted, the
    #: first-ranked and suspected ones)
    members: int
    #: their mean score as they are, with the region masked, with random patches masked
    score: float
    region: float
    random: float
    #: how many of the class's other images were scored (0: none)
    others: int
    #: their mean score as they are, and with the same region masked (NaN with none)
    others_score: float
    others_region: float
    #: the transplant check of the same cluster, run beside it (:mod:`captum_gmar.exploration.transplant`)
    transplant: Transplant | None = None

    @property
    def effect(self) -> float:
        """How much more the score falls with the region masked than with random patches."""
        return self.random - self.region

    @property
    def specific(self) -> float:
        """How much more masking the region costs the cluster's images than the others'."""
        return (self.score - self.region) - (self.others_score - self.others_region)

    def summary(self) -> str:
        """The check in words and figures."""
        if not self.members:
            return "not masked (the clusters the transplant confirms are)" + (f"; {self.transplant.summary()}" if self.transplant else "")
        text = (
            f"masking its region on {self.members} of its images moves their score from {self.score:.3f} to {self.region:.3f} "
            f"(as many random patches: {self.random:.3f})"
        )
        if self.others:
            text += f"; on {self.others} of the class's other images, from {self.others_score:.3f} to {self.others_region:.3f}"
        if self.transplant is not None:
            text += f"; {self.transplant.summary()}"
        return text


def mask_patches(pixel_values: Tensor, patches: Tensor, grid: tuple[int, int]) -> Tensor:
    """A copy of ``pixel_values`` ``(B, C, H, W)`` with, in image ``i``, the patches
    ``patches[i]`` (flat indices on the ``grid`` ``(h, w)`` laid over the image; ``(k,)``
    for the same patches in every image, or ``(B, k)``) filled with the image's mean
    value per channel."""
    batch, _, height, width = pixel_values.shape
    rows, columns = grid
    chosen = patches.to(pixel_values.device).long().expand(batch, -1)
    keep = torch.ones(batch, rows * columns, device=pixel_values.device)
    keep.scatter_(1, chosen, 0.0)
    # the patch grid as a pixel mask (nearest cell: any size, not only multiples of the grid)
    keep = torch.nn.functional.interpolate(keep.view(batch, 1, rows, columns), size=(height, width), mode="nearest")
    mean = pixel_values.mean(dim=(2, 3), keepdim=True)
    return pixel_values * keep + mean * (1 - keep)


def random_patches(count: int, k: int, patches: int, generator: torch.Generator) -> Tensor:
    """``int64 (count, k)``: for each of ``count`` images, ``k`` distinct patches of ``patches``."""
    return torch.rand(count, patches, generator=generator).argsort(dim=1)[:, :k]


def causal_check(
    scores: Callable[[Tensor], Tensor],
    members: Tensor,
    others: Tensor | None,
    region: Sequence[tuple[int, int]],
    grid: tuple[int, int],
    draws: int = 3,
    seed: int = 0,
) -> CausalCheck:
    """The causal check of a cluster.

    Args:
        scores: pixel values ``(B, C, H, W)`` -> the explained class's score ``(B,)``.
        members: the cluster's images' pixel values ``(N, C, H, W)``.
        others: the class's other images' pixel values ``(M, C, H, W)``, or ``None``.
        region: the cluster's region, ``(row, column)`` patches of ``grid``.
        grid: the maps' grid ``(h, w)``.
        draws: random draws of as many patches, averaged.
        seed: the random patches' seed.

    Returns:
        :class:`CausalCheck`.
    """
    flat = torch.tensor([r * grid[1] + c for r, c in region], dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)

    def mean(pixel_values: Tensor) -> float:
        return float(scores(pixel_values).float().mean())

    with torch.no_grad():
        random = [
            mean(mask_patches(members, random_patches(len(members), len(flat), grid[0] * grid[1], generator), grid)) for _ in range(draws)
        ]
        out = {"score": mean(members), "region": mean(mask_patches(members, flat, grid)), "random": sum(random) / draws}
        if others is not None and len(others):
            out.update(others_score=mean(others), others_region=mean(mask_patches(others, flat, grid)))
    return CausalCheck(
        members=len(members),
        others=0 if others is None else len(others),
        others_score=out.get("others_score", float("nan")),
        others_region=out.get("others_region", float("nan")),
        score=out["score"],
        region=out["region"],
        random=out["random"],
    )
