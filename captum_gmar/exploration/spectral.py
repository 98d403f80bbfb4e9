"""Spectral clustering of rows of features, shared by the two finders of a class's
strategies: :func:`~captum_gmar.exploration.find_strategies` (rows: a map's ``sqrt(p)``)
and :func:`~captum_gmar.exploration.features.feature_strategies` (rows: an image's
features inside the model). Steps 3 to 6 of :mod:`captum_gmar.exploration.strategies`
(which gives each in words), without the merging of clusters that only maps can judge:

:func:`spectral_clusters` builds the kNN graph of the rows (:func:`affinity`), takes the
smallest eigenvalues of its regularised normalised Laplacian (:func:`spectrum`), chooses
the number of clusters by the largest eigengap (:func:`clusters_by_eigengap`) unless it
is given, and runs k-means on the eigenvectors' rows scaled to unit length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._extra import need
from .neighbours import Search, nearest_neighbours

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["REGULARISATION", "Spectral", "affinity", "clusters_by_eigengap", "numbered", "spectral_clusters", "spectrum", "typical_members"]

#: ``tau``, the regularising weight of the Laplacian, as a share of the graph's mean degree
REGULARISATION = 0.1


@dataclass(frozen=True)
class Spectral:
    """What :func:`spectral_clusters` found in ``n`` rows."""

    #: ``int64 (n,)``: each row's cluster, numbered by size, largest first (:func:`numbered`)
    labels: np.ndarray
    #: ``float64 (n, k)``: each row's first ``k`` eigenvector entries, scaled to unit length
    rows: np.ndarray
    #: ``float64 (m,)``: the smallest eigenvalues, ascending
    eigenvalues: np.ndarray
    #: the entries of the sparse affinity: at most ``2 n neighbours``
    edges: int


def spectral_clusters(
    features: np.ndarray, *, n_clusters: int | None, max_clusters: int, neighbours: int, search: Search, seed: int
) -> Spectral:
    """The spectral clusters of ``features`` ``(n, d)`` (more rows than ``neighbours``
    and than ``max(max_clusters, n_clusters) + 1``): ``n_clusters`` of them, or as many
    as the largest eigengap says, up to ``max_clusters``."""
    graph = affinity(features, neighbours, search, seed)
    eigenvalues, vectors = spectrum(graph, max(max_clusters, n_clusters or 0) + 1, seed)
    k = n_clusters if n_clusters is not None else clusters_by_eigengap(eigenvalues, max_clusters)
    rows = vectors[:, :k] / np.linalg.norm(vectors[:, :k], axis=1, keepdims=True)
    fitted = need("sklearn.cluster").KMeans(n_clusters=k, n_init=10, random_state=seed).fit(rows)
    return Spectral(labels=numbered(fitted.labels_), rows=rows, eigenvalues=eigenvalues, edges=graph.nnz)


def clusters_by_eigengap(eigenvalues: np.ndarray, max_clusters: int = 10) -> int:
    """The number of clusters ``k`` in ``2 .. max_clusters`` with the largest gap
    ``e[k] - e[k - 1]`` between the ascending eigenvalues ``e`` (at least ``max_clusters + 1``)
    of a graph Laplacian."""
    e = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    if len(e) <= max_clusters:
        raise ValueError(f"{len(e)} eigenvalues: need more than max_clusters={max_clusters}")
    return int(np.argmax(np.diff(e)[1:max_clusters])) + 2


def affinity(features: np.ndarray, neighbours: int, search: Search, seed: int) -> csr_matrix:
    """Step 3: the symmetric sparse affinity ``(n, n)`` of the kNN graph."""
    distances, indices = nearest_neighbours(features, neighbours, search, seed)
    n = len(features)
    rows = np.repeat(np.arange(n), neighbours)
    columns, found = indices.ravel(), distances.ravel().astype(np.float64)
    scale = distances.max(axis=1).astype(np.float64)  # the farthest kept neighbour
    positive = scale[scale > 0]
    # identical maps are at distance 0: a floor keeps their kernel finite
    scale = np.maximum(scale, 1e-3 * (np.median(positive) if len(positive) else 1.0))
    weights = np.exp(-(found**2) / (scale[rows] * scale[columns]))
    directed = need("scipy.sparse").csr_matrix((weights, (rows, columns)), shape=(n, n))
    return directed.maximum(directed.T).tocsr()


def spectrum(affinity: csr_matrix, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def numbered(labels: np.ndarray) -> np.ndarray:
    """Clusters renumbered by size, largest first (ties: the first member first); an
    empty one (k-means leaves one where fewer than ``k`` maps differ) is dropped."""
    found, first, inverse, sizes = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    renumber = np.empty(len(found), dtype=np.int64)
    renumber[order] = np.arange(len(found))
    return renumber[inverse]


def typical_members(rows: np.ndarray, labels: np.ndarray, label: int, count: int) -> np.ndarray:
    """The indices of the ``count`` members of cluster ``label`` whose eigenvector ``rows``
    lie nearest the mean of theirs, nearest first."""
    members = np.flatnonzero(labels == label)
    distances = np.linalg.norm(rows[members] - rows[members].mean(axis=0), axis=1)
    return members[np.argsort(distances, kind="stable")[:count]]
