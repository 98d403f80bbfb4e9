"""Each map's nearest maps: exact below :data:`EXACT_UP_TO` maps, approximate above.

- **Exact**: scikit-learn's brute-force search, which reduces the distances block by
  block and keeps only each row's nearest (memory ``O(N k)``, time ``O(N^2 P)``).
- **Approximate**: an inverted file searched a cell at a time. faiss's k-means cuts the
  maps into ``2 sqrt(N)`` cells (trained on ``64`` maps a cell drawn by ``seed``, at most
  ``N``) and finds the ``8`` cells whose centres are nearest each map. The maps of one
  cell are then compared, by exact distances in one matrix product, with every map of
  every cell that any of them would search (about 26 cells: a superset of each map's own
  8), and each keeps its ``k`` nearest. Time about ``O(N^1.5 P)``, as for faiss's
  ``IndexIVFFlat``, which compares a map with one other at a time, but spent in BLAS's
  matrix products (``docs/benchmarks.md``: 9.3 s against faiss's 27.1 s on
  100,000 maps); memory: the candidates' copy for one cell per thread, not a copy of
  every map. The cells are trained on one thread and each cell's product runs on one
  thread (the cells are spread over ``torch.get_num_threads()`` threads), so the same maps
  and seed give the same graph on any number of threads.

Both return each map's ``k`` nearest other maps (a map is not its own neighbour, but an
identical map is), nearest first, with their Euclidean distances (computed exactly for
the neighbours kept, not from the product).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from ._extra import need

__all__ = ["EXACT_UP_TO", "Search", "nearest_neighbours"]

Search = Literal["auto", "exact", "approximate"]
#: up to this many maps, ``search="auto"`` searches exactly
EXACT_UP_TO = 20_000
#: the cells per square root of the maps, the cells each map would search, and the maps per
#: cell the k-means is trained on
_CELLS, _PROBES, _TRAIN = 2, 8, 64


def nearest_neighbours(features: np.ndarray, k: int, search: Search = "auto", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of ``features`` ``(N, P)`` for every row.

    Args:
        features: ``float32 (N, P)``.
        k: neighbours per row, fewer than ``N``.
        search: ``"exact"``, ``"approximate"`` or ``"auto"`` (exact up to :data:`EXACT_UP_TO` rows).
        seed: the draw of the maps the approximate search's cells are trained on.

    Returns:
        distances ``float32 (N, k)`` and indices ``int64 (N, k)``, nearest first.
    """
    if search not in ("auto", "exact", "approximate"):
        raise ValueError(f"search must be auto, exact or approximate, got {search!r}")
    if search == "exact" or (search == "auto" and len(features) <= EXACT_UP_TO):
        nearest = need("sklearn.neighbors").NearestNeighbors(n_neighbors=k, algorithm="brute").fit(features)
        distances, indices = nearest.kneighbors()  # no query: each row's neighbours leave the row out
        return distances.astype(np.float32), indices.astype(np.int64)
    return _inverted_file(np.ascontiguousarray(features, dtype=np.float32), k, seed)


def _inverted_file(features: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    faiss = need("faiss")
    threadpool_limits = need("threadpoolctl").threadpool_limits
    count, dimensions = features.shape
    cells = max(1, min(int(_CELLS * np.sqrt(count)), count // _TRAIN))
    sample = features[np.sort(np.random.default_rng(seed).choice(count, min(count, _TRAIN * cells), replace=False))]
    threads = faiss.omp_get_max_threads()
    workers = max(1, torch.get_num_threads())
    clustering = faiss.Clustering(dimensions, cells)
    clustering.seed, clustering.niter = seed, 10
    centres = faiss.IndexFlatL2(dimensions)
    try:
        faiss.omp_set_num_threads(1)  # the cells: one thread, one k-means
        clustering.train(sample, centres)
        faiss.omp_set_num_threads(workers)  # each map's nearest centres: independent of the others'
        probed = centres.search(features, min(_PROBES, cells))[1].astype(np.int32)  # (N, probes), its own cell first
    finally:
        faiss.omp_set_num_threads(threads)
    members = np.argsort(probed[:, 0], kind="stable")
    bounds = np.searchsorted(probed[members, 0], np.arange(cells + 1))
    squared_norms = np.einsum("ij,ij->i", features, features)
    distances = np.empty((count, k), dtype=np.float32)
    indices = np.empty((count, k), dtype=np.int64)

    def search_cell(cell: int) -> None:
        rows = members[bounds[cell] : bounds[cell + 1]]
        if not len(rows):
            return
        candidates = np.concatenate([members[bounds[c] : bounds[c + 1]] for c in np.unique(probed[rows])])
        if len(candidates) <= k:
            raise RuntimeError(f"the approximate search found fewer than {k} neighbours for some maps: search exactly (search='exact')")
        # each squared distance less the row's own norm, which does not change the row's order
        partial = features[rows] @ features[candidates].T
        partial *= -2
        partial += squared_norms[candidates]
        near = candidates[torch.topk(torch.from_numpy(partial), k + 1, dim=1, largest=False).indices.numpy()]
        # the distances exactly, not from the product, and in their order (the product's can swap near ties)
        apart = np.linalg.norm(features[rows, None, :] - features[near], axis=-1)
        order = np.argsort(apart, axis=1, kind="stable")
        near, apart = np.take_along_axis(near, order, 1), np.take_along_axis(apart, order, 1)
        # leave each row out of its own neighbours: where it was found, drop it; else drop the farthest
        keep = near != rows[:, None]
        keep[keep.all(axis=1), -1] = False
        indices[rows], distances[rows] = near[keep].reshape(-1, k), apart[keep].reshape(-1, k)

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:  # one thread a cell
        list(pool.map(search_cell, range(cells)))
    return distances, indices
