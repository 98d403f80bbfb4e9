"""Does the model rely on what a cluster's maps point at? The causal check: mask the
cluster's region on its images, and see how far the class score falls, against as many
random patches masked on the same images, and against the same region masked on the
class's other images. :class:`ClusterChecker` runs it, and the transplant check
(:mod:`captum_gmar.exploration.transplant`: the region pasted on other classes' images)
beside it, on the same images.

A masked patch is filled with its image's mean value per channel (no edge and no colour
the image lacks). The check itself is pure, over pixel values and a scoring function
(:func:`causal_check`); :class:`ClusterChecker` runs it with a model on a maps folder's
clusters, reading their images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .transplant import Transplant, transplant_check

if TYPE_CHECKING:
    from .strategies import Strategies

__all__ = ["CAUSAL_IMAGES", "CausalCheck", "ClusterChecker", "causal_check", "mask_patches", "random_patches"]

#: the most images of a cluster, and of the rest of its class, the causal check scores
CAUSAL_IMAGES = 64


@dataclass(frozen=True)
class CausalCheck:
    """The mean class score of a cluster's images and of the class's other images, as
    they are and masked (see :mod:`captum_gmar.exploration.causal`)."""

    #: how many of the cluster's images were scored
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


class ClusterChecker:
    """The causal check of the clusters that matter, with a model and the images its maps
    folder's job read: each group's first-ranked cluster and its flagged ones, on up to
    :data:`CAUSAL_IMAGES` of their images and of the rest of their class (see
    :func:`~captum_gmar.exploration.explore`)."""

    def __init__(self, model: Any, processor: Any | None, images: str | os.PathLike[str] | None, seed: int) -> None:
        from ..imagedata.processing import processor_options
        from ..vit.model import VisionTransformer
        from ..vit.outputs import logit_scores

        if images is None:
            raise ValueError(
                "the causal check (model=, --model) masks the clusters' images: name the image folder the job read (images=, --images)"
            )
        vit = model if isinstance(model, VisionTransformer) else VisionTransformer(model.eval())
        if processor is None:
            from ..reference.inputs import load_image_processor

            try:
                processor = load_image_processor(vit.model)
            except ValueError as error:
                raise ValueError(f"give the model's image processor (processor=): {error}") from None
        self.vit, self.processor, self.root, self.seed = vit, processor, Path(images), seed
        self.options = processor_options(processor, vit.image_size or (224, 224))
        self.scores = logit_scores(vit)

    def run(
        self, found: dict[tuple[str, int], Strategies], groups: dict[int, np.ndarray], images: dict[str, list[str]], progress: bool
    ) -> dict[tuple[str, int, int], CausalCheck]:
        """Every group's first-ranked and flagged clusters, checked.

        Args:
            found: each (method, class) group's strategies.
            groups: each class's rows of the maps folder.
            images: each method's image names, row by row.
            progress: whether to show a progress bar.
        """
        chosen = [(key, target, c) for (key, target), s in found.items() for c in s.ranking if c.flagged or c is s.ranking[0]]
        rng = np.random.default_rng(self.seed)
        checks = {}
        for key, target, cluster in tqdm(chosen, unit="cluster", desc="causal check", disable=not progress):
            labels, names = found[key, target].labels, images[key]
            members = groups[target]
            inside = rng.permutation(members[labels == cluster.label])[:CAUSAL_IMAGES]
            outside = rng.permutation(members[(labels != cluster.label) & (labels >= 0)])[:CAUSAL_IMAGES]
            elsewhere = [rows for other, rows in groups.items() if other != target]  # images explained for other classes
            pasted_on = rng.permutation(np.concatenate(elsewhere))[:CAUSAL_IMAGES] if elsewhere else np.zeros(0, dtype=np.int64)
            grid = found[key, target].mean_maps.shape[1:]
            score = partial(self._score, target=target)
            pixels = self._pixels([names[i] for i in inside])
            rest = self._pixels([names[i] for i in outside]) if len(outside) else None
            region, shape = cluster.region, (int(grid[0]), int(grid[1]))
            transplant = transplant_check(
                score, pixels, rest, self._pixels([names[i] for i in pasted_on]) if len(pasted_on) else None, region, shape, self.seed
            )
            check = causal_check(score, pixels, rest, region, shape, seed=self.seed)
            checks[key, target, cluster.label] = replace(check, transplant=transplant)
        return checks

    def _score(self, pixel_values: torch.Tensor, target: int) -> torch.Tensor:
        """The class ``target``'s score ``(B,)``, as the maps folder stores it."""
        return self.scores(self.vit.logits(pixel_values))[:, target]

    def _pixels(self, names: Sequence[str]) -> torch.Tensor:
        from ..imagedata.images import read_image
        from ..imagedata.processing import processed_pixels

        pixels = processed_pixels(self.processor, self.options, [read_image(self.root, name) for name in names])
        return torch.stack(pixels).to(next(self.vit.model.parameters()).device)
