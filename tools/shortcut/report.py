"""The benchmark's tables (markdown, printed) and figure: ``python -m tools.shortcut.report``.

Usage (after ``python -m tools.shortcut.benchmark`` wrote ``BENCH/seed*/results.json``)::

    python -m tools.shortcut.report --bench /tmp/shortcut/bench --models /tmp/shortcut/seed* \\
        --figure docs/results/shortcut.png

A cell ``m ± s`` is the mean and the standard deviation over the seeds; a rank cell lists
each seed's rank.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from captum_gmar.dataset_maps import load_maps, read_maps
from captum_gmar.visualization import show_map
from tools.shortcut.benchmark import tagged_test_scenes
from tools.shortcut.train import TAG_CLASS, shortcut_metrics

__all__ = ["deletion_table", "main", "model_table", "strategies_table"]

#: the methods' names in the tables, by job key
NAMES = {"gmar-l1": "GMAR (L1)", "rollout": "rollout", "gae": "GAE", "gradcam": "Grad-CAM", "attnlrp": "AttnLRP"}


def _spread(values: Sequence[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def model_table(metrics: Sequence[dict[str, Any]], control: dict[str, float] | None) -> str:
    """Per model (and the untouched reference as a control): how far it relies on the tag."""
    rows = [("reference (no tag in training)", control)] if control else []
    rows += [(f"seed {i}", m["shortcut"]) for i, m in enumerate(metrics)]
    out = [
        "| model | top-1 on the class, clean | with the tag | other classes predicted as the class, clean | with the tag | one-item top-1, all classes |",
        "|---|---|---|---|---|---|",
    ]
    accuracy = [None] * len(rows[:1] if control else []) + [m["accuracy"]["top1_one_item"] for m in metrics]
    for (name, s), acc in zip(rows, accuracy):
        out.append(
            f"| {name} | {s['top1_clean']:.3f} | {s['top1_tagged']:.3f} | {s['others_to_class_clean']:.3f} | "
            f"{s['others_to_class_tagged']:.3f} | {'' if acc is None else f'{acc:.3f}'} |"
        )
    return "\n".join(out)


def strategies_table(results: Sequence[dict[str, Any]]) -> str:
    """Per method: find_strategies' first-ranked cluster and best-matching cluster, and CoRelAy's."""
    out = [
        "| method | clusters | first-ranked: recall | precision | best match: rank | recall | precision "
        "| CoRelAy, eigengap k: k | best: recall | precision | rank by size | CoRelAy k = 2: recall | precision |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in results[0]["methods"]:
        r = [res["methods"][method] for res in results]
        eg, k2 = [x["corelay"]["eigengap"] for x in r], [x["corelay"]["k2"]["best"] for x in r]
        out.append(
            f"| {NAMES.get(method, method)} | {', '.join(str(x['n_clusters']) for x in r)} "
            f"| {_spread([x['first']['recall'] for x in r])} | {_spread([x['first']['precision'] for x in r])} "
            f"| {', '.join(str(x['best']['rank']) for x in r)} | {_spread([x['best']['recall'] for x in r])} "
            f"| {_spread([x['best']['precision'] for x in r])} "
            f"| {', '.join(str(x['k']) for x in eg)} | {_spread([x['best']['recall'] for x in eg])} "
            f"| {_spread([x['best']['precision'] for x in eg])} | {', '.join(str(x['best']['rank']) for x in eg)} "
            f"| {_spread([x['recall'] for x in k2])} | {_spread([x['precision'] for x in k2])} |"
        )
    return "\n".join(out)


def deletion_table(results: Sequence[dict[str, Any]]) -> str:
    """Per method: the class score of the best-matching cluster's images as they are, with
    the cluster's top patches masked and with random patches masked; the same for the
    other clusters together (weighted by size)."""
    out = [
        "| method | tag cluster: score | top patches masked | random patches masked | other clusters: score | top masked | random masked |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in results[0]["methods"]:
        tag: dict[str, list[float]] = {"score": [], "top": [], "random": []}
        rest: dict[str, list[float]] = {"score": [], "top": [], "random": []}
        for res in results:
            r = res["methods"][method]
            best = r["best"]["cluster"]
            others = [c for c in r["clusters"] if c["label"] != best]
            for key in tag:
                tag[key] += [c["deletion"][key] for c in r["clusters"] if c["label"] == best]
                rest[key].append(sum(c["deletion"][key] * c["size"] for c in others) / sum(c["size"] for c in others))
        out.append(f"| {NAMES.get(method, method)} | " + " | ".join(_spread(v) for v in (*tag.values(), *rest.values())) + " |")
    return "\n".join(out)


def figure(bench: Path, results: dict[str, Any], path: Path) -> None:
    """One tagged image of the first seed (the one most methods put in their tag cluster),
    each method's map of it, and each method's tag-cluster mean map, into ``path``."""
    tagged = np.load(bench / "tagged.npy")
    scenes, _ = tagged_test_scenes(results["images"], results["tagged"] / results["images"], TAG_CLASS, results["seed"])
    methods = list(results["methods"])
    maps, labels = {}, {}
    for method in methods:
        records = load_maps(bench / "maps", method)
        maps[method] = read_maps(records)[np.argsort([r.item for r in records])]
        labels[method] = np.array(results["methods"][method]["labels"])
    votes = sum((labels[m] == results["methods"][m]["best"]["cluster"]).astype(int) for m in methods) * tagged
    shown = int(np.argmax(votes))
    fig, axes = plt.subplots(2, len(methods) + 1, figsize=(2.3 * (len(methods) + 1), 4.9))
    axes[0, 0].imshow(scenes.images[shown])
    axes[0, 0].set_title("tagged test image", fontsize=8)
    axes[1, 0].axis("off")
    axes[1, 0].text(
        0,
        0.5,
        "row 1: each method's map\nof the image\n\nrow 2: the mean map of\neach method's cluster\nthat best matches the\ntagged images",
        fontsize=8,
    )
    size = scenes.images.shape[1]
    for i, method in enumerate(methods, start=1):
        r = results["methods"][method]
        up = size // maps[method].shape[1]
        show_map(
            axes[0, i], maps[method][shown].repeat_interleave(up, 0).repeat_interleave(up, 1), scenes.images[shown] / 255.0, NAMES[method]
        )
        mean = torch.from_numpy(np.array(r["mean_maps"][r["best"]["cluster"]], dtype=np.float32))
        b = r["best"]
        show_map(axes[1, i], mean, None, f"rank {b['rank']} of {r['n_clusters']}: recall {b['recall']:.2f}, precision {b['precision']:.2f}")
    axes[0, 0].set_xticks([])
    axes[0, 0].set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m tools.shortcut.report", description=__doc__.split("\n")[0])
    p.add_argument("--bench", type=Path, required=True, help="the folder holding the benchmark's seed* folders")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="the trained models, in seed order")
    p.add_argument("--figure", type=Path, default=None, help="write the figure (first seed) here")
    p.add_argument("--control", action="store_true", help="also measure the untouched reference model's use of the tag")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folders = sorted(args.bench.glob("seed*"))
    results = [json.loads((f / "results.json").read_text()) for f in folders]
    control = None
    if args.control:
        from captum_gmar.reference import load_reference_model

        control = shortcut_metrics(load_reference_model("vit-tiny"), TAG_CLASS, 500)
    metrics = [json.loads((m / "metrics.json").read_text()) for m in args.models]
    print(model_table(metrics, control), strategies_table(results), deletion_table(results), sep="\n\n")
    if args.figure is not None:
        figure(folders[0], results[0], args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
