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

**The interventions** (:mod:`~captum_gmar.exploration.feature_checks`). Each cluster's
direction (its members' mean feature less the rest of the class's,
:func:`cluster_direction`) is added inside the model to other classes' images, and its
proxies in pixels (:data:`~captum_gmar.exploration.feature_checks.PROXIES`: its tone curve
and its filter, each made from up to :data:`PROXY_IMAGES` of its images and as many of the
rest of the class, out of up to :data:`PROXY_POOL` read in pixels) are put on the same
images; each against its null.

A cluster that a map cluster of its class also isolates (F1 at least :data:`MATCHED_AT`)
has a place, where the maps' own checks judge it; one that no map cluster matches, and
that its direction or a proxy in pixels confirms, is a **shortcut with no place** (:attr:`FeatureCluster.flagged`).

**One shortcut split in parts.** The eigengap may split a shortcut's images into parts,
each flagged alone, or one flagged and another just short of it. Clusters with no place
whose directions from the class's unflagged images agree with a flagged cluster's
(:func:`aligned_groups`, cosine at least :data:`JOINED_AT`) are joined into one cluster,
which is checked again; the others keep their checks (:attr:`FeatureCluster.parts`). Where
a cluster joined with a part not flagged is then neither flagged nor placed, its flagged
parts alone are joined (checked once more).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._extra import need
from .aligned import JOINED_AT, aligned_groups, joined, undiluted
from .checker import ClusterChecker
from .feature_checks import PROXIES, DirectionCheck, PixelCheck, direction_check, pixel_check
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
    "PROXY_IMAGES",
    "PROXY_POOL",
    "check_layer",
    "class_features",
    "cluster_direction",
    "FeatureCluster",
    "FeatureStrategies",
    "default_layer",
    "feature_strategies",
    "map_match",
]

#: principal components the pooled features are reduced to before the graph
COMPONENTS = 32
#: the most images of other classes a direction is added to (half the transplant's: a
#: direction that rises far enough is followed by ``RANDOM_DIRECTIONS`` passes over them)
FEATURE_IMAGES = 32
#: the most of a class's images read in pixels, from which its clusters' proxies are made
PROXY_POOL = 256
#: the most of a cluster's images, and of the rest of its class, a proxy is made from (as ``repair`` makes it)
PROXY_IMAGES = 64
#: a feature cluster has a place where a map cluster of its class isolates its images with
#: this F1 (the bar at which a cluster isolates a mark, docs/results.md). At 0.5, half a
#: match, a brightening of the items whose feature cluster (F1 0.93 against the marked
#: scenes) a GAE cluster matched at 0.52 was left to that cluster's transplant, which a
#: change of the whole item does not carry (+0.17 against its null's +0.24): found,
#: confirmed by its direction and its tone curve, and not flagged (docs/explore.md)
MATCHED_AT = 0.8
#: the flag of a feature cluster, in words (``strategies.json``'s ``features.rule``)
FEATURE_RULE = (
    f"no map cluster of its class isolates its images (F1 below {MATCHED_AT}), and added to other classes' images, its direction "
    f"in the model's features, or its tone curve or its filter in pixels, raises the class's score at least {CONFIRMS_BY} beyond "
    f"its null (random directions of the same norm; the proxy made from random images of the class), and {NULL_Z} times the "
    "null's spread"
)


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
    #: its proxies put on in pixels, in the order of :data:`~captum_gmar.exploration.feature_checks.PROXIES`
    #: (none: no image of another class, or of the rest of its class among those read)
    pixels: tuple[PixelCheck, ...] = ()
    #: the sizes of the clusters the clustering had split it into (flagged, or agreeing with
    #: a flagged one's direction), joined as one shortcut (:func:`aligned_groups`); none: as
    #: the clustering found it
    parts: tuple[int, ...] = ()

    @property
    def no_place(self) -> bool:
        """Whether no map cluster of its class isolates its images (F1 below :data:`MATCHED_AT`)."""
        return self.matched is None or self.matched[2] < MATCHED_AT

    @property
    def confirmed_by(self) -> tuple[str, ...]:
        """The interventions that confirm it: ``"direction"`` and the proxies' names (``"tone curve"``, ``"filter"``), or none."""
        direction = ("direction",) if self.check is not None and self.check.confirms else ()
        return direction + tuple(p.proxy for p in self.pixels if p.confirms)

    @property
    def beyond(self) -> float:
        """How far its interventions' rise stands beyond their null at most (``-inf``: none ran)."""
        return max((c.beyond for c in (self.check, *self.pixels) if c is not None), default=-math.inf)

    @property
    def flagged(self) -> bool:
        """A shortcut with no place: no map cluster isolates it, and its direction or a
        proxy in pixels carries the class."""
        return self.no_place and bool(self.confirmed_by)

    @property
    def reason(self) -> str:
        """Its verdict in words and figures."""
        where = (
            "no map cluster of its class"
            if self.matched is None
            else f"the maps' best match, {self.matched[0]}'s cluster labelled {self.matched[1]} (its number, not its rank), has F1 {self.matched[2]:.2f}"
        )
        verdict = "flagged: a shortcut with no place" if self.flagged else "not flagged"
        joined = (
            f"; joins {len(self.parts)} clusters of {' + '.join(map(str, self.parts))} images, each flagged or its direction "
            f"agreeing with a flagged one's (cosine at least {JOINED_AT})"
            if self.parts
            else ""
        )
        return f"{verdict} ({where}){joined}; {self.interventions}"

    @property
    def interventions(self) -> str:
        """Its direction's check and its proxies', in words and figures."""
        check = "no image of another class to add its direction to" if self.check is None else self.check.summary()
        return check + "".join(f"; {p.summary()}" for p in self.pixels)


@dataclass(frozen=True, eq=False)  # compared by identity: it holds arrays
class FeatureStrategies:
    """The clusters of ``N`` images of one class in the model's features
    (:func:`feature_strategies`), flagged clusters that agree joined (:mod:`~captum_gmar.exploration.aligned`)."""

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
    features: np.ndarray, *, max_clusters: int = 10, neighbours: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clusters of one class's pooled features ``(N, D)``: each image's label
    ``int64 (N,)``, the eigenvalues, and the rows ``(N, k)`` the labels were drawn from
    (the spectral embedding; :func:`~captum_gmar.exploration.spectral.typical_members` reads them).

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
    return found.labels, found.eigenvalues, found.rows


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
    classes as they are, ``K`` at most :data:`FEATURE_IMAGES`), ``3 K`` per cluster (its
    direction, its tone curve, its filter), and ``RANDOM_DIRECTIONS K`` more for each of the
    three whose rise reaches :data:`CONFIRMS_BY`; and up to :data:`PROXY_POOL` of the class's
    images read again in pixels.
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
            labels, eigenvalues, rows = feature_strategies(
                features.numpy(), max_clusters=settings["max_clusters"], neighbours=settings["neighbours"], seed=seed
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
        rows_of = groups[target]
        pool = np.sort(np.random.default_rng([seed, target, 1]).permutation(len(rows_of))[:PROXY_POOL])
        pooled = None if pixels is None else checker.pixels_of([names[int(rows_of[i])] for i in pool])
        maps = {method: s for (method, t), s in found.items() if t == target}
        checked = partial(
            self._clusters, features, target=target, maps=maps, pixels=pixels, plain=plain, pool=pool, pooled=pooled, seed=seed
        )
        clusters = checked(labels)

        def join(chains: list[list[int]]) -> tuple[np.ndarray, list[FeatureCluster]]:
            merged, parts = joined(labels, chains)
            # the other clusters keep their members and their checks, under their new numbers
            kept = [replace(c, label=int(merged[labels == c.label][0])) for c in clusters if not any(c.label in g for g in chains)]
            return merged, kept + checked(merged, only=sorted(parts), parts=parts)

        flagged = [c.label for c in clusters if c.flagged]
        chains = aligned_groups(features, labels, flagged, others=[c.label for c in clusters if c.no_place and not c.flagged])
        if chains:  # one shortcut the clustering split: its parts joined and checked as one
            merged, rechecked = join(chains)
            by_label = {c.label: c for c in rechecked}

            def diluted(chain: list[int]) -> bool:  # a part not flagged left it unflagged, and with no place
                found = by_label[int(merged[labels == chain[0]][0])]
                return not set(chain) <= set(flagged) and found.no_place and not found.flagged

            if any(diluted(g) for g in chains):  # those of their flagged parts alone, the others as joined
                chains = undiluted(chains, diluted, aligned_groups(features, labels, flagged))
                merged, rechecked = join(chains) if chains else (labels, clusters)
            labels, clusters = merged, rechecked
        typical = tuple(typical_members(rows, labels, c, settings["typical"]) for c in range(int(labels.max()) + 1))
        ranking = sorted(clusters, key=lambda f: (not f.flagged, -f.beyond, f.label))
        return FeatureStrategies(layer=layer, labels=labels, eigenvalues=eigenvalues, typical=typical, ranking=tuple(ranking))

    def _clusters(
        self,
        features: Tensor,
        labels: np.ndarray,
        target: int,
        maps: dict[str, Strategies],
        pixels: Tensor | None,
        plain: Tensor | None,
        pool: np.ndarray,
        pooled: Tensor | None,
        seed: int,
        only: Sequence[int] | None = None,
        parts: dict[int, tuple[int, ...]] | None = None,
    ) -> list[FeatureCluster]:
        """Each cluster of ``labels`` (``int (N,)``, of the class's ``N`` images; those of
        ``only`` where given) matched against the class's ``maps`` and checked: its direction
        in ``features`` ``(N, D)`` added to ``pixels`` ``(K, C, H, W)`` (other classes'
        images, the class scored ``plain`` ``(K,)`` on them as they are), and its proxies
        made from ``pooled`` ``(P, C, H, W)`` (the class's images at ``pool`` ``(P,)``, its
        rows); none where there is no other class (``pixels`` ``None``). ``parts``: the
        sizes of the parts of each joined cluster, by its label."""
        matches = map_match(labels, maps)
        clusters = []
        for c in range(int(labels.max()) + 1) if only is None else only:
            inside = torch.from_numpy(labels == c)
            direction = cluster_direction(features, inside)
            check: DirectionCheck | None = None
            proxies: tuple[PixelCheck, ...] = ()
            if pixels is not None and plain is not None and pooled is not None:  # all or none
                check = direction_check(partial(self._shifted, pixels=pixels, target=target), direction, plain, seed=seed)
                chosen = labels[pool] == c
                if chosen.any() and not chosen.all():
                    drawn = [seed, target, 2, c]  # the same images for every proxy
                    proxies = tuple(
                        pixel_check(
                            partial(
                                self._proxy_rise, proxy=proxy, pooled=pooled, recipients=pixels, plain=plain, target=target, seed=drawn
                            ),
                            chosen,
                            len(pixels),
                            proxy,
                            seed=seed,
                        )
                        for proxy in PROXIES
                    )
            clusters.append(FeatureCluster(c, int(inside.sum()), check, matches[c], direction, proxies, (parts or {}).get(c, ())))
        return clusters

    def _proxy_rise(
        self, chosen: np.ndarray, proxy: str, pooled: Tensor, recipients: Tensor, plain: Tensor, target: int, seed: list[int]
    ) -> float:
        """Class ``target``'s mean score rise on ``recipients`` through the proxy named
        ``proxy``, made from up to :data:`PROXY_IMAGES` of the images of ``pooled``
        ``chosen`` and as many not (drawn by ``seed``)."""
        generator = np.random.default_rng(seed)
        members = generator.permutation(np.flatnonzero(chosen))[:PROXY_IMAGES]
        rest = generator.permutation(np.flatnonzero(~chosen))[:PROXY_IMAGES]
        made = PROXIES[proxy].matching(target, pooled[members], pooled[rest])
        return float(made.rises(self.checker.vit, recipients, self.checker.scores, plain=plain).mean())

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
