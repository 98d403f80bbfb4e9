"""Does the strategy finder put a planted tag first, and flag it, across a family of
synthetic classes? ``python -m tools.shortcut.family``.

Usage::

    python -m tools.shortcut.family --out family.json            # every setting, 2 seeds
    python -m tools.shortcut.family --report family.json         # the tables, from that file

Every combination of the tag's share of a tagged map's mass (5 to 50%), its size (1 to 3
patches a side) and place (corner, edge, on the object), the share of tagged maps (2 to
20%), a relevance floor or none, fixed or moving objects and plain or sharpened
(sparse) maps (:mod:`tools.shortcut.synthetic`), each with ``--seeds`` seeds, and a
tag whose share varies from 5 to 50% within a class; then the same classes without a
tag (the controls), ``--control-seeds`` seeds each. Each class is 1,000 maps on a 14 x 14
grid, given to :func:`captum_gmar.find_strategies` with its defaults.

Per class: the best-matching cluster (highest F1 against the tagged maps) and its rank;
the first-ranked cluster's recall, precision and F1, and whether it is flagged; for a
control, whether any cluster is flagged and the highest suspicion. ``--report`` prints
the rates per factor: *isolated* (some cluster has F1 >= 0.9), *first* (the
first-ranked cluster has F1 >= 0.8), *first and flagged*, and *first when isolated*.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from captum_gmar import find_strategies
from tools.shortcut.scoring import best_match, cluster_match
from tools.shortcut.synthetic import Setting, synthetic_class

__all__ = ["FACTORS", "main", "run_setting", "settings"]

#: each factor of the family and its levels
FACTORS: dict[str, tuple[Any, ...]] = {
    "mass": (0.05, 0.1, 0.15, 0.25, 0.5),
    "tag": (1, 2, 3),
    "place": ("corner", "edge", "object"),
    "tagged": (0.02, 0.05, 0.1, 0.2),
    "floor": (0.0, 0.3),
    "objects": ("fixed", "moving"),
    "sharpen": (1.0, 3.0),
}
#: a tag's best cluster isolates it at this F1; the first-ranked cluster is the tag at this one
ISOLATED, FIRST = 0.9, 0.8


def settings() -> list[Setting]:
    """Every combination of :data:`FACTORS`, then a tag of 5 to 50% within each class on
    every kind of object and floor."""
    grid = [Setting(**dict(zip(FACTORS, levels))) for levels in itertools.product(*FACTORS.values())]
    varying = [
        Setting(mass=0.275, mass_spread=0.82, floor=floor, objects=objects, sharpen=sharpen)
        for floor, objects, sharpen in itertools.product(FACTORS["floor"], FACTORS["objects"], FACTORS["sharpen"])
    ]
    return grid + varying


def controls() -> list[Setting]:
    """The classes without a tag: every floor, kind of object and sharpness."""
    return [
        Setting(floor=floor, objects=objects, sharpen=sharpen).without_tag()
        for floor, objects, sharpen in itertools.product(FACTORS["floor"], FACTORS["objects"], FACTORS["sharpen"])
    ]


def run_setting(setting: Setting, seed: int) -> dict[str, Any]:
    """One class of ``setting`` drawn with ``seed``, its strategies found and scored."""
    maps, tagged = synthetic_class(setting, seed)
    start = time.perf_counter()
    found = find_strategies(maps, seed=seed)
    out: dict[str, Any] = {
        "setting": asdict(setting),
        "name": setting.name(),
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 3),
        "clusters": found.n_clusters,
        "clusters_found": found.clusters_found,
        "flagged": len(found.flagged),
        "top_suspicion": found.ranking[0].suspicion,
    }
    if tagged.any():
        order = [c.label for c in found.ranking]
        best, first = best_match(found.labels, tagged, order), cluster_match(found.labels, tagged, order[0], order)
        out.update(
            best={"f1": best.f1, "recall": best.recall, "precision": best.precision, "rank": best.rank},
            first={"f1": first.f1, "recall": first.recall, "precision": first.precision, "flagged": found.ranking[0].flagged},
        )
    return out


def _rates(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    isolated = [r for r in rows if r["best"]["f1"] >= ISOLATED]
    first = [r["first"]["f1"] >= FIRST for r in rows]
    return {
        "classes": len(rows),
        "isolated": np.mean([r["best"]["f1"] >= ISOLATED for r in rows]),
        "first": np.mean(first),
        "first_flagged": np.mean([f and r["first"]["flagged"] for f, r in zip(first, rows)]),
        "first_when_isolated": np.mean([r["best"]["rank"] == 1 for r in isolated]) if isolated else float("nan"),
        "isolated_count": len(isolated),
    }


def _table(title: str, groups: Iterable[tuple[str, Sequence[dict[str, Any]]]]) -> str:
    out = [
        f"| {title} | classes | isolated (F1 >= 0.9) | first-ranked is the tag (F1 >= 0.8) | and flagged | first-ranked when isolated |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in groups:
        r = _rates(rows)
        out.append(
            f"| {name} | {r['classes']} | {r['isolated']:.2f} | {r['first']:.2f} | {r['first_flagged']:.2f} | "
            f"{r['first_when_isolated']:.2f} ({r['isolated_count']}) |"
        )
    return "\n".join(out)


def report(results: dict[str, Any]) -> str:
    """The markdown tables of a results file."""
    tagged = [r for r in results["classes"] if "best" in r]
    grid = [r for r in tagged if r["setting"]["mass_spread"] == 0.2]
    parts = [
        _table(
            "all tagged classes", [("all", tagged), ("the tag holds >= 15% of the mass", [r for r in grid if r["setting"]["mass"] >= 0.15])]
        )
    ]
    for factor, levels in FACTORS.items():
        parts.append(_table(factor, [(str(level), [r for r in grid if r["setting"][factor] == level]) for level in levels]))
    common = [r for r in grid if r["setting"]["sharpen"] == 1.0 and r["setting"]["tagged"] >= 0.1 and r["setting"]["mass"] >= 0.15]
    parts.append(
        _table(
            "tag >= 15% of the mass, on >= 10% of the maps, plain maps",
            [("by place: " + p, [r for r in common if r["setting"]["place"] == p]) for p in FACTORS["place"]],
        )
    )
    varying = [r for r in tagged if r["setting"]["mass_spread"] != 0.2]
    parts.append(_table("a tag of 5-50% within a class", [(r["name"].split("; ")[1] + f", seed {r['seed']}", [r]) for r in varying]))
    control = results["controls"]
    flagged = [r for r in control if r["flagged"]]
    parts.append(
        f"Controls (no tag): {len(flagged)} of {len(control)} classes have a flagged cluster; highest suspicion "
        f"{max(r['top_suspicion'] for r in control):.2f}, median {np.median([r['top_suspicion'] for r in control]):.2f}."
    )
    failures = [r for r in grid if r["setting"]["mass"] >= 0.15 and r["first"]["f1"] < FIRST]
    parts.append(
        f"Tagged classes with the tag at >= 15% of the mass whose first-ranked cluster is not the tag: {len(failures)} of "
        f"{sum(r['setting']['mass'] >= 0.15 for r in grid)}; by factor:"
    )
    for factor, levels in FACTORS.items():
        if factor == "mass":
            continue
        parts.append(f"- {factor}: " + ", ".join(f"{level}: {sum(r['setting'][factor] == level for r in failures)}" for level in levels))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m tools.shortcut.family", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the results (JSON) here")
    p.add_argument("--report", type=Path, help="print the tables of a results file")
    p.add_argument("--seeds", type=int, default=2, help="seeds per tagged setting")
    p.add_argument("--control-seeds", type=int, default=10, help="seeds per control setting")
    p.add_argument("--count", type=int, default=1000, help="maps per class")
    p.add_argument("--limit", type=int, default=None, help="only the first this many tagged settings (a quick run)")
    args = p.parse_args(argv)
    if args.report is not None:
        print(report(json.loads(args.report.read_text())))
        return 0
    if args.out is None:
        p.error("give --out (to run) or --report (to print)")
    tagged = [replace(s, count=args.count) for s in settings()[: args.limit]]
    plain = [replace(s, count=args.count) for s in controls()]
    jobs = [(s, seed) for s in tagged for seed in range(args.seeds)] + [
        (s, 100 + seed) for s in plain for seed in range(args.control_seeds)
    ]
    rows = [run_setting(s, seed) for s, seed in tqdm(jobs, desc="classes", unit="class", mininterval=10.0)]
    results = {
        "command": " ".join(["python -m tools.shortcut.family", *(argv if argv is not None else sys.argv[1:])]),
        "classes": [r for r in rows if "best" in r],
        "controls": [r for r in rows if "best" not in r],
    }
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
