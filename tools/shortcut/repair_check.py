"""A repair checked as the shortcut issue measures it: ``python -m tools.shortcut.repair_check``.

Usage::

    python -m tools.shortcut.repair_check --tag frame --tag-class 6 --models sc/frame sc/frame-confirm/repaired

On 2,000 one-item test scenes of every class that nothing else uses (seed 123456), for
each model (the first is the original): the **effect**, the tag class's mean probability
(sigmoid) on the other classes' items with the tag drawn on them less without it, and
top-1 on the clean scenes, overall and on the tag class; then, for each later model, the
share of the original's effect it removed and its clean top-1 against the original's, with
how many clean scenes turned from right to wrong or back. ``--json PATH`` also writes
them (what ``tools.shortcut.end_to_end`` reads).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from transformers import AutoModelForImageClassification

from tools.shortcut.tag import TAGS
from tools.shortcut.train import class_scenes, logits, shortcut_effect

__all__ = ["main"]

SCENES, SEED = 2000, 123456


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", choices=sorted(TAGS), required=True)
    parser.add_argument("--tag-class", type=int, required=True)
    parser.add_argument("--models", nargs="+", required=True, help="the original model's folder, then the repaired ones'")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    scenes = class_scenes(SCENES, list(range(10)), SEED)
    labels = scenes.labels[:, 0]
    others = labels != args.tag_class
    rows = []
    for folder in args.models:
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        right = logits(model, scenes.images).argmax(1).numpy() == labels
        effect = shortcut_effect(model, scenes.images[others], TAGS[args.tag], args.tag_class)
        own = float(right[labels == args.tag_class].mean())
        rows.append((folder, effect, right))
        print(f"{folder}: effect {effect:+.3f}, clean top-1 {100 * right.mean():.1f}% of {SCENES}, the tag class's {100 * own:.1f}%")
    _, base_effect, base_right = rows[0]
    figures = []
    for folder, effect, right in rows:
        figures.append(
            {
                "model": folder,
                "effect": effect,
                "removed": 1 - effect / base_effect,
                "top1": float(right.mean()),
                "top1_change": float(right.mean() - base_right.mean()),
                "tag_class_top1": float(right[labels == args.tag_class].mean()),
                "turned": int((right != base_right).sum()),
            }
        )
    for row in figures[1:]:
        print(
            f"{row['model']}: removed {100 * row['removed']:.0f}% of the effect, clean top-1 {100 * row['top1_change']:+.1f} pt "
            f"({row['turned']} scenes turned right or wrong)"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"tag": args.tag, "tag_class": args.tag_class, "scenes": SCENES, "models": figures}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
