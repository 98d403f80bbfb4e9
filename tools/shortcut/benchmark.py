"""Does a method's strategies find the planted shortcut? ``python -m tools.shortcut.benchmark``.

Usage (after ``python -m tools.shortcut.train`` wrote one model per seed)::

    python -m tools.shortcut.benchmark --model /tmp/shortcut/magenta/seed0 --seed 0 --out /tmp/shortcut/bench/magenta/seed0
    # the untouched model on the same images: name the tag and its class
    python -m tools.shortcut.benchmark --model captum_gmar/reference/model --tag magenta --tag-class 6 --seed 0 --out ...

For one tagged model (its tag and class read from its ``metrics.json``): ``--images``
one-item test-split scenes of the tag class, a share ``--share`` of them (an exact count,
drawn by ``--seed``) with the tag pasted, are explained for the tag class by every method
with the package's data-set job (:func:`captum_gmar.dataset_maps.explain_dataset`: a
maps folder, ``OUT/maps``). Then, per method, on those maps:

- :func:`captum_gmar.find_strategies` with the images' margins as ``confidence`` (as
  ``explore`` runs it): the first-ranked cluster's recall, precision and whether it is
  flagged, how many clusters are flagged, and the best-matching cluster (highest F1)
  with its rank;
- the baseline, CoRelAy's pipeline (:mod:`tools.shortcut.corelay_baseline`) with ``k``
  chosen by the same eigengap rule on its eigenvalues and with its default ``k = 2``: the
  best-matching cluster, and its rank when the clusters are shown smallest first;
- the share of each map's positive mass on the tag's patch, tagged and clean images apart;
- the causal check of every cluster of ``find_strategies``, as ``explore`` runs it with a
  model (:func:`captum_gmar.exploration.causal.causal_check`): its region masked on its
  images, against as many random patches, and on the class's other images; the score is
  the tag class's sigmoid.

And once per model, the slices of the model's embeddings of the same images
(:mod:`tools.shortcut.slices`): the best-matching slice and its rank, most confident first.

Writes ``OUT/results.json`` (and ``OUT/tagged.npy``, which images carry the tag) and
prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import ViTForImageClassification

from captum_gmar import find_strategies
from captum_gmar.dataset_maps import explain_dataset, load_maps, read_maps
from captum_gmar.evaluation.data import SceneTasks
from captum_gmar.exploration.causal import causal_check
from captum_gmar.exploration.strategies import clusters_by_eigengap
from captum_gmar.imagedata import Scenes, to_pixel_values
from tools.shortcut.corelay_baseline import corelay_clusters
from tools.shortcut.scoring import best_match, cluster_match
from tools.shortcut.slices import embed, embedding_slices
from tools.shortcut.tag import MAGENTA, TAGS, Tag, plant_tag
from tools.shortcut.train import TAG_CLASS, class_scenes

__all__ = ["METHODS", "evaluate_method", "main", "tagged_rows", "tagged_test_scenes"]

#: the methods compared, as keys of the data-set job
METHODS = ("gmar-l1", "gmar-gate", "gmar-gate-positive", "rollout", "gae", "gradcam", "attnlrp")
#: test scenes of seed ``s`` come from a generator seeded ``TEST_SEED + s``
TEST_SEED = 41000


def tagged_rows(n: int, share: float, seed: int) -> np.ndarray:
    """``bool (n,)``: which of :func:`tagged_test_scenes`' ``n`` scenes carry the tag."""
    tagged = np.zeros(n, dtype=bool)
    tagged[np.random.default_rng(TEST_SEED + seed).permutation(n)[: round(share * n)]] = True
    return tagged


def tagged_test_scenes(
    n: int, share: float, tag_class: int, seed: int, data_dir: Path | None = None, tag: Tag = MAGENTA
) -> tuple[Scenes, np.ndarray]:
    """``n`` one-item test scenes of ``tag_class``, exactly ``round(share * n)`` of them
    (drawn by ``seed``) with ``tag`` pasted: the scenes and ``tagged`` ``bool (n,)``."""
    scenes = class_scenes(n, [tag_class], TEST_SEED + seed, data_dir)
    tagged = tagged_rows(n, share, seed)
    return Scenes(plant_tag(scenes.images, tagged, tag), scenes.labels, scenes.masks, scenes.num_items), tagged


def evaluate_method(
    model: torch.nn.Module,
    maps: np.ndarray,
    margins: np.ndarray,
    images: np.ndarray,
    tagged: np.ndarray,
    tag: Tag,
    tag_class: int,
    seed: int,
) -> dict[str, Any]:
    """One method's figures on its ``(N, h, w)`` maps of the ``N`` ``images``: see the module."""
    found = find_strategies(maps, seed=seed, confidence=margins)
    order = [c.label for c in found.ranking]
    patch_size = images.shape[1] // maps.shape[1]
    pixel_values = to_pixel_values(images)

    def scores(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model(pixel_values=x).logits[:, tag_class])

    clusters = []
    for c in found.ranking:
        members = found.labels == c.label
        others = (found.labels != c.label) & (found.labels >= 0)
        check = asdict(
            causal_check(scores, pixel_values[members], pixel_values[others], c.region, (maps.shape[1], maps.shape[2]), seed=seed)
        )
        clusters.append(
            {
                "label": c.label,
                "size": c.size,
                "tagged": int(tagged[members].sum()),
                "suspicion": c.suspicion,
                "flagged": c.flagged,
                "confidence": c.confidence,
                "causal": check,
            }
        )
    # CoRelAy's normalisation divides by each map's sum: it sees the maps that are not flat
    kept = ~np.isin(np.arange(len(maps)), found.flat)
    eigenvalues, by_k = corelay_clusters(np.clip(maps[kept], 0, None), range(2, 11))
    corelay = {}
    for name, k in (("eigengap", clusters_by_eigengap(eigenvalues)), ("k2", 2)):
        labels = np.full(len(maps), -1)
        labels[kept] = by_k[k]
        smallest_first = [int(c) for c in np.argsort(np.bincount(by_k[k], minlength=k), kind="stable")]
        corelay[name] = {"k": k, "best": asdict(best_match(labels, tagged, smallest_first))}
    mass = np.clip(maps, 0, None).reshape(len(maps), -1)
    row, column = tag.patch(patch_size)
    on_tag = mass[:, row * maps.shape[2] + column] / np.maximum(mass.sum(1), 1e-30)
    return {
        "tag_mass": {"tagged": float(on_tag[tagged].mean()), "clean": float(on_tag[~tagged].mean())},
        "n_clusters": found.n_clusters,
        "clusters_found": found.clusters_found,
        "flagged": len(found.flagged),
        "labels": found.labels.tolist(),
        "mean_maps": found.mean_maps.round(5).tolist(),
        "flat": len(found.flat),
        "first": {**asdict(cluster_match(found.labels, tagged, order[0], order)), "flagged": found.ranking[0].flagged},
        "best": asdict(best_match(found.labels, tagged, order)),
        "clusters": clusters,
        "corelay": corelay,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.shortcut.benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a folder python -m tools.shortcut.train wrote")
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test scenes and of the clustering")
    p.add_argument("--tag", choices=sorted(TAGS), default=None, help="the tag (default: the model's metrics.json's, else magenta)")
    p.add_argument("--tag-class", type=int, default=None, help="its class (default: the model's metrics.json's, else Shirt)")
    p.add_argument("--images", type=int, default=400, help="test scenes of the tag class")
    p.add_argument("--share", type=float, default=0.15, help="share of them with the tag")
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST directory")
    return p


def _tag(args: argparse.Namespace) -> tuple[str, int]:
    """The tag's name and class: as given, else the model's ``metrics.json``'s, else magenta on Shirt."""
    metrics_file = args.model / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return args.tag or metrics.get("tag", "magenta"), args.tag_class if args.tag_class is not None else metrics.get(
        "tag_class_index", TAG_CLASS
    )


def slices_baseline(model: ViTForImageClassification, images: np.ndarray, tagged: np.ndarray, tag_class: int, seed: int) -> dict[str, Any]:
    """The best-matching slice of the model's embeddings, ranked most confident first."""
    with torch.no_grad():
        embeddings, probabilities = embed(model, images, tag_class)
    labels, order, k = embedding_slices(embeddings, probabilities, seed)
    return {"k": k, "best": asdict(best_match(labels, tagged, order)), "first": asdict(cluster_match(labels, tagged, order[0], order))}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"python -m tools.shortcut.benchmark: error: {args.out} is not empty: name a new folder")
    torch.set_num_threads(args.threads)
    model = ViTForImageClassification.from_pretrained(args.model, local_files_only=True).eval()
    tag_name, tag_class = _tag(args)
    tag = TAGS[tag_name]
    scenes, tagged = tagged_test_scenes(args.images, args.share, tag_class, args.seed, args.data_dir, tag)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "tagged.npy", tagged)
    start = time.perf_counter()
    explain_dataset(model, SceneTasks(scenes), args.methods, args.out / "maps", target=tag_class, batch_size=50, progress=False)
    results: dict[str, Any] = {
        "command": " ".join(["python -m tools.shortcut.benchmark", *(argv if argv is not None else sys.argv[1:])]),
        "model": str(args.model),
        "seed": args.seed,
        "tag": tag_name,
        "tag_class": tag_class,
        "tag_shape": asdict(tag),
        "images": args.images,
        "tagged": int(tagged.sum()),
        "explain_seconds": round(time.perf_counter() - start, 1),
        "slices": slices_baseline(model, scenes.images, tagged, tag_class, args.seed),
        "methods": {},
    }
    for method in args.methods:
        records = load_maps(args.out / "maps", method)
        order = np.argsort([r.item for r in records])  # back to the scenes' order
        maps = read_maps(records).numpy()[order]
        margins = np.array([r.margin for r in records])[order]
        with torch.no_grad():
            results["methods"][method] = evaluate_method(model, maps, margins, scenes.images, tagged, tag, tag_class, args.seed)
        r = results["methods"][method]
        print(
            f"{method}: first cluster recall {r['first']['recall']:.2f} precision {r['first']['precision']:.2f}"
            f"{' (flagged)' if r['first']['flagged'] else ''}; best rank {r['best']['rank']} of {r['n_clusters']} "
            f"(recall {r['best']['recall']:.2f}, precision {r['best']['precision']:.2f}); {r['flagged']} flagged"
        )
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
