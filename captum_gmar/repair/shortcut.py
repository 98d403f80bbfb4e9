"""A confirmed shortcut, and how far a model still follows it: the one description every
repair takes, and the one measurement every repair is judged by.

A :class:`Shortcut` is a region of the patch grid, the class it turns images into, and the
images it was seen on (the cluster's, whose region pixels are pasted elsewhere).
:func:`measure` gives a model's transplant rise (the class's mean probability rise on
held-out images of other classes with the shortcut's mark pasted on them,
:func:`~captum_gmar.exploration.transplant.transplant_check`) and its clean top-1 accuracy,
overall and per class, on held-out labelled images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..exploration.transplant import mark_mask, region_mask, transplant_check
from ..vit.model import VisionTransformer
from ..vit.outputs import logit_scores

__all__ = ["Labelled", "Measurement", "Shortcut", "measure"]


@dataclass(frozen=True)
class Shortcut:
    """What a repair removes."""

    #: the class the shortcut turns images into
    target: int
    #: its region: ``(row, column)`` patches of ``grid`` ``(h, w)``
    region: tuple[tuple[int, int], ...]
    grid: tuple[int, int]
    #: ``(N, C, H, W)``: images that carry it (the cluster's), the donors of its pixels
    donors: Tensor
    #: ``(M, C, H, W)``: the class's images without it (the rest of the class), or ``None``
    rest: Tensor | None = None

    def mark(self) -> Tensor:
        """``(1, 1, H, W)``: the pixels of the region that hold the shortcut's mark
        (:func:`~captum_gmar.exploration.transplant.mark_mask`), what the repairs paste
        and the measurement pastes: the donors' objects in the region stay out."""
        size = (self.donors.shape[-2], self.donors.shape[-1])
        return mark_mask(self.donors, self.rest, region_mask(self.region, self.grid, size, self.donors.device))


@dataclass(frozen=True)
class Labelled:
    """Labelled images: ``pixels`` ``(N, C, H, W)`` and ``labels`` ``int64 (N,)``."""

    pixels: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, held_out: float, seed: int) -> tuple[Labelled, Labelled]:
        """A seeded split: (the rest, a held-out share ``held_out`` of every class)."""
        generator = torch.Generator().manual_seed(seed)
        keep = torch.ones(len(self), dtype=torch.bool)
        for label in self.labels.unique():
            rows = torch.nonzero(self.labels == label).flatten()
            rows = rows[torch.randperm(len(rows), generator=generator)]
            count = round(held_out * len(rows))
            keep[rows[: max(count, 1) if len(rows) > 1 else count]] = False  # one at least of a class of two or more
        return Labelled(self.pixels[keep], self.labels[keep]), Labelled(self.pixels[~keep], self.labels[~keep])


@dataclass(frozen=True)
class Measurement:
    """How far a model follows a shortcut, and what it gets right without it."""

    #: the class's mean probability rise with the shortcut pasted on other classes' images
    rise: float
    #: top-1 accuracy on the held-out clean images, overall and per class (label -> accuracy)
    accuracy: float
    per_class: dict[int, float]


def measure(model: nn.Module, shortcut: Shortcut, held_out: Labelled, batch_size: int = 64, seed: int = 0) -> Measurement:
    """The transplant rise of the shortcut's mark (:meth:`Shortcut.mark`) on ``held_out``'s
    images of other classes, and the clean accuracy."""

    vit = VisionTransformer(model.eval())
    device = vit.parameter.device
    scores = logit_scores(vit)

    def logits(x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([vit.logits(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])

    others = held_out.pixels[held_out.labels != shortcut.target]
    transplant = transplant_check(
        lambda x: scores(logits(x))[:, shortcut.target],
        shortcut.donors,
        None,
        others,
        shortcut.region,
        shortcut.grid,
        seed,
        mask=shortcut.mark(),
    )
    right = logits(held_out.pixels).argmax(1) == held_out.labels
    per_class = {int(c): float(right[held_out.labels == c].float().mean()) for c in held_out.labels.unique()}
    return Measurement(transplant.rise, float(right.float().mean()), per_class)
