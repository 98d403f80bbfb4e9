"""How far a model still follows a shortcut: the one measurement every repair is judged by.

:func:`measure` gives a model's rise (the class's mean probability rise on held-out images
of other classes with the shortcut's intervention on them,
:meth:`~captum_gmar.exploration.intervention.Intervention.rises`) with its standard error,
and its clean top-1 accuracy, overall and per class, on held-out labelled images; with
``own``, how it reads the shortcut's own images against the rest of its class
(:class:`OwnImages`). :func:`while_it_falls` walks a repair that goes by steps.

Clean means without the shortcut. Held-out images of the class carry it as often as the
training images do, and a model that no longer follows it gets those wrong where it got
them right through the shortcut alone, which is the repair working, not its cost; on the
planted blur model the held-out fifth put a fine-tune's cost at 3.0 points where 2,000 clean
test scenes put it at 0.6 (docs/repair.md). :func:`~captum_gmar.repair.shortcut.carriers`
tells them apart as the original model's features do, and the accuracy counts the rest
(:attr:`~captum_gmar.repair.shortcut.Labelled.counted`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..vit.model import VisionTransformer
from ..vit.outputs import logit_scores
from .shortcut import Labelled, Shortcut

__all__ = ["JUDGED_FROM", "LEADS", "REACHES", "RMS_FALLS", "Measurement", "OwnImages", "measure", "own_images", "while_it_falls"]


#: the fewest images of the shortcut's, and of the rest of its class's, on which
#: :meth:`OwnImages.called_less` judges: below it one image moves a share by more than an
#: eighth, and one standard error lets a difference of one or two images through
JUDGED_FROM = 8


@dataclass(frozen=True)
class OwnImages:
    """How a model reads the images that carry the shortcut itself (the cluster's:
    :attr:`~captum_gmar.repair.shortcut.Shortcut.members`) against the rest of its class
    (:attr:`~captum_gmar.repair.shortcut.Shortcut.rest`): where the transplant rise measures
    what puts the shortcut on, on other classes' images, these are the shortcut where it is."""

    #: the class's mean score on the shortcut's images, and on the rest of its class's
    score: float
    rest_score: float
    #: the share of each that the model calls the class (top-1)
    called: float
    rest_called: float
    #: how many images each holds
    count: int
    rest_count: int
    #: whether the two were chosen by their labels
    #: (:attr:`~captum_gmar.repair.shortcut.Shortcut.by_label`): only then do the shares
    #: called the class compare
    by_label: bool = False
    #: for each of the rest of its class's images, in order, whether the model calls it the
    #: class (empty: not kept)
    rest_calls: tuple[bool, ...] = ()

    def called_less(self) -> bool:
        """Whether the model calls the class on the shortcut's images less often than on the
        rest of its class's, beyond one standard error of the difference of the two shares
        (Agresti and Caffo's: one image called and one not added to each, so that a share of
        0 or 1 has an error too; with 64 images each, about 8 points at a third). One error,
        not two: where the two shares are equal it fires one time in six, and a repair that
        reads the shortcut's images as the rest then gives way to the next (``auto``), where
        two would have let through the head that left the planted contrast change's Shirts
        called Shirts in 31% of the cluster's images against 42% of the rest (12.6% against
        35.9% of 2,000 test scenes; docs/repair.md). Not judged on fewer than
        :data:`JUDGED_FROM` images either side, nor where they were not chosen by their
        labels (:attr:`~captum_gmar.repair.shortcut.Shortcut.by_label`)."""
        if not self.by_label or min(self.count, self.rest_count) < JUDGED_FROM:
            return False
        error = 0.0
        for share, count in ((self.called, self.count), (self.rest_called, self.rest_count)):
            smoothed = (share * count + 1) / (count + 2)
            error += smoothed * (1 - smoothed) / (count + 2)
        return self.rest_called - self.called > math.sqrt(error)

    def costs_class(self, after: OwnImages) -> bool:
        """Whether ``after`` (the same images, read by a repaired model) calls the class on the
        rest of its class's images less often, beyond chance: of the images that turned,
        those lost outnumber those gained by more than twice the root of their sum
        (McNemar's test, about 2.5% one-sided where nothing changed: 5 lost and none gained
        at the least). Those images are not the cluster's, so a repair that reads them as
        less of the class costs the class's own evidence: on two planted noise models the
        projection through the ridge of 1 took the share called Shirts from 42% to 25% and
        from 44% to 22% of 64 of them, where 2,000 test scenes put the Shirts' top-1 from
        33.0% to 15.5% and from 38.3% to 19.4%, and the held-out fifth, 9 of its images the
        class's, put the cost over every class within the budget (docs/repair.md). Judged
        only where the images were chosen by their labels (:attr:`OwnImages.by_label`:
        explained for the prediction, they were all called the class before, and those the
        shortcut alone made so are lost by a repair that works), on :data:`JUDGED_FROM`
        images at least, and where both kept their calls."""
        before, now = self.rest_calls, after.rest_calls
        if not (self.by_label and after.by_label) or len(before) != len(now) or len(before) < JUDGED_FROM:
            return False
        lost = sum(b and not a for b, a in zip(before, now, strict=True))
        gained = sum(a and not b for b, a in zip(before, now, strict=True))
        return lost - gained > 2 * math.sqrt(lost + gained)

    @property
    def lead(self) -> float:
        """The class's mean score on the shortcut's images less on the rest of its class's:
        how much more of the class the model reads in the images that carry it."""
        return self.score - self.rest_score

    @property
    def judged(self) -> bool:
        """Whether this lead is large enough to judge a share of it taken away (:data:`LEADS`)."""
        return self.lead >= LEADS

    def removed(self, after: OwnImages) -> float | None:
        """The share of this lead that ``after`` (the same images, read by a repaired model)
        took away (above 1: they now score below the rest of the class; below 0: the lead
        grew); ``None`` where this lead is not :attr:`judged`."""
        return 1 - after.lead / self.lead if self.judged else None


#: the class's lead on the shortcut's own images before a repair (:attr:`OwnImages.lead`)
#: below which the share of it a repair took away is not given: the model then reads them
#: as little more of the class, and a share of a small lead is noise (the confirmed
#: shortcuts in docs/repair.md led by 0.45 to 0.65 before their repairs)
LEADS = 0.1

#: the share of the class's lead on the shortcut's own images (:meth:`OwnImages.removed`)
#: a repair must take away: below it the command's report warns (``cli.repair``), the
#: projection tries a larger ridge (:func:`~captum_gmar.repair.project.repair_project`), and
#: ``auto`` goes on to the next repair (:func:`~captum_gmar.repair.choice.short_of_lead`).
#: The lead is what the shortcut itself does on the images that carry it, where the
#: transplant rise is what its mark or proxy does on other classes'. On 18 repairs of
#: planted vit-tiny models (docs/repair.md) the share of it gone followed the drawn
#: shortcut's own effect on the class's test scenes: 49% to 62% gone where that effect lost
#: 55% to 64%, 76% or more where it lost 82% or more. It reads the class's own images, not
#: other classes': a blur's repair through its cluster's mean difference took 93% of the
#: lead and 82% of the own effect, and 59% of the effect on other classes; and on DINOv2's
#: colour cast it did not warn at 77% of the lead, where the own effect lost 70%
REACHES = 0.75


@dataclass(frozen=True, eq=False)  # compared by identity: it holds a tensor
class Measurement:
    """How far a model follows a shortcut, and what it gets right without it."""

    #: the class's mean probability rise with the shortcut pasted on other classes' images
    rise: float
    #: top-1 accuracy on the held-out clean images (:attr:`~captum_gmar.repair.shortcut.Labelled.counted`), overall and
    #: per class (label -> accuracy)
    accuracy: float
    per_class: dict[int, float]
    #: how many held-out images the accuracy counts, and how many it leaves out as carrying the shortcut
    counted: int = 0
    left_out: int = 0
    #: ``bool (counted,)``: which of the images counted the model gets right (``None``: not kept)
    right: Tensor | None = None
    #: how the model reads the shortcut's own images against the rest of its class
    #: (:class:`OwnImages`); ``None``: not measured (``measure(own=False)``) or no rest
    own: OwnImages | None = None
    #: the standard error of :attr:`rise`: the images' rises' standard deviation over the
    #: root of their number (NaN: not known, or fewer than two images)
    rise_error: float = math.nan
    #: the root mean square of the images' rises (NaN: not known, or no images): beside
    #: :attr:`rise`, what is left of a change drawn afresh on every image
    #: (:attr:`~captum_gmar.exploration.intervention.Intervention.drawn`), whose rises
    #: cancel in their mean
    rise_rms: float = math.nan
    #: whether the change measured is drawn afresh on every image
    #: (:attr:`~captum_gmar.exploration.intervention.Intervention.drawn`)
    drawn: bool = False

    def lead_removed(self, after: Measurement) -> float | None:
        """The share of the class's lead on the shortcut's own images that ``after`` took
        away (:meth:`OwnImages.removed`); ``None`` where either did not read them, or there
        was no lead to judge."""
        return None if self.own is None or after.own is None else self.own.removed(after.own)

    def rise_stands(self) -> bool:
        """Whether the rise stands above zero beyond twice its standard error (beyond zero
        where the error is not known): only then can it be told from noise on these images,
        and a share of it removed says something. A mark the model does not follow, pasted,
        raises the class by noise: a planted noise's six-pixel mark, pasted on training
        images of other classes, by +0.000, and before the command fell back to its
        region (:mod:`~captum_gmar.cli.repair_put_on`), the projection's table said 96%
        of it removed (docs/repair.md)."""
        return self.rise > (0.0 if math.isnan(self.rise_error) else 2 * self.rise_error)

    def cost_error(self, after: Measurement) -> float:
        """The standard error of the accuracy lost from this measurement to ``after`` (a
        share), paired over the same images: from the images that turned right or wrong,
        ``sqrt(b + c - (b - c)^2 / n) / n``; NaN where either kept no images."""
        if self.right is None or after.right is None or len(self.right) != len(after.right) or not len(self.right):
            return float("nan")
        worse, better = int((self.right & ~after.right).sum()), int((~self.right & after.right).sum())
        count = len(self.right)
        return math.sqrt(max(worse + better - (worse - better) ** 2 / count, 0.0)) / count

    def cost(self, after: Measurement) -> float:
        """The clean accuracy lost from this measurement to ``after`` (a share; negative: gained)."""
        return self.accuracy - after.accuracy

    def over(self, after: Measurement, budget: float) -> bool:
        """Whether ``after`` costs more clean accuracy than ``budget`` (a share) beyond one
        standard error of the cost (:meth:`cost_error`; none where it is not known). The
        held-out images are few: on 183 and 189 of them, notebook 04's 150-step fine-tune
        cost 1.1 ± 1.1 points and the 3-px blur's 2.1 ± 1.0, where 2,000 clean test scenes
        put them at a gain of 0.1 and a cost of 0.6 (docs/repair.md); a repair is refused
        as too costly where the measurement shows it, not where its noise does."""
        error = self.cost_error(after)
        return self.cost(after) - (0.0 if math.isnan(error) else error) > budget


def measure(
    model: nn.Module, shortcut: Shortcut, held_out: Labelled, batch_size: int = 64, seed: int = 0, own: bool = False
) -> Measurement:
    """The shortcut's rise on ``held_out``'s images of other classes
    (:meth:`~captum_gmar.exploration.intervention.Intervention.rises`), and the clean accuracy
    (on the images ``held_out.counted`` keeps); with ``own``, also how it reads the
    shortcut's own images and the rest of its class (:attr:`Measurement.own`: a pass over
    each, so for the models a repair ends with, not every step of a curve)."""
    vit = VisionTransformer(model.eval())
    logits = _logits(vit, held_out.pixels, batch_size)
    others = held_out.labels != shortcut.target
    scores = logit_scores(vit)  # the other classes' plain scores from the pass that gives the accuracy
    rises = shortcut.intervention.rises(vit, held_out.pixels[others], scores, seed, batch_size, scores(logits[others])[:, shortcut.target])
    rise = float(rises.mean()) if len(rises) else math.nan
    error = float(rises.std() / math.sqrt(len(rises))) if len(rises) > 1 else math.nan
    rms = float(rises.square().mean().sqrt()) if len(rises) else math.nan
    counted = torch.ones(len(held_out), dtype=torch.bool) if held_out.counted is None else held_out.counted.cpu()
    right, labels = (logits.argmax(1) == held_out.labels)[counted], held_out.labels[counted]
    per_class = {int(c): float(right[labels == c].float().mean()) for c in labels.unique()}
    read = own_images(model, shortcut, batch_size) if own else None
    return Measurement(
        rise,
        float(right.float().mean()),
        per_class,
        int(counted.sum()),
        int((~counted).sum()),
        right,
        read,
        error,
        rms,
        shortcut.intervention.drawn,
    )


def own_images(model: nn.Module, shortcut: Shortcut, batch_size: int = 64) -> OwnImages | None:
    """How ``model`` reads the shortcut's own images (:attr:`~captum_gmar.repair.shortcut.Shortcut.members`) against the
    rest of its class (:attr:`~captum_gmar.repair.shortcut.Shortcut.rest`): a pass over each; ``None`` where either is
    missing or empty."""
    if shortcut.rest is None or not len(shortcut.rest) or not len(shortcut.members):
        return None
    vit = VisionTransformer(model.eval())
    scores = logit_scores(vit)
    members, rest = _logits(vit, shortcut.members, batch_size), _logits(vit, shortcut.rest, batch_size)
    scored = [float(scores(each)[:, shortcut.target].mean()) for each in (members, rest)]
    calls = [each.argmax(1) == shortcut.target for each in (members, rest)]
    called = [float(each.float().mean()) for each in calls]
    return OwnImages(scored[0], scored[1], called[0], called[1], len(members), len(rest), shortcut.by_label, tuple(calls[1].cpu().tolist()))


def _logits(vit: VisionTransformer, pixels: Tensor, batch_size: int) -> Tensor:
    """``(N, K)`` float32 on the host: the logits of ``pixels`` ``(N, C, H, W)``, by batches."""
    with torch.no_grad():
        return torch.cat(
            [vit.logits(pixels[i : i + batch_size].to(vit.parameter.device)).float().cpu() for i in range(0, len(pixels), batch_size)]
        )


#: the share by which the images' rises' root mean square (:attr:`Measurement.rise_rms`)
#: must fall for :func:`while_it_falls` to take a step against a change drawn afresh on
#: every image (:attr:`~captum_gmar.exploration.intervention.Intervention.drawn`). Its mean
#: rise is gone after one direction of a projection and says nothing of the rest: on three
#: planted grain models (docs/repair.md) a texture drawn afresh had +0.011 to +0.038 left of
#: +0.25 to +0.64 after one direction through the ridge of 0.1, and removed 18% to 79% of the
#: drawn grain's effect, where three removed 90% to 101%. On the held-out fifth of five seeds
#: the root mean square fell by 10.9% to 31% at the third direction and by 6.3% at most, or
#: rose, at the fourth; four to six directions cost 1.1 to 2.6 points of clean accuracy on
#: the test scenes. Read off seeds 0 to 2, and judged on seeds 3 and 4: three directions
#: each, 97% and 96% of the drawn grain removed at -0.3 and -0.95 points (docs/repair.md).
RMS_FALLS = 0.1


def while_it_falls(
    model: nn.Module,
    shortcut: Shortcut,
    held_out: Labelled,
    step: Callable[[int], nn.Module],
    count: int,
    budget: float,
    unit: str,
    progress: bool = True,
    seed: int = 0,
    before: Measurement | None = None,
) -> tuple[int, nn.Module, tuple[tuple[int, Measurement], ...]]:
    """A repair that goes by steps (heads removed, directions projected out): ``step(k)``,
    the model after ``k`` of them, for ``k = 1..count``, each measured on ``held_out``,
    while clean accuracy loses at most ``budget`` (a share) beyond its standard error
    (:meth:`Measurement.over`) and the shortcut is followed less, by one of two readings:

    - the transplant rise comes nearer zero (it falls, and does not overshoot below zero by
      more than it was above); no step is taken where the rise is at or below zero (or not
      known), before or after a step: there is no rise left to remove;
    - against a change drawn afresh on every image
      (:attr:`~captum_gmar.exploration.intervention.Intervention.drawn`), whose rises cancel
      in their mean, the images' rises' root mean square (:attr:`Measurement.rise_rms`)
      falls by :data:`RMS_FALLS` of itself at least, whatever the mean's sign after a step
      (an overshoot shows in the root mean square, which holds the mean's square); no step
      is taken where the rise before any step is at or below zero.

    ``before``: ``model`` measured on ``held_out``, where the caller has it (measured here
    where not). Returns the steps kept, their model (``model`` itself for none) and the
    curve, ``(k, measurement)`` from 0 on, the step that stopped it included."""
    before = measure(model, shortcut, held_out, seed=seed) if before is None else before
    drawn = before.drawn
    curve = [(0, before)]
    best, best_model = 0, model
    for k in tqdm(range(1, count + 1), desc=f"{unit}s", unit=unit, disable=not progress):
        last = curve[-1][1]
        if not (before if drawn else last).rise > 0:
            break  # no rise left to remove (NaN: none measured)
        candidate = step(k)
        now = measure(candidate, shortcut, held_out, seed=seed)
        curve.append((k, now))
        nearer = now.rise_rms <= (1 - RMS_FALLS) * last.rise_rms if drawn else abs(now.rise) < last.rise
        if before.over(now, budget) or not nearer:
            break  # over the budget, or the shortcut followed no less: the previous step stands
        best, best_model = k, candidate
    return best, best_model, tuple(curve)
