"""Which library finds each map's nearest maps for ``find_strategies`` above the exact
search's size: wall time, peak memory, recall of the exact neighbours, and whether the
result is the same on 1 and 2 threads.

The maps are the synthetic 14 x 14 maps of ``tests/exploration/synthetic_maps.py``, as
``find_strategies`` compares them (``sqrt`` of each map's positive mass, normalised: 196
float32 values). Each library runs in a fresh process, once on one thread and once on
two; the time and the peak resident set (less the set before) are those of the
two-thread run. Recall: the share of the exact 10 nearest maps found, over 2,000 maps
drawn at random.

- ``exact``: the package's exact search (scikit-learn's brute force, block by block);
- ``package``: the package's approximate search (an inverted file searched a cell at a
  time by matrix products, see :mod:`captum_gmar.exploration.neighbours`);
- ``faiss-ivf``: faiss's ``IndexIVFFlat`` (``4 sqrt(N)`` cells trained on one thread on 64
  maps a cell, 24 searched for each map), the package's approximate search before;
- ``faiss-hnsw``: faiss's ``IndexHNSWFlat`` (M 16, efConstruction 100, efSearch 50);
- ``hnswlib``: hnswlib's HNSW with the same settings;
- ``pynndescent``: NN-descent (``NNDescent``, its defaults, ``random_state=0``).

    python benchmarks/bench_neighbours.py --maps 100000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/, which the test helper's maps come from
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "exploration"))
from synthetic_maps import planted_maps  # noqa: E402  (a test helper: the maps the tests use)

K = 10
LIBRARIES = ("exact", "package", "faiss-ivf", "faiss-hnsw", "hnswlib", "pynndescent")


def _features(count: int) -> np.ndarray:
    """``sqrt(p)`` of ``count`` synthetic maps, ``(N, 196)`` float32, as find_strategies compares them."""
    maps, _ = planted_maps(count, seed=0)
    flat = np.maximum(maps.reshape(count, -1), 0)
    return np.sqrt(flat / flat.sum(1, keepdims=True)).astype(np.float32)


def _graph(library: str, features: np.ndarray, threads: int) -> np.ndarray:
    """Each row's ``K`` nearest other rows ``(N, K)``, by ``library`` on ``threads`` threads."""
    import torch

    from captum_gmar.exploration.neighbours import nearest_neighbours

    torch.set_num_threads(threads)
    if library in ("exact", "package"):
        return nearest_neighbours(features, K, "exact" if library == "exact" else "approximate", seed=0)[1]
    if library == "faiss-ivf":
        import faiss

        cells = int(4 * np.sqrt(len(features)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(features.shape[1]), features.shape[1], cells)
        index.cp.seed = 0
        faiss.omp_set_num_threads(1)  # the cells: one thread, as the package trained them
        index.train(features[np.sort(np.random.default_rng(0).choice(len(features), min(len(features), 64 * cells), replace=False))])
        faiss.omp_set_num_threads(threads)
        index.add(features)
        index.nprobe = 24
        found = index.search(features, K + 1)[1]
        return np.array([[j for j in row if j != i][:K] for i, row in enumerate(found)])
    if library == "faiss-hnsw":
        import faiss

        faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(features.shape[1], 16)
        index.hnsw.efConstruction = 100
        index.add(features)
        index.hnsw.efSearch = 50
        return index.search(features, K + 1)[1][:, 1:]
    if library == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="l2", dim=features.shape[1])
        index.init_index(max_elements=len(features), ef_construction=100, M=16, random_seed=0)
        index.set_num_threads(threads)
        index.add_items(features, np.arange(len(features)))
        index.set_ef(50)
        return index.knn_query(features, k=K + 1)[0][:, 1:].astype(np.int64)
    from pynndescent import NNDescent

    return NNDescent(features, n_neighbors=K + 1, random_state=0, n_jobs=threads).neighbor_graph[0][:, 1:]


def _resident() -> tuple[int, int]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def child(library: str, count: int) -> dict:
    """One library's measurement, in this process."""
    from sklearn.neighbors import NearestNeighbors

    features = _features(count)
    one = _graph(library, features, 1)
    Path("/proc/self/clear_refs").write_text("5")
    before = _resident()[0]
    start = time.perf_counter()
    two = _graph(library, features, 2)
    seconds = time.perf_counter() - start
    peak = _resident()[1]
    sample = np.random.default_rng(1).choice(count, min(count, 2000), replace=False)
    exact = NearestNeighbors(n_neighbors=K + 1).fit(features).kneighbors(features[sample], return_distance=False)
    # the exact neighbours less the row itself (identical maps may come first: drop the row where it is found)
    truth = [[j for j in row if j != i][:K] for i, row in zip(sample, exact)]
    recall = float(np.mean([len(set(two[i]) & set(t)) / K for i, t in zip(sample, truth)]))
    return {"library": library, "maps": count, "seconds": seconds, "own": peak - before, "recall": recall, "same": bool((one == two).all())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=100_000)
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.maps)))
        return 0
    import sklearn

    print(
        f"CPU, 2 cores ({platform.machine()}), scikit-learn {sklearn.__version__}, numpy {np.__version__}; {args.maps:,} maps, {K} neighbours"
    )
    print()
    print("| library | seconds (2 threads) | its own peak (MiB) | recall of the exact 10 | the same on 1 and 2 threads |")
    print("|---|---:|---:|---:|---|")
    for library in args.libraries:
        run = subprocess.run([sys.executable, __file__, "--maps", str(args.maps), "--child", library], capture_output=True, text=True)
        if run.returncode:
            print(f"| {library} | failed: {run.stderr.strip().splitlines()[-1]} | | | |", flush=True)
            continue
        row = json.loads(run.stdout.splitlines()[-1])
        same = "yes" if row["same"] else "no"
        print(f"| {library} | {row['seconds']:.1f} | {row['own'] / 2**20:,.0f} | {row['recall']:.3f} | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
