"""Does a cluster's region carry the class by itself? The transplant check: paste the
region's pixels, cut from the cluster's images, onto images of other classes, and see how
far the class's score rises; against the same region cut from the class's images outside
the cluster (its ordinary content in that place, without what the cluster has there).

The causal check (:mod:`captum_gmar.exploration.causal`) shows that the model uses the
region on the cluster's own images; a transplant shows that the region alone moves the
model elsewhere: "pasted on 64 T-shirts, it turns 0.95 of them into Sandals". Pure, over
pixel values and a scoring function; :class:`~captum_gmar.exploration.checker.ClusterChecker`
runs it on a maps folder's clusters.

A region that holds the class's object raises the class wherever it is pasted, as a
shortcut does: a cluster of maps on the object at one place is pasted as that object. The
**null** tells the two apart, measured alike: the class's images of its *other* clusters,
each moved by whole patches so that the most of its own map lies on this cluster's region
(:func:`best_shifts`, :func:`moved`), pasted through the same pixels onto the same images. Where the class's object is what the region
holds, the moved images paste the object too, and rise as much; a mark that only the
cluster's images carry rises beyond them. :attr:`Transplant.confirms` holds a rise
against both the control and the null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CONFIRMS_BY",
    "MARK_CONTRAST",
    "NULL_Z",
    "TRANSPLANT_RULE",
    "Transplant",
    "best_shifts",
    "mark_mask",
    "moved",
    "paste_region",
    "region_mask",
    "transplant_check",
]

#: a cluster is *confirmed* where its region, pasted on other classes' images, raises the
#: class's score by this much more than both the control paste and the null (see the module),
#: and by :data:`NULL_Z` times the null's spread at the cluster's size
CONFIRMS_BY = 0.2
#: how many standard errors of the null a rise must stand beyond it: a cluster of ``n`` images
#: is ``n`` donors drawn from what the null pastes, whose mean rise spreads as ``sd / sqrt(n)``
#: (the null's per-image rises' standard deviation): a small cluster of typical objects rises
#: above the null's mean by chance (calibrated on the untouched vit-tiny, docs/results.md)
NULL_Z = 3.0
#: a screened transplant's note: only the paste and the null ran
SCREENED = (
    "screened: the control and the class's own images are pasted where the rise stands beyond the null as far as a confirmation needs"
)
#: the flag where a model is given, in words (``strategies.json``'s ``flag_by_transplant``)
TRANSPLANT_RULE = (
    f"its region, pasted on other classes' images, raises the class's score at least {CONFIRMS_BY} beyond both the same place "
    f"cut from the class's other images and the class's other clusters moved there, and {NULL_Z} standard errors of the latter"
)


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
    #: the null: the same paste from the class's other clusters' images, each moved so that
    #: the most of its own map lies on the region (NaN: the class has no other cluster)
    null: float = math.nan
    #: the null's standard error at the cluster's size: the standard deviation of its
    #: per-image rises over the square root of the cluster's images pasted (NaN: no null)
    null_spread: float = math.nan

    @property
    def screened(self) -> bool:
        """Whether only the paste and the null ran (:func:`transplant_check`'s ``screen``)."""
        return self.note == SCREENED

    @property
    def beyond(self) -> float:
        """How far the rise stands above the larger of the control and the null (each 0
        where missing or falling); NaN where nothing was pasted."""
        if not self.pasted or math.isnan(self.rise):
            return math.nan
        baselines = [0.0] + [value for value in (self.control, self.null) if not math.isnan(value)]
        return self.rise - max(baselines)

    @property
    def needed(self) -> float:
        """What :attr:`beyond` must reach: :data:`CONFIRMS_BY`, or :data:`NULL_Z` times
        :attr:`null_spread` where that is more."""
        return CONFIRMS_BY if math.isnan(self.null_spread) else max(CONFIRMS_BY, NULL_Z * self.null_spread)

    @property
    def confirms(self) -> bool:
        """Whether the region moves the model by itself, beyond what the class's own
        content there does: :attr:`beyond` at least :attr:`needed`."""
        return not math.isnan(self.beyond) and self.beyond >= self.needed

    def summary(self) -> str:
        """The check in words and figures."""
        if not self.pasted:
            return f"no transplant: {self.note}"
        control = (
            ("not pasted, the rise standing less than the null" if self.screened else "none to cut from")
            if math.isnan(self.control)
            else f"{self.control:+.3f}"
        )
        null = "no other cluster" if math.isnan(self.null) else f"{self.null:+.3f}, {self.needed:.3f} needed beyond"
        text = (
            f"its region pasted on {self.pasted} images of other classes raises the class's score by {self.rise:+.3f} "
            f"(the same place cut from the class's other images: {control}; "
            f"the class's other clusters moved there: {null})"
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


def best_shifts(masses: Tensor, region: Sequence[tuple[int, int]]) -> Tensor:
    """``int64 (N, 2)``: for each map's mass ``(N, h, w)`` (non-negative), the shift in whole
    patches, ``(down, right)``, that puts the most of it on the ``region``'s patches (of
    the smallest shifts that do, the first): where the image's own evidence lies on the
    region once the image is :func:`moved` by it."""
    count, rows, columns = masses.shape
    cells = torch.zeros(1, 1, rows, columns, dtype=masses.dtype, device=masses.device)
    cells[0, 0, [r for r, _ in region], [c for _, c in region]] = 1.0
    # on[i, j]: the mass on the region with the map moved down rows - 1 - i, right columns - 1 - j
    padded = torch.nn.functional.pad(masses[:, None], (columns - 1, columns - 1, rows - 1, rows - 1))
    on = torch.nn.functional.conv2d(padded, cells)[:, 0]
    down = rows - 1 - torch.arange(2 * rows - 1, device=masses.device)
    right = columns - 1 - torch.arange(2 * columns - 1, device=masses.device)
    distance = down.abs()[:, None] + right.abs()[None, :]
    scale = masses.flatten(1).sum(dim=1).clamp_min(1e-12)[:, None, None]
    best = (on / scale - 1e-6 * distance).flatten(1).argmax(dim=1)  # a tie goes to the smaller move
    return torch.stack([down[best // (2 * columns - 1)], right[best % (2 * columns - 1)]], dim=1)


def moved(images: Tensor, shifts: Tensor) -> Tensor:
    """``images`` ``(B, C, H, W)``, image ``i`` moved down by ``shifts[i, 0]`` and right by
    ``shifts[i, 1]`` pixels (``int64 (B, 2)``, negative: up or left); what comes in from
    outside is the image's mean value per channel (as a masked patch is filled)."""
    out = images.mean(dim=(2, 3), keepdim=True).expand_as(images).clone()
    height, width = images.shape[-2:]
    for i, (down, right) in enumerate(shifts.tolist()):
        if abs(down) >= height or abs(right) >= width:
            continue  # moved out of the picture entirely: only the fill remains
        source = images[i, :, max(0, -down) : height - max(0, down), max(0, -right) : width - max(0, right)]
        out[i, :, max(0, down) : max(0, down) + source.shape[1], max(0, right) : max(0, right) + source.shape[2]] = source
    return out


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
    null_donors: Tensor | None = None,
    plain: Tensor | None = None,
    screen: bool = False,
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
        null_donors: the null's donors, one per image of ``others`` ``(K, C, H, W)``: the
            class's other clusters' images, already :func:`moved` (see the module), or
            ``None`` (no null).
        plain: the class's score on ``others`` as they are ``(K,)``, where known (else scored here).
        screen: only the paste and the null, in one batch (the control and the own-class
            figures NaN, a ``note`` saying so): what decides whether the rest is worth
            running.

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
        if others is None or not len(others):
            own = rise(members, rest, scores(rest)) if rest is not None and len(rest) else nan
            note = "the images hold no other class to paste on"
            return Transplant(nan, nan, 0, own, 0 if rest is None else len(rest), note)
        if null_donors is not None and len(null_donors) != len(others):
            raise ValueError(f"null_donors: one per image of others ({len(others)}), got {len(null_donors)}")
        plain = scores(others) if plain is None else plain  # once for the pasted, the control and the null
        if screen:
            picked = members[torch.randint(len(members), (len(others),), generator=generator).to(members.device)]
            donors = picked if null_donors is None else torch.cat([picked, null_donors])
            rises = (
                scores(paste_region(others.repeat(len(donors) // len(others), 1, 1, 1), donors, mask))
                - plain.repeat(len(donors) // len(others))
            ).float()
            null, spread = _null_figures(rises[len(others) :], len(members))
            return Transplant(float(rises[: len(others)].mean()), nan, len(others), nan, 0, SCREENED, null, spread)
        pasted = rise(members, others, plain)
        control = rise(rest, others, plain) if rest is not None and len(rest) else nan
        own = rise(members, rest, scores(rest)) if rest is not None and len(rest) else nan
        null, spread = _null_figures(
            None if null_donors is None else (scores(paste_region(others, null_donors, mask)) - plain).float(), len(members)
        )
    missing = None if rest is not None and len(rest) else "the class has no image outside the cluster for the control"
    return Transplant(pasted, control, len(others), own, 0 if rest is None else len(rest), missing, null, spread)


def _null_figures(rises: Tensor | None, members: int) -> tuple[float, float]:
    """The null's mean rise and its standard error at ``members`` donors (NaN, NaN: no null)."""
    if rises is None or not len(rises):
        return math.nan, math.nan
    spread = float(rises.std()) / math.sqrt(members) if len(rises) > 1 else math.nan
    return float(rises.mean()), spread
