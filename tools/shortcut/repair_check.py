"""A repair checked as the shortcut issue measures it: ``python -m tools.shortcut.repair_check``.

Usage::

    python -m tools.shortcut.repair_check --tag frame --tag-class 6 --models sc/frame sc/frame-confirm/repaired

On 2,000 one-item test scenes of every class that nothing else uses (seed 123456), for
each model (the first is the original): the **effect**, the tag class's mean probability
(sigmoid) on the other classes' items with the tag drawn on them less without it, and
top-1 on the clean scenes, overall and on the tag class; the **own effect**, the same on
the tag class's own scenes (the tag drawn on them less without: what the shortcut adds on
the images that carry it by nature), and top-1 on those scenes with the tag drawn; then,
for each later model, the share of the original's effect and own effect it removed and its
clean top-1 against the original's, with how many clean scenes turned from right to wrong
or back. ``--json PATH`` also writes
them (what ``tools.shortcut.end_to_end`` reads).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import AutoModelForImageClassification

from tools.shortcut.tag import TAGS, Tag, plant_tag
from tools.shortcut.train import class_scenes, logits

__all__ = ["Scored", "compared", "main", "scored"]

SCENES, SEED = 2000, 123456
#: a model's effect, which clean scenes it gets right (``bool (SCENES,)``), its own effect
#: and which of the tag class's scenes with the tag drawn it gets right
Scored = tuple[float, np.ndarray, float, np.ndarray]


@functools.cache
def _scenes() -> tuple[np.ndarray, np.ndarray]:
    """The test scenes, ``uint8 (SCENES, 64, 64, 3)``, and their labels."""
    scenes = class_scenes(SCENES, list(range(10)), SEED)
    return scenes.images, scenes.labels[:, 0]


def scored(model: nn.Module, tag: Tag, tag_class: int) -> Scored:
    """``model``'s effect of ``tag`` on ``tag_class`` (on the other classes' scenes), which
    clean scenes it gets right, its own effect (on the tag class's scenes) and which of
    those, tagged, it gets right."""
    images, labels = _scenes()
    clean = logits(model, images)  # one pass over every clean scene, one over each class's share with the tag drawn
    own, others = labels == tag_class, labels != tag_class
    tagged_own, tagged_others = (
        logits(model, plant_tag(images[which], np.ones(int(which.sum()), dtype=bool), tag)) for which in (own, others)
    )

    def score(pass_: Tensor) -> Tensor:
        return torch.sigmoid(pass_[:, tag_class])

    return (
        float(score(tagged_others).mean() - score(clean[others]).mean()),
        clean.argmax(1).numpy() == labels,
        float(score(tagged_own).mean() - score(clean[own]).mean()),
        tagged_own.argmax(1).numpy() == tag_class,
    )


def compared(name: str, model: Scored, original: Scored, tag_class: int) -> dict[str, Any]:
    """``model``'s figures against the ``original``'s: the share of the effect and of the own
    effect removed, clean top-1 and its change, the tag class's top-1 clean and tagged, and
    the scenes turned right or wrong."""
    (effect, right, own, tagged_right), (base_effect, base_right, base_own, _) = model, original
    labels = _scenes()[1]
    return {
        "model": name,
        "effect": effect,
        "removed": 1 - effect / base_effect,
        "top1": float(right.mean()),
        "top1_change": float(right.mean() - base_right.mean()),
        "tag_class_top1": float(right[labels == tag_class].mean()),
        "own_effect": own,
        "own_removed": 1 - own / base_own if base_own > 0 else float("nan"),  # no own effect before: no share of it
        "tag_class_tagged_top1": float(tagged_right.mean()),
        "turned": int((right != base_right).sum()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", choices=sorted(TAGS), required=True)
    parser.add_argument("--tag-class", type=int, required=True)
    parser.add_argument("--models", nargs="+", required=True, help="the original model's folder, then the repaired ones'")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    results = [
        scored(AutoModelForImageClassification.from_pretrained(folder).eval(), TAGS[args.tag], args.tag_class) for folder in args.models
    ]
    figures = [compared(folder, result, results[0], args.tag_class) for folder, result in zip(args.models, results)]
    for row in figures:
        print(
            f"{row['model']}: effect {row['effect']:+.3f}, clean top-1 {100 * row['top1']:.1f}% of {SCENES}, "
            f"the tag class's {100 * row['tag_class_top1']:.1f}% ({100 * row['tag_class_tagged_top1']:.1f}% tagged); own effect "
            f"{row['own_effect']:+.3f}"
        )
    for row in figures[1:]:
        print(
            f"{row['model']}: removed {100 * row['removed']:.0f}% of the effect and {100 * row['own_removed']:.0f}% of the own "
            f"effect, clean top-1 {100 * row['top1_change']:+.1f} pt "
            f"({row['turned']} scenes turned right or wrong)"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"tag": args.tag, "tag_class": args.tag_class, "scenes": SCENES, "models": figures}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
