"""Each map's nearest maps: exact below :data:`EXACT_UP_TO` maps, approximate above.

- **Exact**: scikit-learn's brute-force search, which reduces the distances block by
  block and keeps only each row's nearest (memory ``O(N k)``, time ``O(N^2 P)``).
- **Approximate**: a hierarchical navigable small-world graph (HNSW; Malkov and Yashunin
  2018) from faiss (``faiss-cpu``, in the ``explore`` extra), ``M = 32`` links a node,
  ``efConstruction = 200``, searched with ``efSearch = max(128, 4 k)``: time about
  ``O(N log N)``, memory ``O(N (P + M))``. The graph is built on one thread, so that the
  same maps give the same graph; the searches, each independent of the others, use every
  thread torch uses.

Both return each map's ``k`` nearest other maps (a map is not its own neighbour, but an
identical map is), nearest first, with their Euclidean distances.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._extra import need

__all__ = ["EXACT_UP_TO", "Search", "nearest_neighbours"]

Search = Literal["auto", "exact", "approximate"]
#: up to this many maps, ``search="auto"`` searches exactly
EXACT_UP_TO = 50_000
#: HNSW's links per node and its construction and search breadths
_LINKS, _BUILD, _SEARCH = 32, 200, 128


def nearest_neighbours(features: np.ndarray, k: int, search: Search = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of ``features`` ``(N, P)`` for every row.

    Args:
        features: ``float32 (N, P)``.
        k: neighbours per row, fewer than ``N``.
        search: ``"exact"``, ``"approximate"`` or ``"auto"`` (exact up to :data:`EXACT_UP_TO` rows).

    Returns:
        distances ``float32 (N, k)`` and indices ``int64 (N, k)``, nearest first.
    """
    if search not in ("auto", "exact", "approximate"):
        raise ValueError(f"search must be auto, exact or approximate, got {search!r}")
    if search == "exact" or (search == "auto" and len(features) <= EXACT_UP_TO):
        nearest = need("sklearn.neighbors").NearestNeighbors(n_neighbors=k, algorithm="brute").fit(features)
        distances, indices = nearest.kneighbors()  # no query: each row's neighbours leave the row out
        return distances.astype(np.float32), indices.astype(np.int64)
    return _hnsw(np.ascontiguousarray(features, dtype=np.float32), k)


def _hnsw(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    faiss = need("faiss")
    count = len(features)
    index = faiss.IndexHNSWFlat(features.shape[1], _LINKS)
    index.hnsw.efConstruction = _BUILD
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # the graph depends on the order of insertion: one thread, one graph
    try:
        index.add(features)
    finally:
        faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    index.hnsw.efSearch = max(_SEARCH, 4 * k)
    try:
        squared, found = index.search(features, k + 1)
    finally:
        faiss.omp_set_num_threads(threads)
    if (found < 0).any():  # faiss marks a neighbour it could not find with -1
        raise RuntimeError(f"the approximate search found fewer than {k} neighbours for some maps: search exactly (search='exact')")
    # leave each row out of its own neighbours: where it was found, drop it; else drop the farthest
    own = found == np.arange(count)[:, None]
    keep = ~own
    keep[~own.any(axis=1), -1] = False
    distances = np.sqrt(np.maximum(squared[keep].reshape(count, k), 0)).astype(np.float32)
    return distances, found[keep].reshape(count, k).astype(np.int64)
