"""Do the exact and the approximate neighbour search give the same strategies on the
synthetic benchmark family? ``python -m tools.shortcut.searches``.

Usage::

    python -m tools.shortcut.searches --count 5000 --every 7 --out searches.json

Every ``--every``-th setting of :func:`tools.shortcut.family.settings` (7, prime to
every factor's number of levels, so that each factor takes each of its levels along the
sample; a stride of 8 keeps only fixed objects, no floor, plain maps), one class of ``--count`` maps each (seed 0), given to
:func:`captum_gmar.find_strategies` twice: ``search="exact"`` and
``search="approximate"``. Per class: the adjusted Rand index of the two clusterings
(flat maps included, label ``-1``), and the first-ranked cluster's recall and precision
of the tagged maps with each search; and, as the control, the index between the exact
search's clusters under the class's seed and under the next (the eigen-solver's start and
k-means), on the same maps. The report gives the share of classes whose index is at
least 0.99 and whose first-ranked recall and precision move by at most 0.01, and the
classes where they do not.

Below 576 maps (9 cells of 64 training maps) the inverted file has at most 8 cells and
every map searches them all, so the two searches agree exactly; ``--count`` should be well
above it (each cell is compared with the cells its maps would search, which at a few
thousand maps can still be most of them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score
from tqdm import tqdm

from captum_gmar import find_strategies
from tools.shortcut.family import settings
from tools.shortcut.scoring import cluster_match
from tools.shortcut.synthetic import Setting, synthetic_class

__all__ = ["compare", "main", "report"]

#: the agreement the approximate search must keep: the clusters' adjusted Rand index, and
#: the first-ranked cluster's recall and precision
ARI, MOVE = 0.99, 0.01


def compare(setting: Setting, seed: int = 0) -> dict[str, Any]:
    """One class of ``setting``, its strategies found with each search, and their agreement."""
    maps, tagged = synthetic_class(setting, seed)
    out: dict[str, Any] = {"name": setting.name(), "seed": seed}
    labels = {}
    for search in ("exact", "approximate"):
        found = find_strategies(maps, seed=seed, search=search)
        order = [c.label for c in found.ranking]
        first = cluster_match(found.labels, tagged, order[0], order)
        labels[search] = found.labels
        out[search] = {"clusters": found.n_clusters, "recall": first.recall, "precision": first.precision}
    out["ari"] = float(adjusted_rand_score(labels["exact"], labels["approximate"]))
    out["moved"] = max(abs(out["exact"][f] - out["approximate"][f]) for f in ("recall", "precision"))
    # the control: the exact search's clusters under another seed of the clustering (the
    # eigen-solver's start and k-means), on the same maps
    out["ari_seed"] = float(adjusted_rand_score(labels["exact"], find_strategies(maps, seed=seed + 1, search="exact").labels))
    return out


def report(rows: Sequence[dict[str, Any]]) -> str:
    """The agreement over ``rows`` (from :func:`compare`), and the classes that miss it."""
    ari = np.array([r["ari"] for r in rows])
    seeded = np.array([r["ari_seed"] for r in rows])
    moved = np.array([r["moved"] for r in rows])
    kept = (ari >= ARI) & (moved <= MOVE)
    lines = [
        "| classes | ARI against exact: min, median | ARI >= 0.99 | first-ranked recall and precision within 0.01 | both "
        "| exact at another seed: ARI >= 0.99 |",
        "|---:|---|---:|---:|---:|---:|",
        f"| {len(rows)} | {ari.min():.4f}, {np.median(ari):.4f} | {np.mean(ari >= ARI):.2f} | {np.mean(moved <= MOVE):.2f} "
        f"| {kept.mean():.2f} | {np.mean(seeded >= ARI):.2f} |",
    ]
    missed = [r for r, k in zip(rows, kept) if not k]
    if missed:
        lines += [
            "",
            "| class | ARI | exact at another seed: ARI | first-ranked recall, precision: exact | approximate |",
            "|---|---:|---:|---|---|",
        ]
        lines += [
            f"| {r['name']} | {r['ari']:.4f} | {r['ari_seed']:.4f} | {r['exact']['recall']:.2f}, {r['exact']['precision']:.2f} "
            f"| {r['approximate']['recall']:.2f}, {r['approximate']['precision']:.2f} |"
            for r in missed
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m tools.shortcut.searches", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=5000, help="maps per class")
    p.add_argument("--every", type=int, default=7, help="every this many-th setting of the family (prime to the factors' levels)")
    p.add_argument("--out", type=Path, required=True, help="write the results (JSON) here")
    args = p.parse_args(argv)
    chosen = [replace(s, count=args.count) for s in settings()[:: args.every]]
    rows = [compare(s) for s in tqdm(chosen, desc="classes", unit="class", mininterval=10.0)]
    command = " ".join(["python -m tools.shortcut.searches", *(argv if argv is not None else sys.argv[1:])])
    args.out.write_text(json.dumps({"command": command, "classes": rows}, indent=1) + "\n")
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
