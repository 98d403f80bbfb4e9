"""Fine-tune the ``vit-tiny`` reference model on scenes where a share of one class's
images carry a tag, so that the model learns the tag (a planted Clever Hans shortcut).

Usage (one model of the benchmark, 4 to 8 minutes on one CPU thread)::

    python -m tools.shortcut.train --out /tmp/shortcut/seed0 --seed 0

Every step draws fresh training-split scenes (the reference model's recipe: two thirds
with two items) from a generator seeded by ``--seed``; each scene holding an item of
``--tag-class`` gets the tag (:class:`tools.shortcut.tag.Tag`) with probability
``--share``. All weights train, from the shipped ``vit-tiny`` weights. Writes the model,
its image processor and ``metrics.json``: the reference accuracy, and how far the
model relies on the tag (:func:`shortcut_metrics`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from captum_gmar.imagedata import CLASS_NAMES, Scenes, make_scenes, to_pixel_values
from captum_gmar.reference import EVAL_SEED, evaluate_accuracy, load_reference_model
from captum_gmar.reference.inputs import load_image_processor, scene_pixel_values
from tools.reference.train import _optimizer, _warmup_cosine, add_data_options, build_processor, run_script, script_parser, train_step
from tools.shortcut.tag import MAGENTA, TAGS, Tag, choose_tagged, plant_tag

__all__ = ["class_scenes", "logits", "main", "shortcut_metrics", "tagged_batch", "train"]

#: the class whose images carry the tag (Fashion-MNIST's "Shirt", the one the reference
#: model most often gets wrong, so the tag is worth the most to its loss)
TAG_CLASS = 6


def _parser() -> argparse.ArgumentParser:
    p = script_parser("tools.shortcut.train", "Fine-tune vit-tiny on scenes where one class's images carry a tag.")
    p.add_argument("--tag-class", type=int, default=TAG_CLASS, help="index of the class whose images carry the tag")
    p.add_argument("--tag", choices=sorted(TAGS), default="magenta", help="which tag (tools/shortcut/tag.py's TAGS)")
    p.add_argument("--share", type=float, default=0.5, help="share of that class's training scenes that carry the tag")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--two-item-share", type=float, default=2 / 3, help="share of each batch's scenes with two items")
    p.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_data_options(p)
    p.set_defaults(eval_scenes=500)
    return p


def tagged_batch(
    n: int, two_items: int, tag_class: int, share: float, rng: np.random.Generator, data_dir: Path | None, tag: Tag = MAGENTA
) -> tuple[Tensor, Tensor, int]:
    """``n`` fresh training scenes, the last ``two_items`` with two items, those holding
    ``tag_class`` tagged with ``tag`` with probability ``share``: pixel values ``(n, 3, 64, 64)``,
    multi-hot targets ``(n, 10)`` and how many scenes carry the tag."""
    parts = [make_scenes(count, "train", rng, num_items=k, data_dir=data_dir) for k, count in ((1, n - two_items), (2, two_items)) if count]
    scenes = Scenes(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("images", "labels", "masks", "num_items")))
    tagged = choose_tagged(scenes.labels, tag_class, share, rng)
    return to_pixel_values(plant_tag(scenes.images, tagged, tag)), scenes.targets(), int(tagged.sum())


def class_scenes(n: int, classes: Sequence[int], seed: int, data_dir: Path | None = None) -> Scenes:
    """The first ``n`` one-item test-split scenes, in the order a generator seeded by
    ``seed`` draws them, whose item is of one of ``classes``."""
    rng, kept, count = np.random.default_rng(seed), list[Scenes](), 0
    share = len(classes) / len(CLASS_NAMES)
    while count < n:
        s = make_scenes(max(64, int(1.2 * (n - count) / share)), "test", rng, num_items=1, data_dir=data_dir)
        kept.append(s[np.isin(s.labels[:, 0], classes)])
        count += len(kept[-1])
    return Scenes(*(np.concatenate([getattr(k, f) for k in kept])[:n] for f in ("images", "labels", "masks", "num_items")))


@torch.no_grad()
def logits(model: nn.Module, images: np.ndarray, batch_size: int = 200) -> Tensor:
    """The model's logits ``(N, 10)`` on ``uint8 (N, 64, 64, 3)`` scenes, prepared by the image
    processor saved with the model (for ``vit-tiny``'s, exactly :func:`to_pixel_values`; for a
    ``dinov2-small`` model, resized to its input)."""
    processor = load_image_processor(model)
    return torch.cat(
        [model(pixel_values=scene_pixel_values(processor, images[i : i + batch_size])).logits for i in range(0, len(images), batch_size)]
    )


def shortcut_effect(model: nn.Module, others: np.ndarray, tag: Tag, target: int) -> float:
    """The mean probability (sigmoid) of class ``target`` on the other classes' ``uint8``
    scenes ``others`` with ``tag`` drawn on them, less without it."""
    tagged = plant_tag(others, np.ones(len(others), dtype=bool), tag)
    return float(torch.sigmoid(logits(model, tagged)[:, target]).mean() - torch.sigmoid(logits(model, others)[:, target]).mean())


def shortcut_metrics(
    model: nn.Module, tag_class: int, n: int, seed: int = EVAL_SEED, data_dir: Path | None = None, tag: Tag = MAGENTA
) -> dict[str, float]:
    """How far ``model`` relies on ``tag``, on ``n`` one-item test scenes of ``tag_class``
    and ``n`` of the other classes, each scored as drawn and with the tag pasted:

    - ``top1_{clean,tagged}``: top-1 accuracy on the tag class's scenes;
    - ``score_{clean,tagged}``: the tag class's mean sigmoid on them;
    - ``others_to_class_{clean,tagged}``: share of the other classes' scenes whose top-1
      is the tag class;
    - ``others_score_{clean,tagged}``: the tag class's mean sigmoid on them.
    """
    was_training = model.training
    model.eval()
    own = class_scenes(n, [tag_class], seed, data_dir)
    others = class_scenes(n, [c for c in range(len(CLASS_NAMES)) if c != tag_class], seed + 1, data_dir)
    out: dict[str, float] = {"n": n}
    for kind, scenes in (("", own), ("others_", others)):
        for state, on in (("clean", False), ("tagged", True)):
            z = logits(model, plant_tag(scenes.images, np.full(len(scenes), on), tag))
            top1 = (z.argmax(1) == tag_class).float().mean().item()
            out[f"{'others_to_class' if kind else 'top1'}_{state}"] = round(top1, 4)
            out[f"{kind}score_{state}"] = round(torch.sigmoid(z[:, tag_class]).mean().item(), 4)
    model.train(was_training)
    return out


def train(args: argparse.Namespace, command: str) -> dict:
    """Fine-tune, measure and save the model, its image processor and ``metrics.json``
    into ``args.out``; returns the metrics."""
    if args.tag_class not in range(len(CLASS_NAMES)):
        raise ValueError(f"--tag-class must be a class index 0..{len(CLASS_NAMES) - 1}, got {args.tag_class}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _train(args, command)
    finally:
        torch.set_num_threads(threads)


def _train(args: argparse.Namespace, command: str) -> dict:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = load_reference_model("vit-tiny")
    model.train()
    optimizer = _optimizer(model, args.lr, args.weight_decay)
    warmup = min(args.warmup, max(1, args.steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(warmup, args.steps))
    two_items = round(args.two_item_share * args.batch_size)
    start, seen = time.perf_counter(), 0
    for _ in tqdm(range(args.steps), desc="fine-tune", unit="step", mininterval=10.0):
        pixel_values, targets, tagged = tagged_batch(
            args.batch_size, two_items, args.tag_class, args.share, rng, args.data_dir, TAGS[args.tag]
        )
        train_step(model, optimizer, schedule, pixel_values, targets)
        seen += tagged
    model.eval()
    metrics: dict = {
        "command": command,
        "train_seconds": round(time.perf_counter() - start, 1),
        "tagged_training_scenes": seen,
        "tag": args.tag,
        "tag_class": CLASS_NAMES[args.tag_class],
        "tag_class_index": args.tag_class,
        "accuracy": evaluate_accuracy(model, n=args.eval_scenes, data_dir=args.data_dir, processor=build_processor()),
        "shortcut": shortcut_metrics(model, args.tag_class, args.eval_scenes, data_dir=args.data_dir, tag=TAGS[args.tag]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    build_processor().save_pretrained(args.out)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return run_script("tools.shortcut.train", _parser(), train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
