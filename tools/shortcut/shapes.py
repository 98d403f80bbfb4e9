"""Shortcuts of every shape, and the flag at every class size: ``python -m tools.shortcut.shapes``.

Usage::

    python -m tools.shortcut.shapes --out shapes.json              # both parts
    python -m tools.shortcut.shapes --report shapes.json           # the tables, from that file

Two parts, on synthetic classes (:mod:`tools.shortcut.synthetic`), each given to
:func:`captum_gmar.find_strategies` with its defaults:

- **shapes**: a tag of each shape (a 2 x 2 corner square, a frame, a dashed line along
  the bottom edge, a bracket along two edges, a spread of a fifth of the patches) on 10%
  of 300 maps, 25% of their mass, on fixed and moving objects, with and without a
  relevance floor, plain and sharpened maps, ``--seeds`` seeds each. Per class: whether
  a cluster isolates the tag (F1 >= 0.9), its rank, whether it is flagged.
- **pairs**: two shortcuts in one class, a tag of each of two shapes (every pair of
  shapes) on 10% of the maps each, the others as for the shapes. Per tag: whether a
  cluster isolates it, its rank, whether it is flagged.
- **sizes**: classes without a tag (every kind of object, floor and sharpness) of 20,
  50, 100 and 300 maps, ``--control-seeds`` seeds each: the share with a flagged cluster.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from captum_gmar import find_strategies
from captum_gmar.exploration.strategies import Cluster, Strategies
from tools.shortcut.family import FACTORS, ISOLATED, controls
from tools.shortcut.scoring import best_match
from tools.shortcut.synthetic import Setting, Shape, synthetic_class, two_tags_class

__all__ = ["SHAPES", "SIZES", "main"]

SHAPES: tuple[Shape, ...] = ("square", "frame", "line", "bracket", "spread")
SIZES = (20, 50, 100, 300)


def shape_settings(count: int = 300, tagged: float = 0.1) -> list[Setting]:
    """Every shape on every kind of object, floor and sharpness: ``count`` maps a class, a
    share ``tagged`` of them with the tag."""
    return [
        Setting(shape=shape, objects=objects, floor=floor, sharpen=sharpen, count=count, tagged=tagged)
        for shape, objects, floor, sharpen in itertools.product(SHAPES, FACTORS["objects"], FACTORS["floor"], FACTORS["sharpen"])
    ]


def _found(found: Strategies, tagged: np.ndarray) -> tuple[dict[str, Any], Cluster]:
    """The cluster that best matches the ``tagged`` maps: its F1, rank, flag and suspicion."""
    order = [c.label for c in found.ranking]
    best = best_match(found.labels, tagged, order)
    assert best.rank is not None  # an order was given
    cluster = next(c for c in found.ranking if c.label == order[best.rank - 1])
    return {"f1": best.f1, "rank": best.rank, "flagged": cluster.flagged, "suspicion": cluster.suspicion}, cluster


def run_shape(setting: Setting, seed: int) -> dict[str, Any]:
    maps, tagged = synthetic_class(setting, seed)
    found = find_strategies(maps, seed=seed)
    figures, cluster = _found(found, tagged)
    return {
        "setting": asdict(setting),
        "seed": seed,
        **figures,
        "others_flagged": sum(c.flagged for c in found.ranking if c is not cluster),
    }


def pair_settings(count: int = 300, tagged: float = 0.1) -> list[tuple[Setting, Shape]]:
    """Every pair of shapes on every kind of object, floor and sharpness (as :func:`shape_settings`;
    each tag on a share ``tagged`` of the maps)."""
    return [
        (replace(setting, shape=first), second)
        for first, second in itertools.combinations(SHAPES, 2)
        for setting in shape_settings(count, tagged)
        if setting.shape == "square"
    ]


def run_pair(setting: Setting, second: Shape, seed: int) -> dict[str, Any]:
    maps, *tagged = two_tags_class(setting, second, seed)
    found = find_strategies(maps, seed=seed)
    tags = [_found(found, t) for t in tagged]
    return {
        "setting": asdict(setting),
        "second": second,
        "seed": seed,
        "tags": [figures for figures, _ in tags],
        "others_flagged": sum(c.flagged for c in found.ranking if all(c is not cluster for _, cluster in tags)),
    }


def run_control(setting: Setting, seed: int) -> dict[str, Any]:
    maps, _ = synthetic_class(setting, seed)
    found = find_strategies(maps, seed=seed)
    return {"setting": asdict(setting), "seed": seed, "flagged": len(found.flagged), "top": found.ranking[0].suspicion}


def report(results: dict[str, Any]) -> str:
    out = [
        "| shape | classes | isolated (F1 >= 0.9) | first when isolated | first and flagged when isolated | other clusters flagged |",
        "|---|---|---|---|---|---|",
    ]
    for shape in SHAPES:
        rows = [r for r in results["shapes"] if r["setting"]["shape"] == shape]
        if not rows:
            continue
        isolated = [r for r in rows if r["f1"] >= ISOLATED]
        first = sum(r["rank"] == 1 for r in isolated)
        flagged = sum(r["rank"] == 1 and r["flagged"] for r in isolated)
        out.append(
            f"| {shape} | {len(rows)} | {len(isolated)} | {first} of {len(isolated)} | {flagged} of {len(isolated)} | "
            f"{sum(r['others_flagged'] > 0 for r in rows)} |"
        )
    out += [
        "",
        "| shapes | classes | both isolated (F1 >= 0.9) | both among the first two when isolated | both flagged | one isolated | it first and flagged | other clusters flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for first, second in itertools.combinations(SHAPES, 2):
        rows = [r for r in results.get("pairs", []) if (r["setting"]["shape"], r["second"]) == (first, second)]
        if not rows:
            continue
        both = [r for r in rows if all(t["f1"] >= ISOLATED for t in r["tags"])]
        one = [t for r in rows if sum(t["f1"] >= ISOLATED for t in r["tags"]) == 1 for t in r["tags"] if t["f1"] >= ISOLATED]
        out.append(
            f"| {first} and {second} | {len(rows)} | {len(both)} | {sum(all(t['rank'] <= 2 for t in r['tags']) for r in both)} of {len(both)} | "
            f"{sum(all(t['flagged'] for t in r['tags']) for r in both)} of {len(both)} | {len(one)} | "
            f"{sum(t['rank'] == 1 and t['flagged'] for t in one)} of {len(one)} | {sum(r['others_flagged'] > 0 for r in rows)} |"
        )
    out += ["", "| maps a class | classes without a tag | with a flagged cluster | highest suspicion (median) |", "|---|---|---|---|"]
    for size in SIZES:
        rows = [r for r in results["sizes"] if r["setting"]["count"] == size]
        if not rows:
            continue
        flagged = sum(r["flagged"] > 0 for r in rows)
        out.append(f"| {size} | {len(rows)} | {flagged} ({flagged / len(rows):.1%}) | {np.median([r['top'] for r in rows]):.2f} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results (JSON) here")
    parser.add_argument("--report", type=Path, help="print the tables of a results file")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--control-seeds", type=int, default=25)
    parser.add_argument("--count", type=int, default=300, help="maps a class, for the shapes and the pairs")
    parser.add_argument("--tagged", type=float, default=0.1, help="the share of a class's maps with each tag")
    parser.add_argument("--parts", nargs="+", choices=("shapes", "pairs", "sizes"), default=["shapes", "pairs", "sizes"])
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    if args.out is None:
        parser.error("give --out (run) or --report (tables)")
    jobs = [(s, seed) for s in shape_settings(args.count, args.tagged) for seed in range(args.seeds)] if "shapes" in args.parts else []
    shapes = [run_shape(s, seed) for s, seed in tqdm(jobs, desc="shapes")]
    pair_jobs = (
        [(s, second, seed) for s, second in pair_settings(args.count, args.tagged) for seed in range(args.seeds)]
        if "pairs" in args.parts
        else []
    )
    pairs = [run_pair(s, second, seed) for s, second, seed in tqdm(pair_jobs, desc="pairs")]
    size_jobs = (
        [(replace(s, count=n), seed) for n in SIZES for s in controls() for seed in range(args.control_seeds)]
        if "sizes" in args.parts
        else []
    )
    sizes = [run_control(s, 1000 + seed) for s, seed in tqdm(size_jobs, desc="sizes")]
    results = {
        "command": "python -m tools.shortcut." + " ".join(["shapes", *sys.argv[1:]]),
        "shapes": shapes,
        "pairs": pairs,
        "sizes": sizes,
    }
    args.out.write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
