"""Repair by projecting the shortcut out of the classifier's input: P-ClArC (Anders et al.,
"Finding and removing Clever Hans", 2022) with a pattern-based direction (Pahde et al.,
"Navigating Neural Space", 2022), as Reveal2Revise does for ViTs (Pahde et al., 2025), and
the projection made the least change to clean outputs, as LEACE makes it (Belrose et al.,
"LEACE: Perfect linear concept erasure in closed form", 2023).

The directions are the change the shortcut makes in the classifier's inputs, measured in
pairs: each training image with the shortcut put on (at strength 1) and without. The first
is their mean (the pattern), the others the principal directions of the changes left over;
where several proxies put it on (:class:`~captum_gmar.exploration.intervention.OneOf`),
each proxy is put on every image and each one's mean comes first, in turn.
The classifier's input ``x`` becomes ``x - V M A^T (x - z)``: ``V`` ``(F, k)`` those
directions, ``z`` and ``S`` the mean and the covariance of the training images' inputs as
they are (those that carry the shortcut by nature, a few, included), ``S`` ridged
(:data:`RIDGES`), ``A = S^-1 V`` and ``M = (A^T V)^-1``. A change along ``V`` then moves no
logit, so the classifier no longer reads the shortcut's change; of all the edits that do
that, this one changes the training inputs' logits least in mean square (exactly so
without the ridge), and keeps their mean. Along ``V`` an input goes where inputs with its
other coordinates lie on average, where the orthogonal projection (``A = V``, P-ClArC's)
puts every input at the mean along ``V``, whatever the inputs vary in there. For a linear
classifier it folds into the weights, ``W' = W - (W V) M A^T`` and
``b' = b + (W V) M A^T z``: nothing is trained, the backbone and its attention maps stay bit
for bit as they were, and the repaired model is a standard model of its class.

The shortcut's change and the class's own evidence can share a direction: on a planted
grain model (docs/repair.md) the mean change's cosine with the clean Shirts' mean less the
other classes' was 0.65, and the orthogonal projection took the Shirts' clean top-1 from
33.5% to 1.5%.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..exploration.intervention import ways
from ..vit.model import VisionTransformer
from .classifier import classifier_name
from .measurement import REACHES, Measurement, measure, own_images, while_it_falls
from .shortcut import Labelled, Shortcut

__all__ = ["LEFT", "RIDGES", "ProjectRepair", "Projection", "change_directions", "linear_classifier", "projection", "repair_project"]

#: the ridges :func:`repair_project` tries, smallest first, each added to the inputs'
#: covariance as a share of its mean variance (its trace over ``F``):
#: ``S = C + ridge * tr(C) / F * I``. The covariance of a few hundred inputs of a few
#: hundred features is nearly singular, and ``S^-1`` then leans on directions the images
#: barely sample. The smallest changes clean outputs least; a larger one reads an input
#: more nearly along ``V`` itself (the orthogonal projection at the limit), which removes
#: more of a change that is not all in ``V`` (the shortcut itself beside its proxy's
#: directions) and costs more of the class's own evidence. Measured on 2,000 test scenes
#: (docs/repair.md, one direction each, ``tools.shortcut.ridges``): at 0.1, 101% of the
#: planted grain at -0.4 points,
#: 87% of the blur of 1.5 px at +0.7, 73% of DINOv2's tint at +1.1; at 1, 102% of the
#: grain at -2.0, 100% of the blur at -0.5 (the Shirts' top-1 33% to 23%), 84% of the
#: tint at +1.1; at 10, 102% of the blur at -1.7, 92% of the tint at +1.2; at 0.01, 93%
#: of the grain at +0.8 and 85% of DINOv2's tag at -0.2.
RIDGES = (0.1, 1.0, 10.0)

#: how far from zero, as a share of the held-out rise before, a projection may leave the
#: rise (on either side) before a larger ridge is tried. The proxy's held-out rise
#: understates what the shortcut itself keeps: through the smallest ridge, the projection
#: the command kept left 7% of the blur of 1.5 px's filter's held-out rise and 13% of the
#: drawn blur's effect, and 9% of DINOv2's tint's tone curve's and 18% of the tint's
#: (eight directions; docs/repair.md).
LEFT = 0.05


class Projection:
    """The directions a shortcut moves a classifier's inputs in, measured in pairs, and the
    inputs they are projected against.

    ``directions`` ``(k, F)`` orthonormal rows: the mean change first, then the changes'
    principal directions left over; ``reference`` ``(F,)`` and ``covariance`` ``(F, F)``: the
    inputs' mean and covariance, without the shortcut put on; ``share`` ``(k,)``: the cumulative
    share of the changes' squared norm the first ``1..k`` directions hold.
    """

    def __init__(self, directions: Tensor, reference: Tensor, covariance: Tensor, share: Tensor) -> None:
        self.directions, self.reference, self.covariance, self.share = directions, reference, covariance, share

    def reading(self, k: int, ridge: float = RIDGES[0]) -> Tensor:
        """``(k, F)``: ``M A^T`` of the module's formula for the first ``k`` directions, what the
        projection reads off an input to move it back along them (float64)."""
        v = self.directions[:k].cpu().double().T  # (F, k)
        covariance = self.covariance.cpu().double()
        features = len(covariance)
        ridged = covariance + ridge * covariance.trace() / features * torch.eye(features, dtype=torch.float64)
        a = torch.linalg.solve(ridged, v)  # (F, k)
        return torch.linalg.solve(a.T @ v, a.T)

    def fold(self, classifier: nn.Linear, k: int, ridge: float = RIDGES[0]) -> None:
        """Fold the projection of the first ``k`` directions into ``classifier`` (in place;
        computed in float64 on the host whatever the layer's dtype and device: a few small
        matrices, and some devices have no float64).

        Raises:
            UnsupportedModelError: the projection moves the logits by a constant and the
                layer has no bias to hold it.
        """
        weight = classifier.weight.detach().cpu().double()
        reading = self.reading(k, ridge)
        along = weight @ self.directions[:k].cpu().double().T  # (K, k): each class's weight along each direction
        shift = along @ (reading @ self.reference.cpu().double())
        if classifier.bias is None and shift.abs().max() > 0:
            raise UnsupportedModelError("the classifier has no bias to fold the projection's offset into")
        with torch.no_grad():
            classifier.weight.copy_(weight - along @ reading)  # copy_ casts to the layer's dtype and device
            if classifier.bias is not None:
                classifier.bias.copy_(classifier.bias.detach().cpu().double() + shift)


@torch.no_grad()
def projection(model: nn.Module, shortcut: Shortcut, train: Labelled, k: int, batch_size: int = 64, seed: int = 0) -> Projection:
    """The first ``k`` directions the shortcut moves ``model``'s classifier inputs in, on
    ``train``'s images (each with the shortcut on, at strength 1, and without).

    Fewer than ``k`` where the changes span fewer.

    Raises:
        ValueError: fewer than two training images, or ``k`` below 1.
        UnsupportedModelError: the classifier (:func:`~captum_gmar.repair.classifier.classifier_name`)
            is not one linear layer with a bias reading a vector, or its output is not the
            model's logits; or the shortcut does not move its input on average.
    """
    if len(train) < 2:
        raise ValueError("the projection needs two training images at least (train), for the inputs' covariance")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    classifier = linear_classifier(model)
    if classifier.bias is None:  # refused before any pass: the offset to the inputs' mean has nowhere to go
        raise UnsupportedModelError("the classifier has no bias to fold the projection's offset into")
    vit = VisionTransformer(model.eval())
    device = vit.parameter.device
    generator = torch.Generator().manual_seed(seed)
    captured: list[Tensor] = []
    hook = classifier.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    # each way of putting it on, on every image (a proxy each: OneOf), so that each way's mean change is a direction
    each = ways(shortcut.intervention)
    clean: list[Tensor] = []
    changes: list[list[Tensor]] = [[] for _ in each]
    try:
        for start in range(0, len(train), batch_size):
            x = train.pixels[start : start + batch_size].to(device)
            captured.clear()
            logits = vit.logits(x).float()
            if len(captured) != 1 or captured[0].dim() != 2:
                raise UnsupportedModelError("the classifier must run once per pass on one vector per image to be projected")
            # in the input's own dtype: a half-precision copy would differ beyond the tolerance
            if start == 0 and not torch.allclose(classifier(captured[0]).float(), logits, atol=1e-4, rtol=1e-4):
                raise UnsupportedModelError("the classifier's output is not the model's logits: its input cannot be projected")
            off = captured[0].float()
            clean.append(off)
            for way, changed in zip(each, changes, strict=True):
                captured.clear()
                way.logits(vit, x, torch.ones(len(x), device=device), generator)
                changed.append(captured[0].float() - off)
    finally:
        hook.remove()
    directions, share = change_directions(torch.stack([torch.cat(changed) for changed in changes]), k)
    inputs = torch.cat(clean)
    return Projection(directions.cpu(), inputs.mean(0).cpu(), torch.cov(inputs.T).cpu(), share.cpu())


def change_directions(change: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The first ``k`` directions of paired changes ``change`` ``(N, F)`` (each image with
    the shortcut less without), or ``(P, N, F)`` for ``P`` ways of putting it on the same
    images: ``(k', F)`` orthonormal rows, each way's mean first, in turn (its part not along
    those before it; none where that part is within a thousandth of it), then the principal
    directions of the changes left over (``k' <= k``: none beyond their rank), and
    ``(k',)`` the cumulative share of the changes' squared norm the first ``1..k'`` hold.

    Raises:
        UnsupportedModelError: the changes do not move the input on average.
    """
    # in float64: the changes left over can be a thousandth of those along the means, and
    # float32 round-off of the latter would lean the later directions towards the means
    parts = (change if change.dim() == 3 else change[None]).double()
    count, flat = parts.shape[1], parts.flatten(0, 1)  # flat: (P * N, F)
    # float32 round-off of the changes: below it a direction is noise, not the shortcut
    floor = 1e-4 * float(change.norm())
    firsts: list[Tensor] = []
    for mean in parts.mean(1):
        left = mean
        for _ in range(2):  # its part not along the means before; twice, as one pass leaves round-off along them
            left = left - sum(((left @ d) * d for d in firsts), torch.zeros_like(left))
        # a mean within a thousandth of those before (0.06 degrees) adds no direction of its own
        if float(left.norm()) * count**0.5 > floor and float(left.norm()) > 1e-3 * float(mean.norm()) and len(firsts) < k:
            firsts.append(left / left.norm())
    if not firsts:
        raise UnsupportedModelError("the shortcut does not move the classifier's input on average: there is nothing to project out")
    basis = torch.stack(firsts)
    rest = flat - (flat @ basis.T) @ basis  # the changes less their part along the means taken
    _, values, later = torch.linalg.svd(rest, full_matrices=False)
    more = k - len(firsts)
    later = later[:more][values[:more] > floor]  # none beyond their rank
    directions = torch.cat([basis, later])
    total = flat.pow(2).sum().clamp_min(torch.finfo(flat.dtype).tiny)
    share = torch.cumsum((flat @ directions.T).pow(2).sum(0), 0) / total
    return directions.to(change.dtype), share.to(change.dtype)


@dataclass(frozen=True)
class ProjectRepair:
    """The model with the directions chosen projected out, and the curves that chose them."""

    model: nn.Module
    #: how many directions were projected out (0: none)
    k: int
    #: the share of the shortcut's change in the classifier's inputs that those hold
    share: float
    #: the ridge they were projected out through (:data:`RIDGES`; the first tried where
    #: none was kept)
    ridge: float
    #: for each ridge tried, in turn: ``(ridge, curve)``, the curve ``(directions projected
    #: out, measurement)`` from 0 (the model as it was) on, the step that stopped it included
    curves: tuple[tuple[float, tuple[tuple[int, Measurement], ...]], ...]
    #: for each ridge tried, in turn: the share of the class's lead on the shortcut's own
    #: images its curve's projection took away (:meth:`~captum_gmar.repair.measurement.OwnImages.removed`;
    #: ``None`` where it kept no direction, or there was no lead to judge)
    leads: tuple[float | None, ...]
    #: ``(k, F)``: the directions projected out, orthonormal rows (none where ``k`` is 0)
    directions: Tensor

    @property
    def curve(self) -> tuple[tuple[int, Measurement], ...]:
        """The curve of the ridge kept."""
        return dict(self.curves)[self.ridge]


def repair_project(
    model: nn.Module,
    shortcut: Shortcut,
    train: Labelled,
    held_out: Labelled,
    budget: float = 0.01,
    max_directions: int = 8,
    progress: bool = True,
    seed: int = 0,
    ridges: Sequence[float] = RIDGES,
) -> ProjectRepair:
    """Project the directions the shortcut moves the classifier's inputs in (:func:`projection`,
    on ``train``) out of a copy of ``model``, one more at a time, while the transplant rise
    on ``held_out`` comes nearer zero (against a change drawn afresh on every image, while
    its rises' root mean square falls: :func:`~captum_gmar.repair.measurement.while_it_falls`)
    and clean accuracy loses at most ``budget`` (a share) beyond its standard error
    (:meth:`~captum_gmar.repair.measurement.Measurement.over`); at most ``max_directions``.

    Through each of ``ridges`` in turn (:data:`RIDGES`): a larger one is tried only while the
    projection kept (or none, where none was) leaves the rise further than :data:`LEFT` of
    it from zero, on either side, or takes less than :data:`~captum_gmar.repair.measurement.REACHES`
    of the class's lead on the shortcut's own images over the rest of its class
    (:meth:`~captum_gmar.repair.measurement.OwnImages.removed`; where there is a lead to
    judge). A paste's directions can take its transplant rise to zero and leave the
    shortcut itself where it reaches beyond the paste: on a planted noise model
    (docs/repair.md), through its cluster's mark, the ridge of 0.1 took 34% of the lead and
    removed 59% of the drawn noise's effect, the ridge of 1 92% and 93%. A larger ridge's
    projection is kept where it brings the rise nearer zero, or, the rise within
    :data:`LEFT` of zero for both, where it takes nearer all of the lead (an overshoot, the
    shortcut's images now scored below the rest, counts as far as a shortfall); within the
    budget either way. A larger ridge costs the class's own clean accuracy more
    (docs/repair.md: on the blur of 1.5 px the ridge of 1 took its class's top-1 from 33%
    to 23% where 0.1 left 38%; on the noise, 33.0% to 15.5%), which the budget, on all classes,
    may not see. Where the model has no rise to begin with, only the first is tried, and it
    takes no step. The ridges are judged by the mean rise and the lead whatever the proxy,
    one drawn afresh included: through the ridge of 0.1, three directions of the grain's
    texture left 9% to 16% of its rises' root mean square, above :data:`LEFT`, and took
    110% to 137% of the lead (four seeds; docs/repair.md), so the ridge of 1, which cost
    the class more, was not tried.

    Raises:
        ValueError: fewer than two training images, or no ridge.
        UnsupportedModelError: as :func:`projection` refuses (a classifier that is not one
            linear layer with a bias reading a vector, a shortcut that does not move its input).
    """
    if not ridges:
        raise ValueError("repair_project needs one ridge at least (ridges)")
    found = projection(model, shortcut, train, max_directions, seed=seed)
    before = measure(model, shortcut, held_out, seed=seed)
    # the class's lead on the shortcut's own images, where there is a rise to remove and a lead to judge
    own_before = own_images(model, shortcut) if before.rise > 0 else None
    if own_before is not None and not own_before.judged:
        own_before = None

    def folded(k: int, ridge: float) -> nn.Module:
        candidate = copy.deepcopy(model)
        found.fold(linear_classifier(candidate), k, ridge)
        return candidate.eval()

    def near(rise: float) -> bool:
        return abs(rise) <= LEFT * before.rise

    def done(rise: float, lead: float | None) -> bool:
        return near(rise) and (lead is None or lead >= REACHES)

    def better(rise: float, lead: float | None, than_rise: float, than_lead: float | None) -> bool:
        if not near(than_rise):
            return abs(rise) < abs(than_rise)  # nearer zero
        # both near zero: nearer all of the lead taken (an overshoot, the images now below the rest, is as far)
        return near(rise) and than_lead is not None and lead is not None and abs(1 - lead) < abs(1 - than_lead)

    kept: tuple[float, int, float, float | None] | None = None  # ridge, directions, rise, lead gone: refolded at the end
    curves: list[tuple[float, tuple[tuple[int, Measurement], ...]]] = []
    leads: list[float | None] = []
    for ridge in ridges:
        if curves and (before.rise <= 0 or kept is not None and done(kept[2], kept[3])):
            break  # no rise to remove, or done: no larger ridge, which costs more of the class's own evidence
        step = functools.partial(folded, ridge=ridge)
        k, best, curve = while_it_falls(model, shortcut, held_out, step, len(found.directions), budget, "direction", progress, seed, before)
        curves.append((ridge, curve))
        read = own_images(best, shortcut) if k and own_before is not None else None  # a pass over them per ridge
        lead = None if read is None or own_before is None else own_before.removed(read)
        leads.append(lead)
        rise = curve[k][1].rise
        if k and (kept is None or better(rise, lead, kept[2], kept[3])):
            kept = (ridge, k, rise, lead)
    if kept is None:
        return ProjectRepair(model, 0, 0.0, ridges[0], tuple(curves), tuple(leads), found.directions[:0])
    ridge, k, _, _ = kept
    return ProjectRepair(folded(k, ridge), k, float(found.share[k - 1]), ridge, tuple(curves), tuple(leads), found.directions[:k])


def linear_classifier(model: nn.Module) -> nn.Linear:
    """The model's classifier, where it is one linear layer.

    Raises:
        UnsupportedModelError: it is not.
    """
    name = classifier_name(model)
    classifier = model.get_submodule(name)
    if not isinstance(classifier, nn.Linear):
        raise UnsupportedModelError(
            f"the classifier ({name}: {type(classifier).__name__}) is not one linear layer: its input cannot be projected out"
        )
    return classifier
