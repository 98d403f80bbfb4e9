"""The fine-tune's share of pasted images, measured: ``python -m tools.shortcut.finetune_share``.

Usage (after ``python -m tools.shortcut.confirm --model M --tag T --out O --repair``)::

    python -m tools.shortcut.finetune_share --root O --model M --cluster attnlrp:6:1 --tag frame --tag-class 6

The shortcut of ``--cluster`` in ``O/maps`` and the labelled images of ``O/data`` (a fifth
held out), read as ``captum-gmar repair`` reads them; then
:func:`captum_gmar.repair.finetune.repair_finetune` for each ``--shares`` and ``--seeds``,
each repaired model measured as ``tools.shortcut.repair_check`` measures it (2,000 test
scenes of every class): the share of the effect removed, clean top-1 against the
original's, the tag class's top-1, and how many clean scenes turned right or wrong.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from captum_gmar.cli.maps_options import cluster_and_model
from captum_gmar.cli.repair import _labelled
from captum_gmar.heads.cluster import cluster_images
from captum_gmar.reference.inputs import load_image_processor
from captum_gmar.repair import Shortcut
from captum_gmar.repair.finetune import repair_finetune
from captum_gmar.vit.model import VisionTransformer
from tools.shortcut.repair_check import SCENES, SEED
from tools.shortcut.tag import TAGS
from tools.shortcut.train import class_scenes, logits, shortcut_effect

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the folder tools.shortcut.confirm wrote")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cluster", required=True, help="METHOD:CLASS:RANK, as captum-gmar repair takes it")
    parser.add_argument("--tag", choices=sorted(TAGS), required=True)
    parser.add_argument("--tag-class", type=int, required=True)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    cluster, model = cluster_and_model(str(args.root / "maps"), args.cluster, str(args.model))
    processor = load_image_processor(model)
    size = VisionTransformer(model).image_size or (224, 224)
    found = cluster_images(cluster, str(args.root / "images"), processor, size, 64, 0)
    data = _labelled(str(args.root / "data"), processor, model.config.id2label, size, 100_000, 0)
    shortcut = Shortcut(cluster.target, cluster.region, cluster.grid, found.members, found.others)
    train, _ = data.split(0.2, 0)  # as repair holds out a fifth
    scenes = class_scenes(SCENES, list(range(10)), SEED)
    labels = scenes.labels[:, 0]
    others, own = labels != args.tag_class, labels == args.tag_class

    def measured(m: nn.Module) -> tuple[float, np.ndarray]:
        right = logits(m, scenes.images).argmax(1).numpy() == labels
        return shortcut_effect(m, scenes.images[others], TAGS[args.tag], args.tag_class), right

    base_effect, base_right = measured(model)
    print(
        f"original: effect {base_effect:+.3f}, clean top-1 {100 * base_right.mean():.1f}%, the tag class's {100 * base_right[own].mean():.1f}%"
    )
    for share in args.shares:
        for seed in args.seeds:
            start = time.perf_counter()
            repaired = repair_finetune(model, shortcut, train, steps=args.steps, pasted_share=share, seed=seed, progress=False)
            effect, right = measured(repaired)
            print(
                f"share {share} seed {seed}: removed {100 * (1 - effect / base_effect):.0f}%, clean top-1 "
                f"{100 * (right.mean() - base_right.mean()):+.2f} pt, the tag class's {100 * (right[own].mean() - base_right[own].mean()):+.1f} pt, "
                f"{int((right != base_right).sum())} scenes turned ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
