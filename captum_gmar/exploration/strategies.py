"""The strategies of a class: SpRAy (Lapuschkin et al. 2019, "Unmasking Clever Hans
predictors") on patch maps, with the clusters ranked by how suspicious they look.

:func:`find_strategies` takes the maps of one class and computes, in this order:

1. **Distributions.** Each map's mass (its positive part, or its absolute value) divided
   by its sum: a distribution ``p`` over the ``P = h * w`` patches
   (:func:`~captum_gmar.exploration.normalise.distributions`). Flat maps (constant: all
   zero, or the same value everywhere) say nothing about where the model looks; they are
   set aside, with label ``-1``, and the rest are clustered.
2. **Distances.** Between two maps, the Euclidean distance between ``sqrt(p)`` and
   ``sqrt(q)`` (``sqrt(2)`` times their Hellinger distance): it ranges from 0 to
   ``sqrt(2)`` (no patch in common) whatever the maps' spread, where the Euclidean distance
   between ``p`` and ``q`` would make every diffuse map near every other.
3. **Graph.** Each map's ``neighbours`` nearest maps (exact, scikit-learn's brute-force
   search, which works through the maps in blocks, up to 20,000 maps; approximate above:
   :mod:`~captum_gmar.exploration.neighbours`; memory ``O(N k)``, never ``N x N``), weighted by a Gaussian kernel with local scales (Zelnik-Manor and Perona
   2004), ``w_ij = exp(-d_ij^2 / (s_i s_j))``, ``s_i`` the distance to map ``i``'s
   farthest kept neighbour; an edge is kept where either end chose the other
   (``W = max(W, W^T)``, at most ``2 N k`` entries).
4. **Spectrum.** The normalised Laplacian ``L = I - D^-1/2 (W + tau/N) D^-1/2`` of the
   graph regularised by a weight ``tau / N`` between every two maps (Amini et al. 2013;
   Qin and Rohe 2013), ``tau`` a tenth of the mean degree, ``D`` the regularised degrees:
   the graph is connected, its trivial eigenvector unique, and a handful of maps tied
   only to each other no longer counts as a cluster of its own, while a group with no
   edge to the rest keeps an eigenvalue near ``tau (1 - share) / (mean degree + tau)``,
   below 0.1. Its smallest ``max(max_clusters, n_clusters) + 1`` eigenvalues come from
   SciPy's Lanczos solver (``eigsh``) on ``I - L`` held as a sparse matrix plus a rank-one
   term; ``eigengaps[i] = eigenvalues[i + 1] - eigenvalues[i]``.
5. **Number of clusters.** ``k`` in ``2 .. max_clusters`` with the largest gap
   ``eigenvalues[k] - eigenvalues[k - 1]`` (the eigengap heuristic; von Luxburg 2007),
   unless ``n_clusters`` is given.
6. **Clusters.** k-means (``n_init=10``) on the rows of the ``k`` first eigenvectors,
   each row scaled to unit length (Ng, Jordan and Weiss 2001). Then clusters that are one
   strategy at different strengths are merged: while two clusters' positive excesses over
   the rest of the class (:func:`~captum_gmar.exploration.suspicion.excess_direction`)
   have a cosine of at least :data:`MERGE_AT`, the most alike two become one. (A tag
   whose share of the map varies from image to image lies along a line from the other
   maps; spectral clustering cuts such a line into pieces, the eigengap counting each.)
   Clusters are numbered by size, largest first. A cluster's typical maps are its
   members nearest the mean of its members' eigenvector rows (its k-means centre where
   it was not merged).
7. **Embedding.** ``(x, y)``: each map's ``sqrt(p)`` projected on the two principal
   directions of all the clustered maps' ``sqrt(p)`` (scikit-learn's PCA): the linear
   view of the distances of step 2 that keeps the most of their spread. Clusters found
   in the graph may overlap there; their colours tell them apart.
8. **Suspicion.** Each cluster's ``suspicion``: how far its difference from the rest of
   the class lies on a small region and nowhere else, as a shortcut's does, and whether
   it is ``flagged`` (:mod:`captum_gmar.exploration.suspicion` defines both). ``ranking``
   lists every cluster, most suspicious first; ``flagged`` only those that reach the
   flag, none where nothing stands out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import torch

from ._extra import need, require
from .neighbours import Search
from .normalise import Part, as_maps, check_part, distributions
from .spectral import clusters_by_eigengap, numbered, spectral_clusters, typical_members
from .suspicion import MIN_FLAGGED, Suspicion, cluster_sums, excess_direction, suspicions

__all__ = ["DEFAULT_CLUSTERING", "Cluster", "Strategies", "check_settings", "clusters_by_eigengap", "find_strategies", "maps_needed"]

#: two clusters whose positive excesses have at least this cosine are merged (step 6)
MERGE_AT = 0.8

#: :func:`find_strategies`' settings by default, which ``explore`` clusters with unless told
#: otherwise: ``repair`` finds a named cluster, and checks it, with them
DEFAULT_CLUSTERING: Final[Mapping[str, Any]] = MappingProxyType(
    {"n_clusters": None, "max_clusters": 10, "neighbours": 10, "part": "positive", "typical": 8, "seed": 0}
)


@dataclass(frozen=True)
class Cluster(Suspicion):
    """One strategy of a class: a cluster of :class:`Strategies`, with the figures of its
    suspicion (:class:`~captum_gmar.exploration.suspicion.Suspicion`: ``suspicion``,
    ``flagged``, ``localised``, ``additive``, ``region``, ...)."""

    #: its number in ``Strategies.labels`` (clusters are numbered by size, largest first)
    label: int
    #: how many maps it holds
    size: int
    #: its suspicion in words and figures, e.g. ``"flagged (suspicion 0.97): 99% of its
    #: difference from the rest of the class lies on 1 patch (row 0, column 0) ..."``
    #: (with the transplant's verdict first, where it decided)
    reason: str
    #: whether the transplant confirms it, where one ran with the model (``explore(model=)``):
    #: it then decides :attr:`flagged`; ``None``: the suspicion decides
    transplant_confirms: bool | None = None

    @property
    def flagged(self) -> bool:
        """Whether the cluster is flagged: by the transplant where one ran (the model's
        evidence), else by its suspicion (``suspicion >= threshold``)."""
        return self.suspected if self.transplant_confirms is None else self.transplant_confirms

    @property
    def flagged_by(self) -> str:
        """What decided :attr:`flagged`: ``"transplant"`` or ``"suspicion"``."""
        return "suspicion" if self.transplant_confirms is None else "transplant"


@dataclass(frozen=True)
class Strategies:
    """What :func:`find_strategies` found in ``N`` maps of one class on an ``h x w`` grid."""

    #: ``int64 (N,)``: each map's cluster, ``0 .. n_clusters - 1``; ``-1`` for a flat map
    labels: np.ndarray
    #: ``float64 (N, 2)``: each map's ``(x, y)`` for a scatter plot (step 7); NaN for a flat map
    embedding: np.ndarray
    #: ``float32 (2, h, w)``: the directions of ``x`` and ``y``, as maps over ``sqrt(p)``
    embedding_axes: np.ndarray
    #: ``float64 (m,)``: the smallest eigenvalues of the regularised normalised Laplacian, ascending
    eigenvalues: np.ndarray
    #: ``float64 (m - 1,)``: ``eigenvalues[1:] - eigenvalues[:-1]``; the chosen ``k`` has the
    #: largest of ``eigengaps[1 : max_clusters]`` (unless given)
    eigengaps: np.ndarray
    #: the number of clusters ``k``
    n_clusters: int
    #: ``float32 (k, h, w)``: each cluster's mean distribution ``m_c`` (sums to 1)
    mean_maps: np.ndarray
    #: per cluster, ``int64`` indices of its most typical maps (nearest its k-means centre), nearest first
    typical: tuple[np.ndarray, ...]
    #: every cluster, most suspicious first
    ranking: tuple[Cluster, ...]
    #: ``int64``: indices of the flat maps, set aside (label ``-1``)
    flat: np.ndarray
    #: the entries of the sparse affinity ``W`` between the clustered maps: at most ``2 N k``
    edges: int
    #: the number of clusters k-means found before the merging of step 6
    clusters_found: int

    def cluster(self, label: int) -> Cluster:
        """The cluster numbered ``label``."""
        return next(c for c in self.ranking if c.label == label)

    @property
    def flagged(self) -> tuple[Cluster, ...]:
        """The flagged clusters, most suspicious first; empty where nothing stands out."""
        return tuple(c for c in self.ranking if c.flagged)


def maps_needed(neighbours: int = 10, max_clusters: int = 10, n_clusters: int | None = None) -> int:
    """The fewest clustered (not flat) maps :func:`find_strategies` works on with these
    settings: more than ``neighbours``, and more than the eigenvalues it computes."""
    return max(neighbours, max(max_clusters, n_clusters or 0) + 1) + 1


def check_settings(n_clusters: int | None, max_clusters: int, neighbours: int, typical: int, part: str) -> None:
    """Refuse bad settings of :func:`find_strategies`, before any work.

    Raises:
        ValueError: one line naming the setting.
    """
    check_part(part)
    if n_clusters is not None and (isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 2):
        raise ValueError(f"n_clusters must be an integer of at least 2 (or None: chosen by eigengap), got {n_clusters!r}")
    for name, value, least in (("max_clusters", max_clusters, 2), ("neighbours", neighbours, 1), ("typical", typical, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")


def find_strategies(
    maps: Any,
    *,
    n_clusters: int | None = None,
    max_clusters: int = 10,
    neighbours: int = 10,
    part: Part = "positive",
    typical: int = 8,
    seed: int = 0,
    confidence: Any | None = None,
    search: Search = "auto",
) -> Strategies:
    """The strategies in ``N`` maps of one class: SpRAy's spectral clusters, ranked most
    suspicious first (every step and score: :mod:`captum_gmar.exploration.strategies`).

    Args:
        maps: ``(N, h, w)``, a torch tensor or numpy array of any float type: the maps of
            one method and one explained class.
        n_clusters: the number of clusters (default: by the largest eigengap, then
            clusters of one strategy merged; given, exactly this many, none merged).
        max_clusters: the most clusters the eigengap may choose.
        neighbours: ``k`` of the k-nearest-neighbour graph.
        part: what of a signed map is its mass: ``"positive"`` (the evidence for the
            class) or ``"abs"``.
        typical: how many typical maps to name per cluster.
        seed: the seed of the approximate search's cells, the eigen-solver's start vector, k-means and the PCA: the same
            maps and seed give the same result.
        confidence: ``(N,)``, the model's score or margin for each map's image (NaN:
            unknown), for each cluster's ``confidence``; it does not change the ranking.
        search: how the neighbours of step 3 are found: ``"exact"``, ``"approximate"``
            (faiss's inverted file) or ``"auto"``, exact up to
            :data:`~captum_gmar.exploration.neighbours.EXACT_UP_TO` maps
            (:mod:`captum_gmar.exploration.neighbours`).

    Returns:
        :class:`Strategies`.

    Raises:
        ValueError: before any clustering: ``maps`` not ``(N, h, w)``, maps with NaN or
            infinite values, a bad setting, ``confidence`` not one number per map, or
            fewer clustered (not flat) maps than :func:`maps_needed`.
        ImportError: scikit-learn or SciPy is missing (``pip install 'captum-gmar[explore]'``).
    """
    values = as_maps(maps)
    check_settings(n_clusters, max_clusters, neighbours, typical, part)
    scores = _confidence(confidence, len(values))
    require()
    p, flat = distributions(values, part)
    clustered = np.flatnonzero(~flat)
    needed = maps_needed(neighbours, max_clusters, n_clusters)
    if len(clustered) < needed:
        raise ValueError(
            f"{len(values)} maps, {int(flat.sum())} of them flat (constant): {len(clustered)} to cluster, fewer than the {needed} "
            f"that {neighbours} neighbours and up to {max(max_clusters, n_clusters or 0)} clusters need: give more maps or lower those"
        )
    if len(clustered) < len(p):  # flat maps set aside; else no copy (memory: the maps are most of it)
        p = p[clustered]
    features = np.sqrt(p)
    spectral = spectral_clusters(
        features, n_clusters=n_clusters, max_clusters=max_clusters, neighbours=neighbours, search=search, seed=seed
    )
    eigenvalues, rows, inner = spectral.eigenvalues, spectral.rows, spectral.labels
    found = int(inner.max()) + 1
    if n_clusters is None:
        inner = numbered(_merged(p, inner, found))
    k = int(inner.max()) + 1
    labels = np.full(len(values), -1, dtype=np.int64)
    labels[clustered] = inner
    typical_maps = tuple(clustered[typical_members(rows, inner, c, typical)] for c in range(k))
    embedding, axes = _embedding(features, seed)
    del features
    placed = np.full((len(values), 2), np.nan)
    placed[clustered] = embedding
    height, width = values.shape[1:]
    sizes = np.bincount(inner, minlength=k)
    mean_maps = cluster_sums(p, inner, k) / sizes[:, None]
    figures = suspicions(p, inner, k, width, None if scores is None else scores[clustered])
    clusters = [Cluster(**vars(f), label=c, size=int(sizes[c]), reason=_reason(f, height * width)) for c, f in enumerate(figures)]
    return Strategies(
        labels=labels,
        embedding=placed,
        embedding_axes=axes.reshape(2, height, width).astype(np.float32),
        eigenvalues=eigenvalues,
        eigengaps=np.diff(eigenvalues),
        n_clusters=k,
        mean_maps=mean_maps.reshape(k, height, width).astype(np.float32),
        typical=typical_maps,
        ranking=tuple(sorted(clusters, key=lambda cluster: (-cluster.suspicion, cluster.label))),
        flat=np.flatnonzero(flat),
        edges=spectral.edges,
        clusters_found=found,
    )


def _confidence(confidence: Any | None, count: int) -> np.ndarray | None:
    """``confidence`` as ``float64 (count,)``, checked; ``None`` stays ``None``."""
    if confidence is None:
        return None
    if isinstance(confidence, torch.Tensor):
        confidence = confidence.detach().cpu().double().numpy()
    try:
        values = np.asarray(confidence, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"confidence must be one number per map, got {type(confidence).__name__}") from None
    if values.shape != (count,):
        raise ValueError(f"confidence must be one number per map, shape ({count},); got {values.shape}")
    return values


def _merged(p: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Step 6's merging: while two clusters' positive excesses have a cosine of at least
    :data:`MERGE_AT`, the two most alike become one (labels ``0 .. k' - 1``, not renumbered)."""
    labels = labels.copy()
    sums, sizes = cluster_sums(p, labels, k), np.bincount(labels, minlength=k)
    while len(sizes) > 2:
        directions = np.stack([excess_direction(sums, sizes, c) for c in range(len(sizes))])
        cosines = directions @ directions.T
        np.fill_diagonal(cosines, -np.inf)
        a, b = sorted(np.unravel_index(int(np.argmax(cosines)), cosines.shape))
        if cosines[a, b] < MERGE_AT:
            break
        labels[labels == b] = a
        labels[labels > b] -= 1
        sums[a] += sums[b]
        sizes[a] += sizes[b]
        sums, sizes = np.delete(sums, b, axis=0), np.delete(sizes, b)
    return labels


def _embedding(features: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 7: ``(n, 2)`` coordinates and the two directions ``(2, P)``."""
    pca = need("sklearn.decomposition").PCA(n_components=2, random_state=seed).fit(features)
    return pca.transform(features).astype(np.float64), pca.components_


def _reason(figures: Suspicion, patches: int) -> str:
    """A cluster's suspicion in words and figures."""
    rows, columns = zip(*figures.region)
    where = f"{_span('row', rows)}, {_span('column', columns)}"
    threshold = (
        f"flagged from {figures.threshold:.2f} at its size"
        if figures.threshold is not None
        else f"fewer than {MIN_FLAGGED} maps are never flagged"
    )
    text = (
        f"{'flagged' if figures.flagged else 'not flagged'} (suspicion {figures.suspicion:.2f}; {threshold}): "
        f"its difference from the rest of the class{' less the flagged clusters' if figures.rest_less_flagged else ''} "
        f"({figures.difference:.0%} of the mass) lies on an effective "
        f"{figures.spread:.1f} of the {patches} patches ({figures.spread / patches:.0%} of the grid; {where}), {figures.additive:.0%} of it "
        f"there alone, and what its maps hold elsewhere is {figures.intact:.0%} as concentrated as the rest's; the difference is "
        f"{1 + 2 * figures.beyond:.1f} times its chance level or more (3 counts in full); its maps put a median {figures.member_mass:.1%} of their mass on those patches, the rest {figures.rest_mass:.1%}, "
        f"and {figures.shared:.0%} of them more than 90% of the rest do"
    )
    if figures.confidence == figures.confidence:  # not NaN
        text += f"; the model scores them above the rest with probability {figures.confidence:.2f}"
    return text


def _span(word: str, values: tuple[int, ...]) -> str:
    low, high = min(values), max(values)
    return f"{word} {low}" if low == high else f"{word}s {low}-{high}"
