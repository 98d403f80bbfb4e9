"""The benchmark's tables (markdown, printed) and figure: ``python -m tools.shortcut.report``.

Usage (after ``python -m tools.shortcut.benchmark`` wrote ``BENCH/seed*/results.json``)::

    python -m tools.shortcut.report --bench /tmp/shortcut/bench --models /tmp/shortcut/seed* \\
        --figure docs/results/shortcut.png

A cell ``m ± s`` is the mean and the standard deviation over the seeds (one seed: its
value); a rank cell lists each seed's rank.
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
from captum_gmar.reference import evaluate_accuracy, load_reference_model
from captum_gmar.visualization import show_map
from tools.shortcut.benchmark import tagged_test_scenes
from tools.shortcut.tag import TAGS
from tools.shortcut.train import shortcut_metrics

__all__ = ["causal_table", "corelay_table", "main", "mass_table", "model_table", "slices_table", "strategies_table"]

#: the methods' names in the tables, by job key
NAMES = {
    "gmar-l1": "GMAR (L1)",
    "gmar-gate": "GMAR (gate)",
    "gmar-gate-positive": "GMAR (gate, positive)",
    "rollout": "rollout",
    "gae": "GAE",
    "gradcam": "Grad-CAM",
    "attnlrp": "AttnLRP",
}


def _spread(values: Sequence[float], digits: int = 2) -> str:
    """The mean ± the standard deviation; one value alone."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def model_table(metrics: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Per model (name, its ``metrics.json``): how far it relies on the tag."""
    out = [
        "| model | top-1 on the class, clean | with the tag | other classes predicted as the class, clean | with the tag | one-item top-1, all classes |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in metrics:
        s = m["shortcut"]
        out.append(
            f"| {name} | {s['top1_clean']:.3f} | {s['top1_tagged']:.3f} | {s['others_to_class_clean']:.3f} | "
            f"{s['others_to_class_tagged']:.3f} | {m['accuracy']['top1_one_item']:.3f} |"
        )
    return "\n".join(out)


def strategies_table(results: Sequence[dict[str, Any]]) -> str:
    """Per method: find_strategies' first-ranked and best-matching clusters, and the flag."""
    out = [
        "| method | clusters | first-ranked: recall | precision | flagged | best match: rank | recall | precision | flagged clusters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in results[0]["methods"]:
        r = [res["methods"][method] for res in results]
        out.append(
            f"| {NAMES.get(method, method)} | {', '.join(str(x['n_clusters']) for x in r)} "
            f"| {_spread([x['first']['recall'] for x in r])} | {_spread([x['first']['precision'] for x in r])} "
            f"| {sum(x['first']['flagged'] for x in r)} of {len(r)} "
            f"| {', '.join(str(x['best']['rank']) for x in r)} | {_spread([x['best']['recall'] for x in r])} "
            f"| {_spread([x['best']['precision'] for x in r])} | {', '.join(str(x['flagged']) for x in r)} |"
        )
    return "\n".join(out)


def slices_table(results: Sequence[dict[str, Any]]) -> str:
    """The slices of the model's embeddings: the best-matching slice, and the first one
    (most confident)."""
    r = [res["slices"] for res in results]
    return "\n".join(
        [
            "| slices (by BIC) | best match: rank | recall | precision | first (most confident): recall | precision |",
            "|---|---|---|---|---|---|",
            f"| {', '.join(str(x['k']) for x in r)} | {', '.join(str(x['best']['rank']) for x in r)} | {_spread([x['best']['recall'] for x in r])} "
            f"| {_spread([x['best']['precision'] for x in r])} | {_spread([x['first']['recall'] for x in r])} | {_spread([x['first']['precision'] for x in r])} |",
        ]
    )


def mass_table(results: Sequence[dict[str, Any]]) -> str:
    """Per method: the share of a map's positive mass on the tag's patch, tagged and clean images apart."""
    out = ["| method | mass on the tag's patch: tagged images | clean images |", "|---|---|---|"]
    for method in results[0]["methods"]:
        r = [res["methods"][method]["tag_mass"] for res in results]
        out.append(f"| {NAMES.get(method, method)} | {_spread([x['tagged'] for x in r], 3)} | {_spread([x['clean'] for x in r], 3)} |")
    return "\n".join(out)


def corelay_table(results: Sequence[dict[str, Any]]) -> str:
    """Per method: CoRelAy's best-matching cluster with k by eigengap, and with k = 2."""
    out = [
        "| method | eigengap k | best match: recall | precision | rank by size (smallest first) | k = 2: recall | precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in results[0]["methods"]:
        r = [res["methods"][method]["corelay"] for res in results]
        eg, k2 = [x["eigengap"] for x in r], [x["k2"]["best"] for x in r]
        out.append(
            f"| {NAMES.get(method, method)} | {', '.join(str(x['k']) for x in eg)} | {_spread([x['best']['recall'] for x in eg])} "
            f"| {_spread([x['best']['precision'] for x in eg])} | {', '.join(str(x['best']['rank']) for x in eg)} "
            f"| {_spread([x['recall'] for x in k2])} | {_spread([x['precision'] for x in k2])} |"
        )
    return "\n".join(out)


def causal_table(results: Sequence[dict[str, Any]]) -> str:
    """Per method: the causal check of the best-matching cluster (its images as they are,
    its region masked, random patches masked; the class's other images as they are and
    with the same region masked), and of the other clusters, weighted by size."""
    out = [
        "| method | best-matching cluster: score | region masked | random masked | the rest: score | region masked "
        "| other clusters: score | region masked | random masked |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in results[0]["methods"]:
        best: dict[str, list[float]] = {"score": [], "region": [], "random": [], "others_score": [], "others_region": []}
        rest: dict[str, list[float]] = {"score": [], "region": [], "random": []}
        for res in results:
            r = res["methods"][method]
            label = r["best"]["cluster"]
            for c in r["clusters"]:
                if c["label"] == label:
                    for key in best:
                        best[key].append(c["causal"][key])
            others = [c for c in r["clusters"] if c["label"] != label]
            for key in rest:
                rest[key].append(sum(c["causal"][key] * c["size"] for c in others) / sum(c["size"] for c in others))
        out.append(f"| {NAMES.get(method, method)} | " + " | ".join(_spread(v) for v in (*best.values(), *rest.values())) + " |")
    return "\n".join(out)


def figure(bench: Path, results: dict[str, Any], path: Path) -> None:
    """One tagged image of the first seed (the one most methods put in their tag cluster),
    each method's map of it, and each method's tag-cluster mean map, into ``path``."""
    tagged = np.load(bench / "tagged.npy")
    scenes, _ = tagged_test_scenes(
        results["images"], results["tagged"] / results["images"], results["tag_class"], results["seed"], tag=TAGS[results["tag"]]
    )
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
        show_map(axes[1, i], mean, None, f"rank {b['rank']} of {r['n_clusters']}\nrecall {b['recall']:.2f}, precision {b['precision']:.2f}")
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
    p.add_argument("--models", type=Path, nargs="*", default=[], help="the trained models, for their table (named by their folders)")
    p.add_argument("--figure", type=Path, default=None, help="write the figure (first seed) here")
    p.add_argument("--control", action="store_true", help="also measure the untouched reference model's use of the tag")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folders = sorted(args.bench.glob("seed*"))
    results = [json.loads((f / "results.json").read_text()) for f in folders]
    metrics = [(m.name, json.loads((m / "metrics.json").read_text())) for m in args.models]
    if args.control:
        reference = load_reference_model("vit-tiny")
        n = metrics[0][1]["shortcut"]["n"] if metrics else 500
        tag, tag_class = results[0]["tag"], results[0]["tag_class"]
        control = {"shortcut": shortcut_metrics(reference, tag_class, n, tag=TAGS[tag]), "accuracy": evaluate_accuracy(reference, n=n)}
        metrics.insert(0, ("reference (no tag in training)", control))
    tables = [model_table(metrics)] if metrics else []
    print(
        *tables,
        strategies_table(results),
        slices_table(results),
        mass_table(results),
        corelay_table(results),
        causal_table(results),
        sep="\n\n",
    )
    if args.figure is not None:
        figure(folders[0], results[0], args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
