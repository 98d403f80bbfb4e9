"""Does a cluster's region carry the class by itself? The transplant check: paste the
region's pixels, cut from the cluster's images, onto images of other classes, and see how
far the class's score rises; against the same region cut from the class's images outside
the cluster (its ordinary content in that place, without what the cluster has there).

The causal check (:mod:`captum_gmar.exploration.causal`) shows that the model uses the
region on the cluster's own images; a transplant shows that the region alone moves the
model elsewhere: "pasted on 64 T-shirts, it turns 0.95 of them into Sandals". Pure, over
pixel values and a scoring function; :class:`~captum_gmar.exploration.causal.ClusterChecker`
runs it on a maps folder's clusters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CONFIRMS_BY", "MARK_CONTRAST", "Transplant", "mark_mask", "paste_region", "region_mask", "transplant_check"]

#: a flagged cluster is *confirmed* where its region, pasted on other classes' images, raises
#: the class's score by this much more than the control paste (the marks of four trained
#: models rose 0.50 to 0.94 above their controls; an untouched model's cluster, -0.05)
CONFIRMS_BY = 0.2


@dataclass(frozen=True)
class Transplant:
    """The class's mean score rise where the region is pasted (see the module)."""

    #: on the other classes' images: the cluster's region pasted, and the rest's (NaN: none)
    rise: float
    control: float
    #: how many other classes' images were pasted on
    pasted: int
    #: on the class's own images outside the cluster, the cluster's region pasted (NaN: none)
    rise_own: float
    pasted_own: int
    #: why the figures are NaN, or ``None``
    note: str | None = None

    @property
    def confirms(self) -> bool:
        """Whether the region moves the model by itself: its rise on other classes' images
        exceeds the control's (0 where there is none, or it falls) by :data:`CONFIRMS_BY`."""
        if not self.pasted or math.isnan(self.rise):
            return False
        control = 0.0 if math.isnan(self.control) else max(self.control, 0.0)
        return self.rise - control >= CONFIRMS_BY

    def summary(self) -> str:
        """The check in words and figures."""
        if not self.pasted:
            return f"no transplant: {self.note}"
        control = "none to cut from" if math.isnan(self.control) else f"{self.control:+.3f}"
        text = (
            f"its region pasted on {self.pasted} images of other classes raises the class's score by {self.rise:+.3f} "
            f"(the same place cut from the class's other images: {control})"
        )
        if self.pasted_own:
            text += f"; on {self.pasted_own} of the class's other images by {self.rise_own:+.3f}"
        return text


def region_mask(region: Sequence[tuple[int, int]], grid: tuple[int, int], size: tuple[int, int], device: torch.device) -> Tensor:
    """``float (1, 1, H, W)``: 1 on the pixels of the ``region``'s patches of ``grid``
    ``(h, w)`` laid over an image of ``size`` ``(H, W)`` (nearest cell), else 0."""
    cells = torch.zeros(grid[0] * grid[1], device=device)
    cells[[r * grid[1] + c for r, c in region]] = 1.0
    return torch.nn.functional.interpolate(cells.view(1, 1, *grid), size=size, mode="nearest")


#: a pixel of the region belongs to the mark where the cluster's images differ from the rest's
#: by this many times their own spread there (:func:`mark_mask`)
MARK_CONTRAST = 2.0


def mark_mask(members: Tensor, rest: Tensor | None, mask: Tensor) -> Tensor:
    """``float (1, 1, H, W)``: the pixels of ``mask`` (a :func:`region_mask`) that hold the
    cluster's mark: where the cluster's images ``(N, C, H, W)`` agree with one another and
    differ from the rest of the class's ``(M, C, H, W)``, ``|mean_members - mean_rest| /
    (std_members + std_rest / 10)`` at least :data:`MARK_CONTRAST` (averaged over the
    channels; the rest's spread is its mean over the pixels). A tag, a frame or a line of
    text is drawn alike on every image that carries it; the object beside it in the region
    varies, and is left out. ``mask`` itself where no rest is given, or no pixel qualifies
    (a mark that moves, or differs from image to image).
    """
    if rest is None or len(rest) < 2 or len(members) < 2:
        return mask
    members, rest = members.float(), rest.float().to(members.device)
    spread = members.std(0) + 0.1 * rest.std(0).mean() + 1e-6
    contrast = ((members.mean(0) - rest.mean(0)).abs() / spread).mean(0)
    mark = mask * (contrast >= MARK_CONTRAST).to(mask.dtype)
    return mark if mark.any() else mask


def paste_region(targets: Tensor, donors: Tensor, mask: Tensor) -> Tensor:
    """``targets`` ``(B, C, H, W)`` with the pixels under ``mask`` ``(1, 1, H, W)`` taken
    from ``donors`` ``(B, C, H, W)``, image by image."""
    return targets * (1 - mask) + donors * mask


def transplant_check(
    scores: Callable[[Tensor], Tensor],
    members: Tensor,
    rest: Tensor | None,
    others: Tensor | None,
    region: Sequence[tuple[int, int]],
    grid: tuple[int, int],
    seed: int = 0,
    mask: Tensor | None = None,
) -> Transplant:
    """The transplant check of a cluster.

    Args:
        scores: pixel values ``(B, C, H, W)`` -> the class's score ``(B,)`` (the sigmoid
            for a multi-label model, else the softmax: a probability, so that a rise reads
            as a share of images turned).
        members: the cluster's images ``(N, C, H, W)``, the donors of the region.
        rest: the class's images outside the cluster ``(M, C, H, W)``, the control's donors
            and the own-class targets, or ``None``.
        others: images of other classes ``(K, C, H, W)``, the targets, or ``None``.
        region: ``(row, column)`` patches of ``grid`` ``(h, w)``.
        seed: which donor goes to which target.
        mask: ``(1, 1, H, W)``, the pixels to paste, such as the mark's
            (:func:`mark_mask`); default: the region's (:func:`region_mask`).

    Returns:
        :class:`Transplant`; NaN figures with a ``note`` where there is nothing to paste
        on, or no image to take the control from.
    """
    if not len(members):
        raise ValueError("a transplant needs the cluster's images (members)")
    if mask is None:
        mask = region_mask(region, grid, (members.shape[-2], members.shape[-1]), members.device)
    generator = torch.Generator().manual_seed(seed)

    def rise(donors: Tensor, targets: Tensor, plain: Tensor) -> float:
        """The mean rise of the score over ``plain``, the targets' own scores."""
        picked = donors[torch.randint(len(donors), (len(targets),), generator=generator).to(donors.device)]
        return float((scores(paste_region(targets, picked, mask)) - plain).float().mean())

    nan = math.nan
    with torch.no_grad():
        own = rise(members, rest, scores(rest)) if rest is not None and len(rest) else nan
        if others is None or not len(others):
            note = "the images hold no other class to paste on"
            return Transplant(nan, nan, 0, own, 0 if rest is None else len(rest), note)
        plain = scores(others)  # once for the pasted and the control
        pasted = rise(members, others, plain)
        control = rise(rest, others, plain) if rest is not None and len(rest) else nan
    missing = None if rest is not None and len(rest) else "the class has no image outside the cluster for the control"
    return Transplant(pasted, control, len(others), own, 0 if rest is None else len(rest), missing)
