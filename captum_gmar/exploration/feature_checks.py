"""The two interventions that confirm a cluster of the model's features
(:mod:`~captum_gmar.exploration.features`), each a rise of the class's score on other
classes' images against a null measured alike.

**Its direction** (:func:`direction_check`). A cluster's direction is its members' mean
feature less the rest of the class's (a pattern-based concept vector, Pahde et al. 2022:
the difference of the means, which the classifier's distractor directions do not bend).
Added to every token of other classes' images at that layer (the class token too, which a
classifier reads: :mod:`captum_gmar.vit.layers`), it moves their mean feature by exactly
that direction; the class's score rises by :attr:`DirectionCheck.rise`. The null:
:data:`RANDOM_DIRECTIONS` random directions of the same norm, added alike.

**Its tone curve** (:func:`curve_check`). A direction finds the images, and need not
reproduce their change: a lower contrast is no shift of the mean feature (docs/explore.md).
The cluster is also put on the same images in pixels, by the tone curve that turns the
rest of its class's pixel values into its images'
(:meth:`~captum_gmar.exploration.intervention.Curve.matching`): the proxy ``repair`` puts
a tint, a cast or a contrast change on with. The null: the curve made alike from as many
images of the class drawn at random, :data:`RANDOM_DIRECTIONS` times. The other proxy
``repair`` has, the images' mean difference, is no check: on the untouched vit-tiny it
confirmed a cluster in 3 of 7 classes at 100 images a class (an object's silhouette,
averaged, carries its class), and the tone curve in none (docs/explore.md).

Each null is drawn only where the rise reaches
:data:`~captum_gmar.exploration.transplant.CONFIRMS_BY` (below, nothing could confirm it).
A check confirms where the rise stands beyond its null's mean (or 0) by
:data:`~captum_gmar.exploration.transplant.CONFIRMS_BY` and by
:data:`~captum_gmar.exploration.transplant.NULL_Z` times the null's spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .transplant import CONFIRMS_BY, NULL_Z

__all__ = ["RANDOM_DIRECTIONS", "CurveCheck", "DirectionCheck", "curve_check", "direction_check"]

#: the null's draws: random directions of the cluster's norm, or curves from random images of the class
RANDOM_DIRECTIONS = 8


@dataclass(frozen=True)
class _AgainstNull:
    """A rise against its null's draws, confirmed where it stands beyond both (see the module)."""

    #: the mean rise of the cluster's intervention
    rise: float
    #: the mean rise over the null's draws, and the standard deviation of their rises (NaN:
    #: not drawn, the rise being below :data:`CONFIRMS_BY`, short of any confirmation)
    random: float
    random_spread: float

    @property
    def screened(self) -> bool:
        """Whether the null was left undrawn (the rise below :data:`CONFIRMS_BY`)."""
        return math.isnan(self.random)

    @property
    def beyond(self) -> float:
        """How far the rise stands beyond the null's (or beyond 0, where the null lowers the
        class, or was not drawn)."""
        return self.rise - (0.0 if self.screened else max(self.random, 0.0))

    @property
    def needed(self) -> float:
        """How far beyond it must stand to confirm: :data:`CONFIRMS_BY`, or :data:`NULL_Z` times the null's spread."""
        return CONFIRMS_BY if self.screened else max(CONFIRMS_BY, NULL_Z * self.random_spread)

    @property
    def confirms(self) -> bool:
        """Whether the intervention carries the class (see the module)."""
        return self.beyond >= self.needed

    def _null(self, null: str) -> str:
        """The null (named ``null``) in words and figures, or why it was not drawn."""
        if self.screened:
            return f"{null} not drawn: the rise is below {CONFIRMS_BY}, short of any confirmation"
        return f"{null}: {self.random:+.3f} ± {self.random_spread:.3f}; {self.needed:.3f} needed beyond"


@dataclass(frozen=True)
class DirectionCheck(_AgainstNull):
    """The class's mean score rise where a direction is added to other classes' images'
    features, against random directions of its norm (see the module)."""

    #: how many other classes' images the direction was added to
    recipients: int
    #: the direction's norm
    norm: float
    #: their mean class score as they are
    plain: float

    def summary(self) -> str:
        """The check in words and figures."""
        null = self._null("random directions of the same norm")
        return (
            f"its direction (norm {self.norm:.2f}) added to the features of {self.recipients} images of other classes raises "
            f"the class's score from {self.plain:.3f} by {self.rise:+.3f} ({null})"
        )


def direction_check(
    shifted: Callable[[Tensor], Tensor], direction: Tensor, plain: Tensor, draws: int = RANDOM_DIRECTIONS, seed: int = 0
) -> DirectionCheck:
    """The intervention of one direction against ``draws`` random ones of its norm, drawn
    only where its rise reaches :data:`CONFIRMS_BY` (below, nothing could confirm it).

    Args:
        shifted: directions ``(S, D)`` -> the class's score ``(S, B)`` on the ``B``
            recipients with each direction added to their features.
        direction: ``(D,)``, the cluster's direction.
        plain: ``(B,)``, the class's score on the recipients as they are (the same for
            every cluster of a class: scored once).
        draws: random directions.
        seed: their seed.
    """
    norm, plain = float(direction.norm()), plain.double()
    rise = float((shifted(direction[None])[0].double() - plain).mean())
    random, spread = math.nan, math.nan
    if rise >= CONFIRMS_BY:
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randn(draws, len(direction), generator=generator, dtype=torch.float64)
        drawn = (drawn * (norm / drawn.norm(dim=1, keepdim=True))).to(direction)
        rises = (shifted(drawn).double() - plain).mean(dim=1)
        random, spread = float(rises.mean()), float(rises.std()) if draws > 1 else 0.0
    return DirectionCheck(recipients=len(plain), norm=norm, plain=float(plain.mean()), rise=rise, random=random, random_spread=spread)


@dataclass(frozen=True)
class CurveCheck(_AgainstNull):
    """The class's mean score rise where other classes' images go through a cluster's tone
    curve, against the curve made from random images of the class (see the module)."""

    #: how many other classes' images it was put on
    recipients: int

    def summary(self) -> str:
        """The check in words and figures."""
        null = self._null("the curve from random images of the class")
        return f"its tone curve, put on {self.recipients} images of other classes in pixels, raises the class's score by {self.rise:+.3f} ({null})"


def curve_check(
    rise_of: Callable[[np.ndarray], float], inside: np.ndarray, recipients: int, draws: int = RANDOM_DIRECTIONS, seed: int = 0
) -> CurveCheck:
    """A cluster's tone curve against the null (see the module).

    Args:
        rise_of: images chosen (``bool (P,)`` over the class's images read in pixels) ->
            the class's mean score rise with the tone curve from them to the rest on.
        inside: ``bool (P,)``: the cluster's images among them.
        recipients: how many images of other classes the rises are measured on.
        draws: the null's draws, each as many images of the class as ``inside`` holds.
        seed: their seed.
    """
    rise = rise_of(inside)
    random, spread = math.nan, math.nan
    if rise >= CONFIRMS_BY:
        generator = np.random.default_rng(seed)
        null = []
        for _ in range(draws):
            drawn = np.zeros(len(inside), dtype=bool)
            drawn[generator.permutation(len(inside))[: int(inside.sum())]] = True
            null.append(rise_of(drawn))
        random, spread = float(np.mean(null)), float(np.std(null, ddof=1)) if draws > 1 else 0.0
    return CurveCheck(recipients=recipients, rise=rise, random=random, random_spread=spread)
