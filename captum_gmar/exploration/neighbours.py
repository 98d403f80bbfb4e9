"""Each map's nearest maps: exact below :data:`EXACT_UP_TO` maps, approximate above.

- **Exact**: scikit-learn's brute-force search, which reduces the distances block by
  block and keeps only each row's nearest (memory ``O(N k)``, time ``O(N^2 P)``).
- **Approximate**: faiss's inverted file (``IndexIVFFlat``; ``faiss-cpu``, in the
  ``explore`` extra): k-means cuts the maps into ``nlist = 4 sqrt(N)`` cells (trained on
  ``64 nlist`` maps drawn by ``seed``, at most ``N``), and each map's neighbours are found
  among the maps of the ``nprobe = 24`` cells whose centres are nearest it, by exact
  distances: time about ``O(N^1.5 P)``, memory ``O(N P)`` (a copy of the maps in the
  index). The cells are trained on one thread, so that the same maps and seed give the
  same cells; each map's search is independent of the others' and exact within its
  cells, so the result does not depend on how many threads search (every thread torch
  uses).

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
EXACT_UP_TO = 20_000
#: the inverted file's cells per square root of the maps, the cells searched, and the maps
#: per cell its k-means is trained on
_CELLS, _PROBES, _TRAIN = 4, 24, 64


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
    count, dimensions = features.shape
    cells = max(1, min(int(_CELLS * np.sqrt(count)), count // _TRAIN))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dimensions), dimensions, cells)
    index.cp.seed = seed
    sample = features[np.sort(np.random.default_rng(seed).choice(count, min(count, _TRAIN * cells), replace=False))]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # the cells: one thread, one k-means
    try:
        index.train(sample)
        faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
        index.add(features)
        index.nprobe = min(_PROBES, cells)
        squared, found = index.search(features, k + 1)
    finally:
        faiss.omp_set_num_threads(threads)
    del index  # its copy of the maps
    if (found < 0).any():  # faiss marks a neighbour it could not find with -1
        raise RuntimeError(f"the approximate search found fewer than {k} neighbours for some maps: search exactly (search='exact')")
    # leave each row out of its own neighbours: where it was found, drop it; else drop the farthest
    own = found == np.arange(count)[:, None]
    keep = ~own
    keep[~own.any(axis=1), -1] = False
    distances = np.sqrt(np.maximum(squared[keep].reshape(count, k), 0)).astype(np.float32)
    return distances, found[keep].reshape(count, k).astype(np.int64)
