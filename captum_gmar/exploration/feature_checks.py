"""The interventions that confirm a cluster of the model's features
(:mod:`~captum_gmar.exploration.features`), each a rise of the class's score on other
classes' images against a null measured alike.

**Its direction** (:func:`direction_check`). A cluster's direction is its members' mean
feature less the rest of the class's (a pattern-based concept vector, Pahde et al. 2022:
the difference of the means, which the classifier's distractor directions do not bend).
Added to every token of other classes' images at that layer (the class token too, which a
classifier reads: :mod:`captum_gmar.vit.layers`), it moves their mean feature by exactly
that direction; the class's score rises by :attr:`DirectionCheck.rise`. The null:
:data:`RANDOM_DIRECTIONS` random directions of the same norm, added alike.

**Its proxies in pixels** (:func:`pixel_check`). A direction finds the images, and need
not reproduce their change: a lower contrast is no shift of the mean feature, and neither
is a blur (docs/explore.md). The cluster is also put on the same images in pixels, by the
proxies ``repair`` puts it on with (:data:`PROXIES`): the tone curve that turns the rest of
its class's pixel values into its images'
(:meth:`~captum_gmar.exploration.intervention.Curve.matching`: a tint, a cast, a contrast
change), and the filter that gives the rest of its class its images' power spectrum
(:meth:`~captum_gmar.exploration.intervention.Filter.matching`: a blur). The null of each:
the proxy made alike from as many images of the class drawn at random,
:data:`RANDOM_DIRECTIONS` times. The other proxy ``repair`` has, the images' mean
difference, is no check: on the untouched vit-tiny it confirmed a cluster in 3 of 7
classes at 100 images a class (an object's silhouette, averaged, carries its class), and
the tone curve in none (docs/explore.md).

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

from .intervention import Curve, Filter
from .transplant import CONFIRMS_BY, NULL_Z

__all__ = ["PROXIES", "RANDOM_DIRECTIONS", "DirectionCheck", "PixelCheck", "direction_check", "pixel_check"]

#: the null's draws: random directions of the cluster's norm, or proxies from random images of the class
RANDOM_DIRECTIONS = 8
#: the proxies in pixels a cluster is checked by, by name (``strategies.json``'s keys): each
#: made from a cluster's images and the rest of its class (``matching(target, members, rest)``)
PROXIES: dict[str, type[Curve] | type[Filter]] = {"tone curve": Curve, "filter": Filter}


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
class PixelCheck(_AgainstNull):
    """The class's mean score rise where other classes' images go through a proxy made from
    a cluster's images (a key of :data:`PROXIES`), against the proxy made from random images
    of the class (see the module)."""

    #: how many other classes' images it was put on
    recipients: int
    #: which proxy: a key of :data:`PROXIES`
    proxy: str

    def summary(self) -> str:
        """The check in words and figures."""
        null = self._null(f"the {self.proxy} from random images of the class")
        return f"its {self.proxy}, put on {self.recipients} images of other classes in pixels, raises the class's score by {self.rise:+.3f} ({null})"


def pixel_check(
    rise_of: Callable[[np.ndarray], float],
    inside: np.ndarray,
    recipients: int,
    proxy: str,
    draws: int = RANDOM_DIRECTIONS,
    seed: int = 0,
) -> PixelCheck:
    """A cluster's proxy in pixels against the null (see the module).

    Args:
        rise_of: images chosen (``bool (P,)`` over the class's images read in pixels) ->
            the class's mean score rise with the proxy made from them and the rest on.
        inside: ``bool (P,)``: the cluster's images among them.
        recipients: how many images of other classes the rises are measured on.
        proxy: its name, a key of :data:`PROXIES`.
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
    return PixelCheck(recipients=recipients, proxy=proxy, rise=rise, random=random, random_spread=spread)
