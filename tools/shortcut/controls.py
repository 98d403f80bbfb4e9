"""How often the flag is raised where no shortcut was planted: ``python -m tools.shortcut.controls``.

Usage::

    # the reference models' own classes: 300 one-item test scenes per class, every method
    python -m tools.shortcut.controls explain --model vit-tiny --out controls/vit-tiny
    python -m tools.shortcut.controls explain --model dinov2-small --out controls/dinov2-small
    # the same at 20, 50, 100 and 300 maps a class: random draws of each class's maps
    python -m tools.shortcut.controls sizes controls/vit-tiny
    # the share of (method, class) groups with a flagged cluster, per source
    python -m tools.shortcut.controls report --classes controls/vit-tiny controls/dinov2-small \\
        --untouched bench/control-magenta bench/control-teal --family family.json

Sources of groups without a shortcut:

- ``--classes``: folders ``explain`` wrote: each class of a reference model, its own
  test scenes (none tagged), explained for that class;
- ``--untouched``: the planted-shortcut benchmark run on the untouched ``vit-tiny``
  (``tools.shortcut.benchmark --model captum_gmar/reference/model``): tagged images, but
  a model that never learned the tag;
- ``--family``: the synthetic classes without a tag of ``tools.shortcut.family``.

Each group is given to :func:`captum_gmar.find_strategies` with its defaults and the
images' margins as ``confidence``, as ``explore`` runs it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from captum_gmar import find_strategies, load_reference_model
from captum_gmar.dataset_maps import explain_dataset, load_maps, read_maps
from captum_gmar.dataset_maps.checks import read_job
from captum_gmar.evaluation.data import SceneTasks
from captum_gmar.imagedata import CLASS_NAMES
from captum_gmar.reference.inputs import load_image_processor
from tools.shortcut.benchmark import METHODS
from tools.shortcut.train import class_scenes

__all__ = ["main"]

#: class ``c``'s scenes are drawn by a generator seeded ``SEED + c``
SEED = 52000


def explain(model_name: str, out: Path, images: int, methods: Sequence[str]) -> None:
    """Each class's ``images`` test scenes, explained for that class: ``out/classC/maps``."""
    torch.set_num_threads(1)
    model = load_reference_model(model_name)
    processor = None if model_name == "vit-tiny" else load_image_processor(model)
    for c in tqdm(range(len(CLASS_NAMES)), desc="classes"):
        folder = out / f"class{c}"
        if (folder / "maps" / "index.csv").exists():
            continue
        scenes = class_scenes(images, [c], SEED + c)
        explain_dataset(model, SceneTasks(scenes, processor), list(methods), folder / "maps", target=c, batch_size=50, progress=False)


def _groups(folder: Path) -> list[dict[str, Any]]:
    """Every method's maps in a maps folder, clustered: one row per method."""
    rows = []
    job = read_job(folder)
    assert job is not None, f"{folder} holds no maps"
    for method in job["methods"]:
        records = load_maps(folder, method)
        maps = read_maps(records).numpy()
        found = find_strategies(maps, confidence=np.array([r.margin for r in records]))
        rows.append({"folder": str(folder), "method": method, "flagged": len(found.flagged), "top_suspicion": found.ranking[0].suspicion})
    return rows


def sizes_report(classes: Path, sizes: Sequence[int], draws: int) -> str:
    """The share of (method, class) groups with a flagged cluster when each class has only
    ``n`` maps: ``draws`` random draws (seeded) of ``n`` of each class's maps, for each
    ``n`` of ``sizes`` (a draw of all the maps is made once)."""
    rows: list[dict[str, Any]] = []
    folders = sorted(classes.glob("class*/maps"))
    for folder in tqdm(folders, desc="classes"):
        job = read_job(folder)
        assert job is not None, f"{folder} holds no maps"
        for method in job["methods"]:
            records = load_maps(folder, method)
            maps, margins = read_maps(records).numpy(), np.array([r.margin for r in records])
            for n in sizes:
                for draw in range(draws if n < len(maps) else 1):
                    pick = np.random.default_rng(draw).permutation(len(maps))[:n]
                    found = find_strategies(maps[pick], confidence=margins[pick], seed=draw)
                    rows.append({"method": method, "n": n, "flagged": len(found.flagged) > 0})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = ["| maps a class | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for n in sizes:
        cells = []
        for method in methods:
            picked = [r["flagged"] for r in rows if r["n"] == n and r["method"] == method]
            cells.append(f"{sum(picked)} of {len(picked)}")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _line(source: str, rows: Sequence[dict[str, Any]]) -> str:
    tops = [r["top_suspicion"] for r in rows]
    flagged = sum(r["flagged"] > 0 for r in rows)
    return (
        f"| {source} | {len(rows)} | {flagged} ({flagged / len(rows):.1%}) | {np.median(tops):.2f} | "
        f"{np.quantile(tops, 0.95):.2f} | {max(tops):.2f} |"
    )


def report(classes: Sequence[Path], untouched: Sequence[Path], family: Path | None) -> str:
    """The table: per source, the groups, those with a flagged cluster, and the highest
    suspicion's median, 95th percentile and maximum."""
    out = [
        "| source | groups | with a flagged cluster | highest suspicion: median | 95th percentile | maximum |",
        "|---|---|---|---|---|---|",
    ]
    per_method: dict[str, list[dict[str, Any]]] = {}
    for folder in classes:
        rows = [row for maps in sorted(folder.glob("class*/maps")) for row in _groups(maps)]
        out.append(_line(f"{folder.name}, its own classes", rows))
        for row in rows:
            per_method.setdefault(row["method"], []).append(row)
    for folder in untouched:
        rows = [row for maps in sorted(folder.glob("seed*/maps")) for row in _groups(maps)]
        out.append(_line(f"untouched vit-tiny, {folder.name}", rows))
        for row in rows:
            per_method.setdefault(row["method"], []).append(row)
    if family is not None:
        rows = json.loads(family.read_text())["controls"]
        out.append(_line("synthetic classes without a tag", rows))
    out += [
        "",
        "| method | groups | with a flagged cluster | highest suspicion: median | 95th percentile | maximum |",
        "|---|---|---|---|---|---|",
    ]
    out += [_line(method, rows) for method, rows in per_method.items()]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m tools.shortcut.controls", description=__doc__.split("\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    e = commands.add_parser("explain", help="explain a reference model's own classes")
    e.add_argument("--model", choices=["vit-tiny", "dinov2-small"], required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--images", type=int, default=300, help="test scenes per class")
    e.add_argument("--methods", nargs="+", default=list(METHODS))
    r = commands.add_parser("report", help="the share of groups with a flagged cluster")
    r.add_argument("--classes", type=Path, nargs="*", default=[])
    r.add_argument("--untouched", type=Path, nargs="*", default=[])
    r.add_argument("--family", type=Path, default=None)
    z = commands.add_parser("sizes", help="the share of groups with a flagged cluster at smaller class sizes")
    z.add_argument("classes", type=Path, help="a folder the explain command wrote")
    z.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 300])
    z.add_argument("--draws", type=int, default=10)
    args = p.parse_args(argv)
    if args.command == "explain":
        explain(args.model, args.out, args.images, args.methods)
    elif args.command == "sizes":
        print(sizes_report(args.classes, args.sizes, args.draws))
    else:
        print(report(args.classes, args.untouched, args.family))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
