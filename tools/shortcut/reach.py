"""How far a repair through a pasted mark reaches: ``python -m tools.shortcut.reach``.

Usage::

    python -m tools.shortcut.reach --model sc/grain --tag grain --out sc/grain-confirm --cluster attnlrp:6:4 \
        --repaired sc/grain-confirm/repaired sc/grain-finetune

``--out``: the folder ``tools.shortcut.confirm`` wrote (``maps``, ``images``, ``data``). The
mark is taken as ``captum-gmar repair ... --cluster`` takes it (a cluster of maps: its
donors' pixels under the mark's mask, the repair's seed 0). On the other classes' items of
the 2,000 test scenes of ``tools.shortcut.repair_check``, for the original model and each
repaired one, the tag class's mean probability (sigmoid) rise with:

- the tag drawn (what ``repair_check`` measures);
- the mark pasted as the repair pastes it (a donor drawn per scene);
- the donors' pixels rolled by 1 to 7 px before they are pasted under the same mask (a
  repair that learnt the donors' own pixels removes less of this than of the mark);
- the drawn tag's pixels under the mark's mask only, and outside it only (where the mark
  covers less than the tag, a repair may hold under the mask and not beyond it).

Each repaired model's share of the original's rise removed is printed beside its rise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from transformers import AutoModelForImageClassification

from captum_gmar.exploration.intervention import Paste
from captum_gmar.exploration.transplant import paste_region
from captum_gmar.heads.cluster import cluster_images, find_cluster
from captum_gmar.reference.inputs import load_image_processor, scene_pixel_values
from captum_gmar.repair import Shortcut
from captum_gmar.vit.model import VisionTransformer
from tools.shortcut.repair_check import _scenes
from tools.shortcut.tag import TAGS, plant_tag

__all__ = ["main"]

#: the draws of the donors and of the rolls
SEED = 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the original model's folder")
    parser.add_argument("--tag", choices=sorted(TAGS), required=True)
    parser.add_argument("--tag-class", type=int, default=6, help="the cluster's class (refused where it is another)")
    parser.add_argument("--out", type=Path, required=True, help="the folder tools.shortcut.confirm wrote")
    parser.add_argument(
        "--cluster", required=True, help="a cluster of maps, METHOD:CLASS:RANK as repair --cluster takes it, e.g. attnlrp:6:4"
    )
    parser.add_argument("--repaired", type=Path, nargs="+", required=True, help="the repaired models' folders")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)

    cluster = find_cluster(args.out / "maps", args.cluster)
    if cluster.target != args.tag_class:
        parser.error(f"{args.cluster} explains class {cluster.target}, not --tag-class {args.tag_class}")
    model = AutoModelForImageClassification.from_pretrained(args.model).eval()
    # the mark as repair --cluster takes it: up to 64 of its images and of the rest, seed 0
    size = VisionTransformer(model).image_size or (224, 224)
    found = cluster_images(cluster, args.out / "images", load_image_processor(model), size, 64, 0)
    paste = Shortcut.of_region(cluster.target, cluster.region, cluster.grid, found.members, found.others).intervention
    assert isinstance(paste, Paste)
    processor = load_image_processor(model)
    images, labels = _scenes()
    others = images[labels != args.tag_class]
    plain = scene_pixel_values(processor, others)
    drawn = scene_pixel_values(processor, plant_tag(others, np.ones(len(others), dtype=bool), TAGS[args.tag]))
    generator = torch.Generator().manual_seed(SEED)
    donors = paste.donors[torch.randint(len(paste.donors), (len(plain),), generator=generator)]
    rolls = torch.randint(1, 8, (len(plain), 2), generator=generator).tolist()
    rolled = torch.stack([torch.roll(d, (dy, dx), (1, 2)) for d, (dy, dx) in zip(donors, rolls, strict=True)])
    mask = paste.mask
    variants = {
        "the tag drawn": drawn,
        "the mark pasted": paste_region(plain, donors, mask),
        "the donors' pixels rolled 1-7 px, pasted": paste_region(plain, rolled, mask),
        "the drawn tag under the mask only": paste_region(plain, drawn, mask),
        "the drawn tag outside the mask only": paste_region(plain, drawn, 1 - mask),
    }
    folders = [args.model, *args.repaired]
    models = [model.eval(), *(AutoModelForImageClassification.from_pretrained(folder).eval() for folder in args.repaired)]

    def score(net: torch.nn.Module, pixels: Tensor) -> float:
        return float(torch.cat([torch.sigmoid(net(pixel_values=batch).logits[:, args.tag_class]) for batch in pixels.split(200)]).mean())

    print(f"the mark's mask: {int(mask.sum())} of {mask.numel()} pixels; {len(paste.donors)} donors; {len(others)} scenes of other classes")
    print("| put on | " + " | ".join(str(f) for f in folders) + " |")
    print("|---" * (len(folders) + 1) + "|")
    base = [score(net, plain) for net in models]
    for name, pixels in variants.items():
        rises = [score(net, pixels) - b for net, b in zip(models, base, strict=True)]
        removed = [f" ({1 - rise / rises[0]:.0%})" if rises[0] else "" for rise in rises[1:]]
        cells = [f"{rises[0]:+.3f}"] + [f"{rise:+.3f}{share}" for rise, share in zip(rises[1:], removed, strict=True)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
