"""Which heads carry the planted shortcut, and does the model lose it without them?
``python -m tools.shortcut.heads``.

Usage (after ``python -m tools.shortcut.train`` wrote the models)::

    python -m tools.shortcut.heads --models shortcut/magenta/seed* shortcut/teal/seed* --out heads.json
    python -m tools.shortcut.heads --report heads.json

Per model (its tag and class from its ``metrics.json``):

1. :func:`captum_gmar.locate_heads` on the class's test images with the tag pasted (up to
   ``--images``) against the same class's clean images: every head score's contrast and
   the exact ablation effect; each score's Spearman correlation with the zero-ablation
   effect on the logit, and whether its top head is the ablation's.
2. The truth of "carries the shortcut": the shortcut's effect, the mean probability
   (sigmoid) of the class on other classes' items with the tag pasted less without it
   (``--others`` items); and how much of it is left once the top 1, 2 or 3 heads of a
   ranking are removed (:func:`captum_gmar.without_heads`), for the rankings: the
   ablation (zero and mean removal), GMAR's L1 score, the attention-gradient and gate
   scores, a Locate-Then-Correct-style contrast (each head's direct contribution to the
   class's logit through the residual stream, tagged less clean images; Yeo et al.
   2025, after Gandelsman et al. 2024), and random heads (the mean of 5 draws).
3. With the first ablation head removed: clean accuracy (top-1 on one-item test scenes
   of every class), worst-group accuracy over (the class, other classes) x (clean,
   tagged), and the share of GAE's and GMAR's (gate, positive) maps of the tagged images
   on the tag's patch, before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from transformers import ViTForImageClassification

from captum_gmar import GenericAttentionExplainability, GMARAttribution, locate_heads, without_heads
from captum_gmar.heads.locate import HEAD_SCORES
from captum_gmar.heads.remove import RemovalMode
from captum_gmar.imagedata import CLASS_NAMES, to_pixel_values
from captum_gmar.vit.model import VisionTransformer
from tools.shortcut.benchmark import tagged_test_scenes
from tools.shortcut.tag import TAGS, plant_tag
from tools.shortcut.train import class_scenes, logits, shortcut_effect

__all__ = ["direct_effects", "evaluate_model", "main"]

#: the removal sizes reported
SIZES = (1, 2, 3)
#: the rankings whose top heads are removed, beside the ablation's
RANKINGS = ("gmar-l1", "gmar-attention", "gmar-gate", "gmar-gate-positive", "ltc", "random")


def direct_effects(model: ViTForImageClassification, pixel_values: Tensor, target: int) -> Tensor:
    """``(N, L, H)``: each head's direct contribution to class ``target``'s logit, through
    the residual stream into the class token: its output at the class token through the
    output projection, centred and divided as the final LayerNorm divides that image's
    class token, times the LayerNorm's gain and the class's classifier row."""
    vit = VisionTransformer(model)
    outputs: list[Tensor] = []
    hooks = [block.output.register_forward_pre_hook(lambda module, args: outputs.append(args[0][:, 0].detach())) for block in vit.blocks]
    final: list[Tensor] = []
    hooks.append(model.vit.layernorm.register_forward_pre_hook(lambda module, args: final.append(args[0][:, 0].detach())))
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values)
    finally:
        for hook in hooks:
            hook.remove()
    norm, classifier = model.vit.layernorm, model.classifier
    assert isinstance(norm, torch.nn.LayerNorm) and isinstance(classifier, torch.nn.Linear)  # ViT's
    scale = (final[0].var(dim=-1, unbiased=False, keepdim=True) + norm.eps).sqrt()  # (N, 1)
    row = classifier.weight[target] * norm.weight  # (D,)
    effects = []
    for block, context in zip(vit.blocks, outputs):
        projection = block.output
        assert isinstance(projection, torch.nn.Linear)  # ViT's output projection
        size = projection.in_features // block.num_heads
        per_head = []
        for head in range(block.num_heads):
            columns = slice(head * size, (head + 1) * size)
            contribution = context[:, columns] @ projection.weight[:, columns].T  # (N, D), into the residual stream
            per_head.append(((contribution - contribution.mean(-1, keepdim=True)) / scale) @ row)
        effects.append(torch.stack(per_head, dim=1))
    return torch.stack(effects, dim=1).detach()


def _accuracies(model: torch.nn.Module, groups: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    return {name: float((logits(model, images).argmax(1).numpy() == labels).mean()) for name, (images, labels) in groups.items()}


def _tag_mass(model: torch.nn.Module, pixel_values: Tensor, target: int, patch: tuple[int, int]) -> dict[str, float]:
    """The share of GAE's and GMAR's (gate, positive) maps of ``pixel_values`` on the tag's patch."""
    out = {}
    for name, method in (
        ("gae", GenericAttentionExplainability(model)),
        ("gmar-gate-positive", GMARAttribution(model, head_gradient="gate", gate="positive")),
    ):
        attributions = method.attribute(pixel_values, target=target)
        assert isinstance(attributions, Tensor)  # one input, no head weights asked for
        maps = attributions.sum(1).clamp_min(0)  # (N, H, W)
        size = pixel_values.shape[-1] // 8
        cell = maps[:, patch[0] * size : (patch[0] + 1) * size, patch[1] * size : (patch[1] + 1) * size].sum((1, 2))
        out[name] = float((cell / maps.sum((1, 2)).clamp_min(1e-12)).mean())
    return out


def evaluate_model(folder: Path, images: int, others_count: int, seed: int) -> dict[str, Any]:
    """One model's figures: see the module."""
    metrics = json.loads((folder / "metrics.json").read_text())
    tag, target = TAGS[metrics.get("tag", "magenta")], metrics.get("tag_class_index", 6)
    model = ViTForImageClassification.from_pretrained(folder, local_files_only=True).eval()
    scenes, tagged = tagged_test_scenes(2 * images, 0.5, target, seed, tag=tag)
    x = to_pixel_values(scenes.images)
    location = locate_heads(model, x[tagged], x[~tagged], target)
    layers, heads = location.masking_effect.shape
    others = class_scenes(others_count, [c for c in range(len(CLASS_NAMES)) if c != target], seed + 1)
    own = class_scenes(others_count, [target], seed + 2)
    every = class_scenes(others_count, list(range(len(CLASS_NAMES))), seed + 3)
    groups = {
        "class, clean": (own.images, own.labels[:, 0]),
        "class, tagged": (plant_tag(own.images, np.ones(len(own), dtype=bool), tag), own.labels[:, 0]),
        "others, clean": (others.images, others.labels[:, 0]),
        "others, tagged": (plant_tag(others.images, np.ones(len(others), dtype=bool), tag), others.labels[:, 0]),
    }
    ltc = direct_effects(model, x[tagged], target).mean(0) - direct_effects(model, x[~tagged], target).mean(0)
    orders: dict[str, list[tuple[int, int]]] = {
        "ablation": list(location.ranking),
        **{name: _by(location.scores[name]) for name in HEAD_SCORES if name in RANKINGS},
        "ltc": _by(ltc),
    }
    base = shortcut_effect(model, others.images, tag, target)
    removal: dict[str, dict[str, float]] = {}
    for name, ranking in orders.items():
        modes: tuple[RemovalMode, ...] = ("zero", "mean") if name == "ablation" else ("zero",)
        for mode in modes:
            key = name if mode == "zero" else f"{name} (mean)"
            removal[key] = {}
            for k in SIZES:
                corrected = without_heads(model, ranking[:k], mode=mode, reference_images=x[~tagged])
                removal[key][str(k)] = 1 - shortcut_effect(corrected, others.images, tag, target) / base
    rng = np.random.default_rng(seed)
    removal["random"] = {
        str(k): float(
            np.mean(
                [
                    1
                    - shortcut_effect(
                        without_heads(model, [divmod(int(i), heads) for i in rng.choice(layers * heads, k, replace=False)]),
                        others.images,
                        tag,
                        target,
                    )
                    / base
                    for _ in range(5)
                ]
            )
        )
        for k in SIZES
    }
    first = list(location.ranking[:1])
    both: tuple[RemovalMode, ...] = ("zero", "mean")
    corrected = {mode: without_heads(model, first, mode=mode, reference_images=x[~tagged]) for mode in both}
    clean_labels = every.labels[:, 0]
    accuracy = {"model": float((logits(model, every.images).argmax(1).numpy() == clean_labels).mean())}
    accuracy.update(
        {f"without, {mode}": float((logits(m, every.images).argmax(1).numpy() == clean_labels).mean()) for mode, m in corrected.items()}
    )
    group_accuracy = {"model": _accuracies(model, groups), **{f"without, {mode}": _accuracies(m, groups) for mode, m in corrected.items()}}
    patch = tag.patch(8)
    truth = location.masking_effect.flatten()
    return {
        "model": str(folder),
        "tag": metrics.get("tag", "magenta"),
        "class": target,
        "heads": [layers, heads],
        "tagged_images": int(tagged.sum()),
        "clean_images": int((~tagged).sum()),
        "ablation_top": list(location.ranking[0]),
        "ablation_effect": location.masking_effect.tolist(),
        "top_share": float(truth.max() / truth.clamp_min(0).sum()),
        "agreement": location.agreement,
        "score_top": {name: list(_by(values)[0]) for name, values in {**location.scores, "ltc": ltc}.items()},
        "ltc_spearman": _spearman(ltc.flatten(), truth),
        "shortcut_effect": base,
        "removed_share": removal,
        "clean_accuracy": accuracy,
        "group_accuracy": group_accuracy,
        "tag_mass": {
            "model": _tag_mass(model, x[tagged], target, patch),
            **{f"without, {m}": _tag_mass(c, x[tagged], target, patch) for m, c in corrected.items()},
        },
    }


def _by(values: Tensor) -> list[tuple[int, int]]:
    heads = values.shape[1]
    return [divmod(int(i), heads) for i in torch.sort(values.flatten(), descending=True, stable=True).indices]


def _spearman(a: Tensor, b: Tensor) -> float:
    from captum_gmar.core.correlation import average_ranks, pearson

    return float(pearson(average_ranks(a.double()), average_ranks(b.double()), undefined=0.0))


def _spread(values: Sequence[float], digits: int = 2) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if len(values) > 1 else f"{values[0]:.{digits}f}"


def report(results: list[dict[str, Any]]) -> str:
    """The markdown tables, one set per tag."""
    parts = []
    for tag in sorted({r["tag"] for r in results}):
        rows = [r for r in results if r["tag"] == tag]
        parts.append(f"**{tag}** ({len(rows)} models, class {CLASS_NAMES[rows[0]['class']]})")
        parts.append(
            "| model | top head (ablation) | its share of the positive ablation effect | shortcut effect | "
            + " | ".join(f"top head: {name}" for name in (*HEAD_SCORES, "ltc"))
            + " |\n|---|---|---|---|"
            + "---|" * (len(HEAD_SCORES) + 1)
        )
        for r in rows:
            top = tuple(r["ablation_top"])
            parts[-1] += (
                f"\n| {Path(r['model']).name} | {top} | {r['top_share']:.2f} | {r['shortcut_effect']:.2f} | "
                + " | ".join(
                    ("**" if tuple(r["score_top"][n]) == top else "")
                    + str(tuple(r["score_top"][n]))
                    + ("**" if tuple(r["score_top"][n]) == top else "")
                    for n in (*HEAD_SCORES, "ltc")
                )
                + " |"
            )
        spearman = {name: [r["agreement"][name]["spearman"] for r in rows] for name in HEAD_SCORES}
        spearman["ltc"] = [r["ltc_spearman"] for r in rows]
        parts.append(
            "| ranking | Spearman with the ablation | shortcut removed: top 1 head | top 2 | top 3 |\n|---|---|---|---|---|\n"
            + "\n".join(
                f"| {name} | {_spread(spearman[name]) if name in spearman else '–'} | "
                + " | ".join(_spread([r["removed_share"][name][str(k)] for r in rows]) for k in SIZES)
                + " |"
                for name in rows[0]["removed_share"]
            )
        )
        groups = list(rows[0]["group_accuracy"]["model"])
        parts.append(
            "| model | clean top-1, every class | "
            + " | ".join(groups)
            + " | worst group | tag mass, GAE | tag mass, GMAR (gate, positive) |\n|---|---|"
            + "---|" * len(groups)
            + "---|---|---|\n"
            + "\n".join(
                f"| {variant} | {_spread([r['clean_accuracy'][variant] for r in rows], 3)} | "
                + " | ".join(_spread([r["group_accuracy"][variant][g] for r in rows]) for g in groups)
                + f" | {_spread([min(r['group_accuracy'][variant].values()) for r in rows])}"
                + f" | {_spread([r['tag_mass'][variant]['gae'] for r in rows], 3)} | {_spread([r['tag_mass'][variant]['gmar-gate-positive'] for r in rows], 3)} |"
                for variant in rows[0]["clean_accuracy"]
            )
        )
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m tools.shortcut.heads", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, nargs="*", default=[], help="folders python -m tools.shortcut.train wrote")
    p.add_argument("--out", type=Path, help="write the results (JSON) here")
    p.add_argument("--report", type=Path, help="print the tables of a results file")
    p.add_argument("--images", type=int, default=150, help="tagged images of the class, and as many clean ones")
    p.add_argument("--others", type=int, default=500, help="other classes' items for the shortcut's effect, and images per accuracy group")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.report is not None:
        print(report(json.loads(args.report.read_text())["models"]))
        return 0
    if args.out is None or not args.models:
        p.error("give --models and --out (to run) or --report (to print)")
    torch.set_num_threads(args.threads)
    results = []
    for folder in args.models:
        results.append(evaluate_model(folder, args.images, args.others, args.seed))
        print(f"{folder}: top head {results[-1]['ablation_top']}, GMAR L1's {results[-1]['score_top']['gmar-l1']}", flush=True)
    command = " ".join(["python -m tools.shortcut.heads", *(argv if argv is not None else sys.argv[1:])])
    args.out.write_text(json.dumps({"command": command, "models": results}, indent=1) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
