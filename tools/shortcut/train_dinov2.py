"""A DINOv2-S/14 backbone with a linear head fitted to scenes where a share of one class's
images carry a tag (a planted shortcut), the backbone frozen or its last blocks tuned too:
``python -m tools.shortcut.train_dinov2``.

Usage (one model, a few minutes on a CPU; the first run also caches the untagged scenes'
features, about 5 minutes on 2 cores)::

    python -m tools.shortcut.train_dinov2 --out sc/dinov2-frame --tag frame --share 0.7

The common "frozen backbone, linear head" use of a pretrained ViT: the converted DINOv2-S/14
backbone (:func:`captum_gmar.reference.dinov2.backbone_dir`, DINOv2's own weights in every
block unless ``--tune-blocks``, not the ``dinov2-small`` reference classifier's tuned blocks) and a
``Dinov2ForImageClassification`` head fitted as the reference classifier's first stage fits
it (:func:`tools.reference.train_dinov2.fit_head`: full-batch L-BFGS on the head's input, the
last layer's class token beside its mean patch token). The data: ``--train-scenes``
one-item training-split scenes drawn from a generator seeded by ``--seed``; each of
``--tag-class`` carries the tag (:data:`tools.shortcut.tag.TAGS`) with probability
``--share``.

With ``--tune-blocks K``, the last ``K`` blocks, the final LayerNorm and the head are then
trained further as the reference classifier's second stage trains them
(:func:`tools.reference.train_dinov2.fine_tune`), on ``--steps`` batches of fresh one-item
scenes where the class's images carry the tag with the same share
(:func:`tagged_scenes`). 1,000 steps of four blocks took 28 to 33 s on an H200
(``--device cuda``, four such runs side by side; docs/results.md, "dinov2-small with its
last four blocks tuned"); on one CPU thread the reference classifier's 1,000 took 38
minutes::

    python -m tools.shortcut.train_dinov2 --out sc/dinov2-tuned-noise --tag noise --tune-blocks 4 --device cuda

Only the tagged scenes differ from one tag to the next, so the untagged scenes' features
are cached (``--cache``, keyed by the seed, the number of scenes and the device) and a second tag costs
the pass over its tagged scenes alone. Writes a complete model folder (``save_pretrained``:
``config.json``, ``model.safetensors``, ``preprocessor_config.json``) and ``metrics.json``:
the accuracy (:func:`captum_gmar.reference.evaluate_accuracy`) and how far the model relies
on the tag (:func:`tools.shortcut.train.shortcut_metrics`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm
from transformers import Dinov2ForImageClassification, Dinov2Model

from captum_gmar.imagedata import make_scenes
from captum_gmar.imagedata.processing import load_processor
from captum_gmar.reference import EVAL_SEED, evaluate_accuracy
from captum_gmar.reference.dinov2 import backbone_dir
from captum_gmar.reference.dinov2_classifier import classifier_config, processor_config
from captum_gmar.reference.inputs import scene_pixel_values
from tools.reference.train import add_data_options, run_script, script_parser
from tools.reference.train_dinov2 import fine_tune, fit_head
from tools.shortcut.tag import TAGS, choose_tagged, plant_tag
from tools.shortcut.train import TAG_CLASS, shortcut_metrics

__all__ = ["head_input", "main", "tagged_scenes", "train"]


def _parser() -> argparse.ArgumentParser:
    p = script_parser(
        "tools.shortcut.train_dinov2",
        "Fit a linear head on DINOv2-S/14 features of scenes with a planted tag, and tune the last blocks if asked.",
    )
    p.add_argument("--tag-class", type=int, default=TAG_CLASS, help="index of the class whose images carry the tag")
    p.add_argument("--tag", choices=sorted(TAGS), default="magenta", help="which tag (tools/shortcut/tag.py's TAGS)")
    p.add_argument("--share", type=float, default=0.7, help="share of that class's training scenes that carry the tag")
    p.add_argument("--train-scenes", type=int, default=4000, help="one-item training scenes the head is fitted to")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the head's weights")
    p.add_argument("--max-iter", type=int, default=500, help="L-BFGS iterations")
    p.add_argument("--batch-size", type=int, default=50, help="scenes per forward pass")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the untagged scenes' features (default: beside --out, named by the seed, the scenes and the device)",
    )
    p.add_argument("--shortcut-scenes", type=int, default=500, help="scenes of the class and of the others for metrics.json's effect")
    p.add_argument(
        "--tune-blocks",
        type=int,
        default=0,
        help="then train the last K blocks, the final LayerNorm and the head (0: the backbone stays frozen)",
    )
    p.add_argument("--steps", type=int, default=1000, help="steps of fresh scenes, --tune-step-batch each, when tuning blocks")
    p.add_argument("--tune-step-batch", type=int, default=32, help="scenes per step when tuning blocks")
    p.add_argument("--lr", type=float, default=3e-5, help="peak AdamW learning rate when tuning blocks")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay on matrices when tuning blocks")
    p.add_argument("--device", default="cpu", help="where the features are read and the blocks tuned (the metrics are read on the CPU)")
    add_data_options(p)
    p.set_defaults(eval_scenes=500)
    return p


@torch.no_grad()
def head_input(model: Dinov2ForImageClassification, pixel_values: Tensor, batch_size: int, desc: str) -> Tensor:
    """The classifier's input for ``pixel_values`` ``(N, 3, S, S)``: ``float32 (N, 2 * hidden)``
    on the host, read off the model (on its device) by a hook on the head, ``batch_size``
    images a pass."""
    features: list[Tensor] = []
    hook = model.classifier.register_forward_pre_hook(lambda module, args: features.append(args[0].float()))
    device = next(model.classifier.parameters()).device
    try:
        for start in tqdm(range(0, len(pixel_values), batch_size), desc=desc, mininterval=10.0):
            model(pixel_values=pixel_values[start : start + batch_size].to(device))
    finally:
        hook.remove()
    return torch.cat(features).cpu() if features else torch.zeros(0, 2 * model.config.hidden_size)


def tagged_scenes(
    n: int, tag: str, tag_class: int, share: float, rng: np.random.Generator, data_dir: Path | None
) -> tuple[np.ndarray, Tensor]:
    """``n`` fresh one-item training-split scenes, each of ``tag_class`` carrying ``tag``
    with probability ``share``: images ``uint8 (n, 64, 64, 3)`` and multi-hot targets
    ``float32 (n, 10)`` (the scenes the blocks are tuned on)."""
    scenes = make_scenes(n, "train", rng, num_items=1, data_dir=data_dir)
    return plant_tag(scenes.images, choose_tagged(scenes.labels, tag_class, share, rng), TAGS[tag]), scenes.targets()


def train(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Fit the head, tune the last blocks if asked, write the model folder ``args.out`` and
    its ``metrics.json``. Returns the metrics."""
    config = classifier_config()
    if not 0 <= args.tune_blocks <= config.num_hidden_layers:
        raise ValueError(f"--tune-blocks must be in [0, {config.num_hidden_layers}], got {args.tune_blocks}")
    if args.tune_blocks and min(args.steps, args.tune_step_batch) < 1:
        raise ValueError(f"--steps and --tune-step-batch must be at least 1 to tune blocks, got {args.steps} and {args.tune_step_batch}")
    args.out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(args.out)
    (args.out / "preprocessor_config.json").write_text(json.dumps(processor_config(112), indent=2) + "\n")
    model = Dinov2ForImageClassification(config)
    model.dinov2 = Dinov2Model.from_pretrained(backbone_dir())
    model.eval().to(args.device)
    processor = load_processor(args.out)

    rng = np.random.default_rng(args.seed)
    scenes = make_scenes(args.train_scenes, "train", rng, num_items=1, data_dir=args.data_dir)
    tagged = choose_tagged(scenes.labels, args.tag_class, args.share, rng)
    # the device in the name: a GPU's features need not match the CPU's to the bit (TF32 convolutions, other kernels)
    cache = (
        args.cache or args.out.parent / f"dinov2-untagged-seed{args.seed}-n{args.train_scenes}-{torch.device(args.device).type}.safetensors"
    )
    start = time.perf_counter()
    if cache.exists():
        features = load_file(cache)["features"]
    else:
        features = head_input(model, scene_pixel_values(processor, scenes.images), args.batch_size, "untagged features")
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.part")  # runs side by side never read half a file
        save_file({"features": features.contiguous()}, partial)
        os.replace(partial, cache)
    features = features.clone()
    rows = np.flatnonzero(tagged)
    if len(rows):  # none where the class drew no tag (an image processor may refuse an empty batch)
        marked = plant_tag(scenes.images[rows], np.ones(len(rows), dtype=bool), TAGS[args.tag])
        features[torch.from_numpy(rows)] = head_input(model, scene_pixel_values(processor, marked), args.batch_size, "tagged features")
    feature_seconds = time.perf_counter() - start

    start = time.perf_counter()
    assert isinstance(model.classifier, torch.nn.Linear)  # a classifier with labels
    head_loss = fit_head(model.classifier, features.to(args.device), scenes.targets().to(args.device), args.l2, args.max_iter)
    head_seconds = time.perf_counter() - start
    tune_loss, start = None, time.perf_counter()
    if args.tune_blocks:
        draw = functools.partial(tagged_scenes, tag=args.tag, tag_class=args.tag_class, share=args.share, rng=rng, data_dir=args.data_dir)
        tune_loss = fine_tune(model, processor, args.tune_blocks, args.steps, args.tune_step_batch, draw, args.lr, args.weight_decay)
    tune_seconds = time.perf_counter() - start
    model.cpu().save_pretrained(args.out)

    saved = Dinov2ForImageClassification.from_pretrained(args.out.resolve()).eval()
    start = time.perf_counter()
    metrics: dict[str, Any] = {
        "command": command,
        "tag": args.tag,
        "tag_class": args.tag_class,
        "share": args.share,
        "tagged_scenes": int(tagged.sum()),
        "train_scenes": args.train_scenes,
        **evaluate_accuracy(saved, n=args.eval_scenes, seed=EVAL_SEED, data_dir=args.data_dir),
        "shortcut": shortcut_metrics(saved, args.tag_class, args.shortcut_scenes, data_dir=args.data_dir, tag=TAGS[args.tag]),
        "feature_seconds": round(feature_seconds, 1),
        "head_seconds": round(head_seconds, 1),
        "eval_seconds": round(time.perf_counter() - start, 1),
        "head_loss": round(head_loss, 5),
        "tune_blocks": args.tune_blocks,
        **(
            {"steps": args.steps, "tune_seconds": round(tune_seconds, 1), "tune_loss": round(tune_loss, 5)} if tune_loss is not None else {}
        ),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_script("tools.shortcut.train_dinov2", _parser(), train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
