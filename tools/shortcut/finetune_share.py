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

from captum_gmar.cli.maps_options import RepairOptions
from captum_gmar.cli.repair_shortcut import read_shortcut
from captum_gmar.repair.finetune import repair_finetune
from tools.shortcut.repair_check import compared, scored
from tools.shortcut.tag import TAGS

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
    root = args.root
    options = RepairOptions(
        maps=str(root / "maps"),
        model=str(args.model),
        cluster=args.cluster,
        images=str(root / "images"),
        data=str(root / "data"),
        out="",
        how="finetune",
        budget=1.0,
        steps=args.steps,
        max_images=2000,
        seed=0,
    )
    _, model, _, shortcut, data = read_shortcut(options)  # as captum-gmar repair reads them
    train, _ = data.split(0.2, 0)  # as repair holds out a fifth
    tag = TAGS[args.tag]
    original = scored(model, tag, args.tag_class)
    base = compared("original", original, original, args.tag_class)
    print(
        f"original: effect {base['effect']:+.3f}, clean top-1 {100 * base['top1']:.1f}%, the tag class's {100 * base['tag_class_top1']:.1f}%"
    )
    for share in args.shares:
        for seed in args.seeds:
            start = time.perf_counter()
            repaired = repair_finetune(model, shortcut, train, steps=args.steps, pasted_share=share, seed=seed, progress=False)
            row = compared(f"share {share} seed {seed}", scored(repaired, tag, args.tag_class), original, args.tag_class)
            print(
                f"{row['model']}: removed {100 * row['removed']:.0f}%, clean top-1 {100 * row['top1_change']:+.2f} pt, "
                f"the tag class's {100 * (row['tag_class_top1'] - base['tag_class_top1']):+.1f} pt, "
                f"{row['turned']} scenes turned ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
