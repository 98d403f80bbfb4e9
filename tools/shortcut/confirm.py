"""A shortcut model explored as a user would: ``python -m tools.shortcut.confirm``.

Usage::

    python -m tools.shortcut.train --out sc/frame --tag frame --share 0.7 --steps 600 --two-item-share 0
    python -m tools.shortcut.confirm --model sc/frame --tag frame --out sc/frame-confirm [--repair]

An image folder of 300 one-item test scenes of the tag class, 20% of them carrying the
tag (``tools/shortcut/tag.py``), and 100 of each other class (untagged), every image
explained for its label by each method (:func:`captum_gmar.explain_dataset`), then
:func:`captum_gmar.explore` with the model (the causal and transplant checks). Per
method, for the tag class: the cluster that best matches the tagged images (F1), its rank
and whether it is flagged, its transplant rise and control; and how many of the other
classes' groups have a flagged cluster. With ``--repair``, the model is then repaired of the
shortcut's cluster as found (flagged, or first-ranked and isolating it; AttnLRP's, else
GAE's, else the first method's; else the features' cluster, flagged with F1 at least 0.8,
at its layer) with ``captum-gmar repair`` (``--how
auto``), on a folder of 1,000 training-split scenes (100 a class, the tag on 70% of the tag
class's, as in training): ``OUT/repaired``, by ``--how`` (``auto`` by default). Writes ``confirm.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from captum_gmar import explain_dataset, explore, load_maps
from captum_gmar.cli import main as cli_main
from captum_gmar.evaluation.data import open_dataset
from captum_gmar.imagedata import CLASS_NAMES
from captum_gmar.imagedata.folder import export_scenes
from captum_gmar.reference.inputs import load_image_processor
from tools.shortcut.benchmark import tagged_rows, tagged_test_scenes
from tools.shortcut.scoring import cluster_match
from tools.shortcut.tag import TAGS, plant_tag
from tools.shortcut.train import TAG_CLASS, class_scenes

__all__ = ["main"]

METHODS = ("gae", "attnlrp", "gmar-l1", "gmar-gate-positive", "rollout")


def write_images(root: Path, tag: str, tag_class: int, seed: int) -> None:
    """The image folder (its tagged images: :func:`tagged_names`)."""
    scenes, _ = tagged_test_scenes(300, 0.2, tag_class, seed, tag=TAGS[tag])
    export_scenes(scenes, root, CLASS_NAMES)
    others = [c for c in range(len(CLASS_NAMES)) if c != tag_class]
    for c in others:  # each in its own class folder: no clash with the tag class's files
        export_scenes(class_scenes(100, [c], 7000 + seed + c), root, CLASS_NAMES)


def tagged_names(tag_class: int, seed: int) -> set[str]:
    """The tagged images' names in the folder :func:`write_images` writes."""
    tagged = tagged_rows(300, 0.2, seed)
    folder = CLASS_NAMES[tag_class].replace("/", "-")
    return {f"{folder}/scene{i:05d}.png" for i in np.flatnonzero(tagged)}


def write_training_images(root: Path, tag: str, tag_class: int, seed: int, per_class: int = 100) -> None:
    """``per_class`` one-item training-split scenes of each class, the tag on 70% of the tag class's."""
    from captum_gmar.imagedata.scenes import Scenes, make_scenes

    rng = np.random.default_rng(9000 + seed)
    fields = ("images", "labels", "masks", "num_items")
    for c in range(len(CLASS_NAMES)):
        kept: list[Scenes] = []
        while sum(len(k) for k in kept) < per_class:
            drawn = make_scenes(200, "train", rng, num_items=1)
            kept.append(drawn[drawn.labels[:, 0] == c])
        scenes = Scenes(*(np.concatenate([getattr(k, f) for k in kept])[:per_class] for f in fields))
        tagged = rng.random(per_class) < (0.7 if c == tag_class else 0.0)
        export_scenes(Scenes(plant_tag(scenes.images, tagged, TAGS[tag]), scenes.labels, scenes.masks, scenes.num_items), root, CLASS_NAMES)


def run(model_folder: Path, tag: str, tag_class: int, out: Path, seed: int, methods: Sequence[str] = METHODS) -> dict[str, Any]:
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_folder).eval()
    images = out / "images"
    tagged = tagged_names(tag_class, seed)
    if not (out / "maps" / "maps.json").exists():  # else explained before: explored again (a changed suspicion)
        write_images(images, tag, tag_class, seed)
        processor = load_image_processor(model)
        data = open_dataset(images, processor, dict(enumerate(CLASS_NAMES)), 64)
        explain_dataset(model, data, list(methods), out / "maps", target="label", batch_size=50, progress=False)
    result = explore(out / "maps", out / "exp", images=images, model=model, seed=seed, progress=False)
    assert result is not None  # one process
    summary = json.loads((out / "exp" / "strategies.json").read_text())
    rows: dict[str, Any] = {}
    for method in methods:
        names = [record.image for record in load_maps(out / "maps", method) if record.target == tag_class]
        is_tagged = np.array([name in tagged for name in names])
        strategies = result.strategies.get((method, tag_class))
        if strategies is None:
            rows[method] = {"clustered": False}
            continue
        order = [c.label for c in strategies.ranking]
        matches = [cluster_match(strategies.labels, is_tagged, label, order) for label in order]
        best = max(matches, key=lambda m: m.f1)
        group = next(g for g in summary["groups"] if g["method"] == method and g["target"] == tag_class)
        entry = next(c for c in group["clusters"] if c["cluster"] == best.cluster)
        others = [g for g in summary["groups"] if g["method"] == method and g["target"] != tag_class and "clusters" in g]
        rows[method] = {
            "f1": best.f1,
            "rank": best.rank,
            "flagged": entry["flagged"],
            "suspicion": entry["suspicion"],
            "transplant_rise": entry["transplant_rise"],
            "transplant_control": entry["transplant_control"],
            "transplant_null": entry.get("transplant_null"),
            "flagged_by": entry.get("flagged_by"),
            "other_groups_flagged": sum(g["flagged"] > 0 for g in others),
            "other_groups": len(others),
        }
    return {
        "model": str(model_folder),
        "tag": tag,
        "tag_class": tag_class,
        "seed": seed,
        "methods": rows,
        "features": _features(result, summary, out, tag_class, tagged, methods[0]),
    }


def _features(result: Any, summary: dict[str, Any], out: Path, tag_class: int, tagged: set[str], method: str) -> dict[str, Any]:
    """The tag class's feature cluster that best matches the tagged images (F1, rank,
    flagged, no place, its direction's rise and the random directions'), and how many of the
    other classes have a flagged feature cluster."""
    found = result.features.get(tag_class)
    groups = summary["features"]["groups"]
    others = [g for g in groups if g["target"] != tag_class and g.get("clusters")]
    entry: dict[str, Any] = {
        "layer": summary["features"]["layer"],
        "other_classes_flagged": sum(g["flagged"] > 0 for g in others),
        "other_classes": len(others),
    }
    if found is None or isinstance(found, str):
        return {**entry, "clustered": False}
    names = [record.image for record in load_maps(out / "maps", method) if record.target == tag_class]
    is_tagged = np.array([name in tagged for name in names])
    order = [c.label for c in found.ranking]
    best = max((cluster_match(found.labels, is_tagged, label, order) for label in order), key=lambda m: m.f1)
    cluster = found.ranking[order.index(best.cluster)]
    check = cluster.check
    return {
        **entry,
        "f1": best.f1,
        "rank": best.rank,
        "flagged": cluster.flagged,
        "no_place": cluster.no_place,
        "matched": cluster.matched,
        "confirmed_by": list(cluster.confirmed_by),
        "rise": None if check is None else check.rise,
        "random": None if check is None or check.screened else check.random,
        "random_spread": None if check is None or check.screened else check.random_spread,
        "pixels": {p.proxy: {"rise": p.rise, "random": None if p.screened else p.random} for p in cluster.pixels},
    }


def table(results: dict[str, Any]) -> str:
    out = [
        f"{results['tag']} on class {results['tag_class']} ({results['model']}):",
        "",
        "| method | best cluster F1 | its rank | flagged (by) | suspicion | transplant rise | control | null | other classes' groups flagged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in results["methods"].items():
        if not r.get("f1") and r.get("clustered") is False:
            out.append(f"| {method} | not clustered | | | | | | | |")
            continue
        rise, control, null = r["transplant_rise"], r["transplant_control"], r.get("transplant_null")
        by = f" ({r['flagged_by']})" if r.get("flagged_by") else ""
        out.append(
            f"| {method} | {r['f1']:.2f} | {r['rank']} | {'yes' if r['flagged'] else 'no'}{by} | {r['suspicion']:.2f} | "
            f"{'–' if rise is None else f'{rise:+.2f}'} | {'–' if control is None else f'{control:+.2f}'} | "
            f"{'–' if null is None else f'{null:+.2f}'} | "
            f"{r['other_groups_flagged']} of {r['other_groups']} |"
        )
    f = results.get("features")
    if f is not None and f.get("clustered", True):
        out += [
            "",
            f"the model's features (layer {f['layer']}): best cluster F1 {f['f1']:.2f}, rank {f['rank']}, "
            f"{'flagged' if f['flagged'] else 'not flagged'} ({'no place' if f['no_place'] else 'placed by ' + str(f['matched'])}); "
            f"its direction's rise {f['rise']:+.3f}"
            + (
                " (random directions not drawn: below 0.2)"
                if f["random"] is None
                else f" against random {f['random']:+.3f} ± {f['random_spread']:.3f}"
            )
            + "".join(
                f"; its {proxy}'s rise {p['rise']:+.3f}" + ("" if p["random"] is None else f" against random {p['random']:+.3f}")
                for proxy, p in f.get("pixels", {}).items()
            )
            + f"; confirmed by {', '.join(f.get('confirmed_by', [])) or 'nothing'}; "
            f"{f['other_classes_flagged']} of {f['other_classes']} other classes flagged",
        ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.shortcut.confirm", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model tools.shortcut.train wrote")
    parser.add_argument("--tag", choices=sorted(TAGS), required=True)
    parser.add_argument("--tag-class", type=int, default=TAG_CLASS)
    parser.add_argument("--out", type=Path, required=True, help="a new folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repair", action="store_true", help="then repair the model of the shortcut's cluster as found")
    parser.add_argument("--explored", action="store_true", help="OUT holds the images, maps and exploration already: repair only")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"the methods explained (default {','.join(METHODS)})")
    parser.add_argument("--how", default="auto", help="repair's --how (classifier: for a frozen backbone and its probe)")
    parser.add_argument("--data-per-class", type=int, default=100, help="labelled training scenes of each class the repair is given")
    args = parser.parse_args(argv)
    if args.explored:
        results = json.loads((args.out / "confirm.json").read_text())
    else:
        results = run(args.model, args.tag, args.tag_class, args.out, args.seed, args.methods.split(","))
        (args.out / "confirm.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    if args.repair:
        # the shortcut's cluster as found: isolating it (F1 >= 0.8, the bar) and flagged,
        # or first-ranked and isolating it closely (F1 >= 0.9); a flagged cluster of other
        # images is not the shortcut's
        found = [
            m
            for m, r in results["methods"].items()
            if r.get("f1", 0) >= 0.8 and (r.get("flagged") or (r.get("rank") == 1 and r.get("f1", 0) >= 0.9))
        ]
        method = next((m for m in ("attnlrp", "gae", *results["methods"]) if m in found), None)
        features = results.get("features") or {}
        if method is not None:
            spec, extra = f"{method}:{args.tag_class}:{results['methods'][method]['rank']}", []
        elif features.get("flagged") and features.get("f1", 0) >= 0.8:  # a shortcut with no place, found in the features
            spec, extra = f"features:{args.tag_class}:{features['rank']}", ["--feature-layer", str(features["layer"])]
        else:
            print("no method flags the shortcut's cluster or ranks it first, nor do the features: nothing to repair")
            return 1
        write_training_images(args.out / "data", args.tag, args.tag_class, args.seed, args.data_per_class)
        command = ["repair", str(args.out / "maps"), "--model", str(args.model), "--cluster", spec, *extra]
        command += ["--images", str(args.out / "images"), "--data", str(args.out / "data"), "--out", str(args.out / "repaired")]
        command += ["--how", args.how]
        return cli_main(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
