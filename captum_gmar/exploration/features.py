"""Strategies with no place: a class's images clustered by the model's own features, and
each cluster's direction added inside the model to other classes' images.

A map over patches shows where the model looks; a shortcut that is everywhere (a colour
cast, a lifted background, a texture over the whole image) has no place to look at, and
no cluster of maps isolates it. The model's features can: :func:`feature_strategies`
clusters one class's images by the mean of the patch tokens that a later layer puts out
(:func:`~captum_gmar.vit.layers.pooled_patches`), reduced to their first
:data:`COMPONENTS` principal components, with the clustering of the maps
(:func:`~captum_gmar.exploration.spectral.spectral_clusters`: the same graph, spectrum,
eigengap and k-means).

**The intervention** (:func:`direction_check`). A cluster's direction is its members'
mean feature less the rest of the class's (a pattern-based concept vector, Pahde et al.
2022: the difference of the means, which the classifier's distractor directions do not
bend). Added to every token of other classes' images at that layer (the class token too,
which a classifier reads: :mod:`captum_gmar.vit.layers`), it moves their mean feature by
exactly that direction; the class's score rises by :attr:`DirectionCheck.rise`.
The null: :data:`RANDOM_DIRECTIONS` random directions of the same norm, added alike (drawn
only where the rise reaches :data:`~captum_gmar.exploration.transplant.CONFIRMS_BY`: below,
nothing could confirm it). A
cluster is confirmed where its rise stands beyond the random directions' mean (or 0) by
:data:`~captum_gmar.exploration.transplant.CONFIRMS_BY` and by
:data:`~captum_gmar.exploration.transplant.NULL_Z` times their spread.

**Its tone curve** (:func:`curve_check`). A direction finds the images, and need not
reproduce their change: a lower contrast is no shift of the mean feature (docs/explore.md).
Each cluster is also put on in pixels, by the tone curve that turns the rest of its class's
pixel values into its images' (:meth:`~captum_gmar.exploration.intervention.Curve.matching`,
made from up to :data:`CURVE_IMAGES` of each), on the same images of other classes: the
proxy ``repair`` puts a tint, a cast or a contrast change on with. The null: the curve
made alike from as many images of the class drawn at random, :data:`RANDOM_DIRECTIONS`
times (drawn only where the cluster's rise reaches
:data:`~captum_gmar.exploration.transplant.CONFIRMS_BY`). It confirms by the same margins.
The other proxy ``repair`` has, the images' mean difference, is no check: on the untouched
vit-tiny it confirmed a cluster in 3 of 7 classes at 100 images a class (an object's
silhouette, averaged, carries its class), and the tone curve in none (docs/explore.md).

A cluster that a map cluster of its class also isolates (F1 at least :data:`MATCHED_AT`)
has a place, where the maps' own checks judge it; one that no map cluster matches, and
that its direction or its tone curve confirms, is a **shortcut with no place** (:attr:`FeatureCluster.flagged`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._extra import need
from .causal import ClusterChecker
from .intervention import Curve
from .spectral import spectral_clusters, typical_members
from .strategies import maps_needed
from .transplant import CONFIRMS_BY, NULL_Z

if TYPE_CHECKING:
    from .strategies import Strategies

__all__ = [
    "COMPONENTS",
    "FEATURE_IMAGES",
    "FEATURE_RULE",
    "MATCHED_AT",
    "CURVE_IMAGES",
    "CURVE_POOL",
    "RANDOM_DIRECTIONS",
    "check_layer",
    "class_features",
    "cluster_direction",
    "DirectionCheck",
    "FeatureCluster",
    "FeatureStrategies",
    "CurveCheck",
    "default_layer",
    "direction_check",
    "feature_strategies",
    "map_match",
    "curve_check",
]

#: principal components the pooled features are reduced to before the graph
COMPONENTS = 32
#: random directions of the cluster's norm: the intervention's null
RANDOM_DIRECTIONS = 8
#: the most images of other classes a direction is added to (half the transplant's: a
#: direction that rises far enough is followed by ``RANDOM_DIRECTIONS`` passes over them)
FEATURE_IMAGES = 32
#: the most of a class's images read in pixels, from which its clusters' tone curves are made
CURVE_POOL = 256
#: the most of a cluster's images, and of the rest of its class, a tone curve is made from (as ``repair`` makes it)
CURVE_IMAGES = 64
#: a feature cluster has a place where a map cluster of its class isolates its images with this F1
MATCHED_AT = 0.5
#: the flag of a feature cluster, in words (``strategies.json``'s ``features.rule``)
FEATURE_RULE = (
    f"no map cluster of its class isolates its images (F1 below {MATCHED_AT}), and added to other classes' images, its direction "
    f"in the model's features or its tone curve in pixels raises the class's score at least {CONFIRMS_BY} beyond its null "
    f"(random directions of the same norm; the curve made from random images of the class), and {NULL_Z} times the null's spread"
)


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
    rise: float
    random: float
    random_spread: float

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
    rise: float
    random: float
    random_spread: float

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
    return CurveCheck(recipients, rise, random, spread)


@dataclass(frozen=True, eq=False)  # compared by identity: it holds its direction, a tensor
class FeatureCluster:
    """One cluster of a class's images in the model's features."""

    #: its number in :attr:`FeatureStrategies.labels` (numbered by size, largest first)
    label: int
    size: int
    #: the intervention (``None``: no image of another class to add its direction to)
    check: DirectionCheck | None
    #: the map cluster that best isolates its images: ``(method, cluster, F1)``; ``None``: no map cluster
    matched: tuple[str, int, float] | None
    #: ``(D,)``: its direction (:func:`cluster_direction`), what the intervention adds
    #: (:class:`~captum_gmar.exploration.intervention.Shift`)
    direction: Tensor
    #: its tone curve put on in pixels (``None``: no image of another class, or of the rest
    #: of its class among those read)
    curve: CurveCheck | None = None

    @property
    def no_place(self) -> bool:
        """Whether no map cluster of its class isolates its images (F1 below :data:`MATCHED_AT`)."""
        return self.matched is None or self.matched[2] < MATCHED_AT

    @property
    def confirmed_by(self) -> tuple[str, ...]:
        """The interventions that confirm it: ``"direction"``, ``"tone curve"``, both or neither."""
        checks = {"direction": self.check, "tone curve": self.curve}
        return tuple(name for name, check in checks.items() if check is not None and check.confirms)

    @property
    def beyond(self) -> float:
        """How far its interventions' rise stands beyond their null at most (``-inf``: none ran)."""
        return max((c.beyond for c in (self.check, self.curve) if c is not None), default=-math.inf)

    @property
    def flagged(self) -> bool:
        """A shortcut with no place: no map cluster isolates it, and its direction or its
        tone curve carries the class."""
        return self.no_place and bool(self.confirmed_by)

    @property
    def reason(self) -> str:
        """Its verdict in words and figures."""
        where = (
            "no map cluster of its class"
            if self.matched is None
            else f"the maps' best match, {self.matched[0]}'s cluster {self.matched[1]}, has F1 {self.matched[2]:.2f}"
        )
        verdict = "flagged: a shortcut with no place" if self.flagged else "not flagged"
        check = "no image of another class to add its direction to" if self.check is None else self.check.summary()
        curve = "" if self.curve is None else f"; {self.curve.summary()}"
        return f"{verdict} ({where}); {check}{curve}"


@dataclass(frozen=True, eq=False)  # compared by identity: it holds arrays
class FeatureStrategies:
    """What :func:`feature_strategies` found in ``N`` images of one class."""

    #: the layer whose output was read (from 0)
    layer: int
    #: ``int64 (N,)``: each image's cluster
    labels: np.ndarray
    #: ``float64 (m,)``: the smallest eigenvalues of the graph's Laplacian, ascending
    eigenvalues: np.ndarray
    #: per cluster, ``int64`` indices of its most typical images (nearest its centre), nearest first
    typical: tuple[np.ndarray, ...]
    #: every cluster: flagged first, then by how far the intervention rose beyond its null
    ranking: tuple[FeatureCluster, ...]

    @property
    def flagged(self) -> tuple[FeatureCluster, ...]:
        """The shortcuts with no place, if any."""
        return tuple(c for c in self.ranking if c.flagged)


def default_layer(num_layers: int) -> int:
    """The layer read by default, counting from 0: ``2 n // 3`` of ``n`` (4 of vit-tiny's
    0 to 5, the fifth block's output; 8 of 0 to 11). On the strong-tint model
    (docs/explore.md) layer 2's features split the tinted images into three clusters, and
    layer 4's held them in one."""
    return max(2 * num_layers // 3, 0)


def check_layer(layer: int | None, num_layers: int) -> int:
    """``layer``, or the default for a model of ``num_layers`` layers where ``None``.

    Raises:
        ValueError: not an integer from 0 to ``num_layers - 1``.
    """
    if layer is None:
        return default_layer(num_layers)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < num_layers:
        raise ValueError(f"the features' layer must be an integer from 0 to {num_layers - 1} (this model's layers), got {layer!r}")
    return layer


def feature_strategies(
    features: np.ndarray, *, max_clusters: int = 10, neighbours: int = 10, typical: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """The clusters of one class's pooled features ``(N, D)``: each image's label
    ``int64 (N,)``, the eigenvalues, and each cluster's most typical images.

    Raises:
        ValueError: too few images for these settings.
    """
    count = len(features)
    needed = maps_needed(neighbours, max_clusters)
    if count < needed:
        raise ValueError(f"{count} images: fewer than the {needed} that {neighbours} neighbours and up to {max_clusters} clusters need")
    reduced = need("sklearn.decomposition").PCA(n_components=min(COMPONENTS, features.shape[1], count - 1), random_state=seed)
    rows = reduced.fit_transform(features.astype(np.float64))
    found = spectral_clusters(rows, n_clusters=None, max_clusters=max_clusters, neighbours=neighbours, search="exact", seed=seed)
    chosen = tuple(typical_members(found.rows, found.labels, c, typical) for c in range(int(found.labels.max()) + 1))
    return found.labels, found.eigenvalues, chosen


def class_features(checker: ClusterChecker, names: Sequence[str], layer: int, batch_size: int = 64) -> Tensor:
    """The pooled features ``(N, D)`` (on the CPU) at ``layer`` of the named images of the
    checker's folder (:func:`~captum_gmar.vit.layers.pooled_patches`), read ``batch_size`` at a time."""
    from ..vit.layers import pooled_patches

    return torch.cat(
        [pooled_patches(checker.vit, checker.pixels_of(names[i : i + batch_size]), layer) for i in range(0, len(names), batch_size)]
    ).cpu()


def cluster_direction(features: Tensor, inside: Tensor) -> Tensor:
    """A cluster's direction ``(D,)``: its members' mean feature less the rest of its class's
    (``features`` ``(N, D)``, ``inside`` ``bool (N,)``)."""
    return features[inside].mean(dim=0) - features[~inside].mean(dim=0)


def map_match(labels: np.ndarray, maps: dict[str, Strategies]) -> list[tuple[str, int, float] | None]:
    """For each cluster of ``labels`` (a class's images, ``int (N,)``), the map cluster of
    ``maps`` (method -> that class's strategies, rows in the same order) that best
    isolates its images: ``(method, cluster, F1)``, or ``None`` without maps."""
    matches: list[tuple[str, int, float] | None] = []
    for c in range(int(labels.max()) + 1):
        members = labels == c
        best = None
        for method, strategies in maps.items():
            for cluster in range(strategies.n_clusters):
                others = strategies.labels == cluster
                hits = int((members & others).sum())
                f1 = 2 * hits / (int(members.sum()) + int(others.sum())) if hits else 0.0
                if best is None or f1 > best[2]:
                    best = (method, cluster, f1)
        matches.append(best)
    return matches


class FeatureChecker:
    """Every explained class's images clustered by the model's features, each cluster's
    direction added to up to :data:`FEATURE_IMAGES` images of other classes, and matched
    against the maps' clusters of its class (see the module; ``explore`` runs it where a
    model is given).

    Its cost: one forward pass per image explained, ``K`` per class (the images of other
    classes as they are, ``K`` at most :data:`FEATURE_IMAGES`), ``2 K`` per cluster (its
    direction, its tone curve), and ``RANDOM_DIRECTIONS K`` more for each of the two whose
    rise reaches :data:`CONFIRMS_BY`; and up to :data:`CURVE_POOL` of the class's images
    read again in pixels.
    """

    def __init__(self, checker: ClusterChecker, layer: int | None) -> None:
        self.checker = checker
        self.layer = check_layer(layer, checker.vit.num_layers)

    def run(
        self,
        groups: dict[int, np.ndarray],
        names: Sequence[str],
        found: dict[tuple[str, int], Strategies],
        settings: dict[str, Any],
        progress: bool,
    ) -> dict[int, FeatureStrategies | str]:
        """Each class's feature strategies, or why it was not clustered.

        Args:
            groups: each class's rows of the maps folder.
            names: the image of each row.
            found: the maps' strategies of each (method, class) group, for the matches.
            settings: ``max_clusters``, ``neighbours``, ``typical`` and ``seed`` (the maps' own).
            progress: whether to show a progress bar.
        """
        return {
            target: self.run_class(target, groups, names, found, settings)
            for target in tqdm(groups, unit="class", desc="features", disable=not progress)
        }

    def run_class(
        self,
        target: int,
        groups: dict[int, np.ndarray],
        names: Sequence[str],
        found: dict[tuple[str, int], Strategies],
        settings: dict[str, Any],
    ) -> FeatureStrategies | str:
        """Class ``target``'s feature strategies, or why it was not clustered (the
        arguments as :meth:`run`'s): the same whether run alone or among every class."""
        checker, layer, seed = self.checker, self.layer, int(settings["seed"])
        features = class_features(checker, [names[int(r)] for r in groups[target]], layer)
        try:
            labels, eigenvalues, typical = feature_strategies(
                features.numpy(),
                max_clusters=settings["max_clusters"],
                neighbours=settings["neighbours"],
                typical=settings["typical"],
                seed=seed,
            )
        except ValueError as error:
            return str(error)
        elsewhere = [other_rows for other, other_rows in groups.items() if other != target]
        # drawn for each class alone, so that one class's check reruns by itself
        recipients = (
            np.random.default_rng([seed, target]).permutation(np.concatenate(elsewhere))[:FEATURE_IMAGES]
            if elsewhere
            else np.zeros(0, np.int64)
        )
        pixels = checker.pixels_of([names[int(r)] for r in recipients]) if len(recipients) else None
        with torch.no_grad():  # the recipients as they are: scored once per class
            plain = None if pixels is None else checker.class_scores(pixels, target).cpu()
        matches = map_match(labels, {method: s for (method, t), s in found.items() if t == target})
        rows = groups[target]
        pool = np.sort(np.random.default_rng([seed, target, 1]).permutation(len(rows))[:CURVE_POOL])
        pooled = None if pixels is None else checker.pixels_of([names[int(rows[i])] for i in pool])
        clusters = []
        for c in range(int(labels.max()) + 1):
            inside = torch.from_numpy(labels == c)
            direction = cluster_direction(features, inside)
            check = curve = None
            if pixels is not None and plain is not None and pooled is not None:  # all or none
                check = direction_check(partial(self._shifted, pixels=pixels, target=target), direction, plain, seed=seed)
                chosen = labels[pool] == c
                if chosen.any() and not chosen.all():
                    rise_of = partial(
                        self._curve_rise, pooled=pooled, recipients=pixels, plain=plain, target=target, seed=[seed, target, 2, c]
                    )
                    curve = curve_check(rise_of, chosen, len(pixels), seed=seed)
            clusters.append(FeatureCluster(c, int(inside.sum()), check, matches[c], direction, curve))
        ranking = sorted(clusters, key=lambda f: (not f.flagged, -f.beyond, f.label))
        return FeatureStrategies(layer=layer, labels=labels, eigenvalues=eigenvalues, typical=typical, ranking=tuple(ranking))

    def _curve_rise(self, chosen: np.ndarray, pooled: Tensor, recipients: Tensor, plain: Tensor, target: int, seed: list[int]) -> float:
        """Class ``target``'s mean score rise on ``recipients`` through the tone curve from up to
        :data:`CURVE_IMAGES` of the images of ``pooled`` not ``chosen`` to as many ``chosen``
        (drawn by ``seed``)."""
        generator = np.random.default_rng(seed)
        members = generator.permutation(np.flatnonzero(chosen))[:CURVE_IMAGES]
        rest = generator.permutation(np.flatnonzero(~chosen))[:CURVE_IMAGES]
        curve = Curve.matching(target, pooled[members], pooled[rest])
        return curve.rise(self.checker.vit, recipients, self.checker.scores, plain=plain)

    def _shifted(self, directions: Tensor, pixels: Tensor, target: int) -> Tensor:
        """Class ``target``'s score ``(S, B)`` on ``pixels`` with each of ``directions`` ``(S, D)`` added."""
        from ..vit.layers import scores_with_tokens_shifted

        each = max(1, 512 // len(pixels))  # directions a pass: at most 512 images in one batch
        parts = [
            scores_with_tokens_shifted(
                self.checker.vit, pixels, self.layer, directions[i : i + each].to(pixels.device), self.checker.scores
            )
            for i in range(0, len(directions), each)
        ]
        return torch.cat(parts)[..., target].cpu()
