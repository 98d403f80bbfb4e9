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
3. **Graph.** Each map's ``neighbours`` nearest maps (scikit-learn's brute-force
   ``NearestNeighbors``, which works through the maps in blocks: memory ``O(N k)``, never
   ``N x N``), weighted by a Gaussian kernel with local scales (Zelnik-Manor and Perona
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
   each row scaled to unit length (Ng, Jordan and Weiss 2001). Clusters are numbered by
   size, largest first. A cluster's typical maps are its members nearest its k-means
   centre.
7. **Embedding.** ``(x, y)``: each map's ``sqrt(p)`` projected on the two principal
   directions of all the clustered maps' ``sqrt(p)`` (scikit-learn's PCA): the linear
   view of the distances of step 2 that keeps the most of their spread. Clusters found
   in the graph may overlap there; their colours tell them apart.
8. **Suspicion.** Four scores in ``[0, 1]`` per cluster ``c`` of ``n_c`` of the ``n``
   clustered maps, each 1 where the cluster looks most like a shortcut:

   - ``small = 1 - n_c / n``: a strategy of few images;
   - ``tight = max(0, 1 - spread_c / spread)``: its maps alike, where ``spread`` is the
     mean squared distance (step 2) of the class's maps to their mean ``sqrt(p)`` and
     ``spread_c`` the same within the cluster;
   - ``concentrated = 1 - exp(H(m_c)) / P``: its mean map ``m_c`` (the mean of its
     members' ``p``) holds its mass on few patches; ``exp(H)``, ``H`` the entropy, is the
     number of patches it effectively covers (``P`` for a uniform map, 1 for a single
     patch);
   - ``away = (1/2) sum |m_c - r_c|``: the total-variation distance to the mean map
     ``r_c`` of the class's other clustered maps, the share of the cluster's mass that
     falls where the others put none of theirs.

   ``suspicion`` is their geometric mean: high only where all four are, so that a small
   cluster of scattered maps, or a large one on the object, ranks low. ``ranking`` lists
   the clusters by suspicion, highest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._extra import need, require
from .normalise import Part, as_maps, check_part, distributions

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["Cluster", "Strategies", "check_settings", "clusters_by_eigengap", "find_strategies", "maps_needed"]

#: ``tau``, the regularising weight of step 4, as a share of the graph's mean degree
REGULARISATION = 0.1
#: a score at or above this reads as its word in a cluster's reason ("small"), else as "not small"
_SAYS = 0.5


@dataclass(frozen=True)
class Cluster:
    """One strategy of a class: a cluster of :class:`Strategies`, with the scores of its
    suspicion (each in ``[0, 1]``; defined in :mod:`captum_gmar.exploration.strategies`)."""

    #: its number in ``Strategies.labels`` (clusters are numbered by size, largest first)
    label: int
    #: how many maps it holds
    size: int
    small: float
    tight: float
    concentrated: float
    away: float
    #: the geometric mean of the four scores
    suspicion: float
    #: the four scores in words and figures, e.g. ``"small (9% of the maps), tight (...)"``
    reason: str


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
    #: the clusters, most suspicious first
    ranking: tuple[Cluster, ...]
    #: ``int64``: indices of the flat maps, set aside (label ``-1``)
    flat: np.ndarray
    #: the entries of the sparse affinity ``W`` between the clustered maps: at most ``2 N k``
    edges: int

    def cluster(self, label: int) -> Cluster:
        """The cluster numbered ``label``."""
        return next(c for c in self.ranking if c.label == label)


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
) -> Strategies:
    """The strategies in ``N`` maps of one class: SpRAy's spectral clusters, ranked most
    suspicious first (every step and score: :mod:`captum_gmar.exploration.strategies`).

    Args:
        maps: ``(N, h, w)``, a torch tensor or numpy array of any float type: the maps of
            one method and one explained class.
        n_clusters: the number of clusters (default: by the largest eigengap).
        max_clusters: the most clusters the eigengap may choose.
        neighbours: ``k`` of the k-nearest-neighbour graph.
        part: what of a signed map is its mass: ``"positive"`` (the evidence for the
            class) or ``"abs"``.
        typical: how many typical maps to name per cluster.
        seed: the seed of the eigen-solver's start vector, k-means and the PCA: the same
            maps and seed give the same result.

    Returns:
        :class:`Strategies`.

    Raises:
        ValueError: before any clustering: ``maps`` not ``(N, h, w)``, maps with NaN or
            infinite values, a bad setting, or fewer clustered (not flat) maps than
            :func:`maps_needed`.
        ImportError: scikit-learn or SciPy is missing (``pip install 'captum-gmar[explore]'``).
    """
    values = as_maps(maps)
    check_settings(n_clusters, max_clusters, neighbours, typical, part)
    require()
    p, flat = distributions(values, part)
    clustered = np.flatnonzero(~flat)
    needed = maps_needed(neighbours, max_clusters, n_clusters)
    if len(clustered) < needed:
        raise ValueError(
            f"{len(values)} maps, {int(flat.sum())} of them flat (constant): {len(clustered)} to cluster, fewer than the {needed} "
            f"that {neighbours} neighbours and up to {max(max_clusters, n_clusters or 0)} clusters need: give more maps or lower those"
        )
    features = np.sqrt(p[clustered])
    del p
    affinity = _affinity(features, neighbours)
    count = max(max_clusters, n_clusters or 0) + 1
    eigenvalues, vectors = _spectrum(affinity, count, seed)
    eigengaps = np.diff(eigenvalues)
    k = n_clusters if n_clusters is not None else clusters_by_eigengap(eigenvalues, max_clusters)
    rows = vectors[:, :k] / np.linalg.norm(vectors[:, :k], axis=1, keepdims=True)
    fitted = need("sklearn.cluster").KMeans(n_clusters=k, n_init=10, random_state=seed).fit(rows)
    inner, centres = _numbered(fitted.labels_, fitted.cluster_centers_)
    k = len(centres)
    labels = np.full(len(values), -1, dtype=np.int64)
    labels[clustered] = inner
    typical_maps = tuple(_typical(rows, inner, centres[c], c, typical, clustered) for c in range(k))
    embedding, axes = _embedding(features, seed)
    placed = np.full((len(values), 2), np.nan)
    placed[clustered] = embedding
    height, width = values.shape[1:]
    mean_maps, ranking = _rank(features, inner, k, (height, width))
    return Strategies(
        labels=labels,
        embedding=placed,
        embedding_axes=axes.reshape(2, height, width).astype(np.float32),
        eigenvalues=eigenvalues,
        eigengaps=eigengaps,
        n_clusters=k,
        mean_maps=mean_maps.reshape(k, height, width),
        typical=typical_maps,
        ranking=ranking,
        flat=np.flatnonzero(flat),
        edges=affinity.nnz,
    )


def clusters_by_eigengap(eigenvalues: np.ndarray, max_clusters: int = 10) -> int:
    """The number of clusters ``k`` in ``2 .. max_clusters`` with the largest gap
    ``e[k] - e[k - 1]`` between the ascending eigenvalues ``e`` (at least ``max_clusters + 1``)
    of a graph Laplacian."""
    e = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    if len(e) <= max_clusters:
        raise ValueError(f"{len(e)} eigenvalues: need more than max_clusters={max_clusters}")
    return int(np.argmax(np.diff(e)[1:max_clusters])) + 2


def _affinity(features: np.ndarray, neighbours: int) -> csr_matrix:
    """Step 3: the symmetric sparse affinity ``(n, n)`` of the kNN graph."""
    # brute force: trees do no better in h*w dimensions, and scikit-learn's brute-force
    # search reduces the distances block by block, keeping only each row's k nearest
    nearest = need("sklearn.neighbors").NearestNeighbors(n_neighbors=neighbours, algorithm="brute")
    graph = nearest.fit(features).kneighbors_graph(mode="distance").tocoo()
    scale = np.zeros(len(features))
    np.maximum.at(scale, graph.row, graph.data)
    positive = scale[scale > 0]
    # identical maps are at distance 0: a floor keeps their kernel finite
    scale = np.maximum(scale, 1e-3 * (np.median(positive) if len(positive) else 1.0))
    weights = np.exp(-(graph.data.astype(np.float64) ** 2) / (scale[graph.row] * scale[graph.col]))
    directed = need("scipy.sparse").csr_matrix((weights, (graph.row, graph.col)), shape=graph.shape)
    return directed.maximum(directed.T).tocsr()


def _spectrum(affinity: csr_matrix, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: the ``count`` smallest eigenvalues of the regularised normalised Laplacian,
    ascending, and their eigenvectors ``(n, count)`` (each signed so that its largest
    entry is positive)."""
    n = affinity.shape[0]
    degrees = np.asarray(affinity.sum(axis=1)).ravel()
    tau = REGULARISATION * degrees.mean()
    scale = 1 / np.sqrt(degrees + tau)
    sparse, linalg = need("scipy.sparse"), need("scipy.sparse.linalg")
    normalised = sparse.diags(scale) @ affinity @ sparse.diags(scale)
    # I - L = D^-1/2 W D^-1/2 + (tau / n) s s^T, never formed: a sparse product and a dot
    operator = linalg.LinearOperator((n, n), matvec=lambda x: normalised @ x + (tau / n) * scale * (scale @ x), dtype=np.float64)
    start = np.random.default_rng(seed).uniform(-1, 1, n)
    values, vectors = linalg.eigsh(operator, k=count, which="LA", v0=start)
    order = np.argsort(-values)
    values, vectors = 1 - values[order], vectors[:, order]
    vectors *= np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(count)])
    return np.maximum(values, 0.0), vectors


def _numbered(labels: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-means' clusters renumbered by size, largest first (ties: the first member first);
    an empty one (k-means leaves one where fewer than ``k`` maps differ) is dropped."""
    found, first, inverse, sizes = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    renumber = np.empty(len(found), dtype=np.int64)
    renumber[order] = np.arange(len(found))
    return renumber[inverse], centres[found[order]]


def _typical(rows: np.ndarray, labels: np.ndarray, centre: np.ndarray, label: int, count: int, clustered: np.ndarray) -> np.ndarray:
    members = np.flatnonzero(labels == label)
    distances = np.linalg.norm(rows[members] - centre, axis=1)
    return clustered[members[np.argsort(distances, kind="stable")[:count]]]


def _embedding(features: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 7: ``(n, 2)`` coordinates and the two directions ``(2, P)``."""
    pca = need("sklearn.decomposition").PCA(n_components=2, random_state=seed).fit(features)
    return pca.transform(features).astype(np.float64), pca.components_


def _rank(features: np.ndarray, labels: np.ndarray, k: int, grid: tuple[int, int]) -> tuple[np.ndarray, tuple[Cluster, ...]]:
    """Step 8: the clusters' mean maps ``(k, P)`` and the clusters, most suspicious first."""
    n, patches = features.shape
    sizes = np.bincount(labels, minlength=k)
    # sums of p and of sqrt(p) per cluster, without an (n, k) one-hot matrix
    sum_p = np.zeros((k, patches))
    sum_root = np.zeros((k, patches))
    np.add.at(sum_p, labels, features.astype(np.float64) ** 2)
    np.add.at(sum_root, labels, features)
    mean_maps = sum_p / sizes[:, None]
    # sqrt(p) has unit length: the mean squared distance to the mean m is 1 - |m|^2
    spread = 1 - np.sum((sum_root.sum(axis=0) / n) ** 2)
    clusters = []
    for c in range(k):
        cluster_spread = 1 - np.sum((sum_root[c] / sizes[c]) ** 2)
        rest = (sum_p.sum(axis=0) - sum_p[c]) / (n - sizes[c])
        mean = mean_maps[c]
        entropy = -np.sum(mean[mean > 0] * np.log(mean[mean > 0]))
        scores = {
            "small": 1 - sizes[c] / n,
            "tight": max(0.0, 1 - cluster_spread / spread) if spread > 0 else 0.0,
            "concentrated": 1 - np.exp(entropy) / patches,
            "away": 0.5 * np.abs(mean - rest).sum(),
        }
        suspicion = float(np.prod(list(scores.values())) ** 0.25)
        peak = divmod(int(mean.argmax()), grid[1])
        figures = {
            "small": f"{sizes[c] / n:.0%} of the maps",
            "tight": f"spread {cluster_spread / spread:.2f} of the class's" if spread > 0 else "the class's maps all alike",
            "concentrated": f"mass on an effective {np.exp(entropy) / patches:.0%} of the patches, peak at row {peak[0]}, column {peak[1]}",
            "away": f"{scores['away']:.0%} of its mass off the other maps'",
        }
        reason = ", ".join(f"{'' if scores[word] >= _SAYS else 'not '}{word} ({figures[word]})" for word in scores)
        clusters.append(
            Cluster(
                label=c,
                size=int(sizes[c]),
                small=float(scores["small"]),
                tight=float(scores["tight"]),
                concentrated=float(scores["concentrated"]),
                away=float(scores["away"]),
                suspicion=suspicion,
                reason=reason,
            )
        )
    ranking = tuple(sorted(clusters, key=lambda cluster: (-cluster.suspicion, cluster.label)))
    return mean_maps.astype(np.float32), ranking
