"""Whether a larger photo pool gives the demo composites whose own photos rank highest.

``captum-gmar demo --model dinov2-small-backbone`` draws 16 composites and keeps the 4
with the largest own-photo margin (:func:`~captum_gmar.evaluation.photo_similarity.own_photo_margins`:
the lowest centred cosine to the composite's own photos' references less the highest to
any other photo's; positive where the model ranks every photo of the composite above
every other photo). For each seed this counts the positive margins among the 16 drawn
and the 4 kept, with the nine bundled photos and with the pool that adds OpenCV's
(:func:`~captum_gmar.imagedata.photos.available_photos`; ``apt-get install opencv-doc``).

    python benchmarks/similarity_photo_pool.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from transformers import AutoImageProcessor

from captum_gmar.evaluation.photo_similarity import own_photo_margins, photo_similarity
from captum_gmar.imagedata.photos import PHOTOS, available_photos
from captum_gmar.reference import load_reference_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="as demo's --seed (default 0 to 4)")
    parser.add_argument("--candidates", type=int, default=16, help="composites drawn (the demo's 16)")
    parser.add_argument("--keep", type=int, default=4, help="composites kept (the demo's 4)")
    args = parser.parse_args(argv)
    pools = {"nine bundled": list(PHOTOS), "with OpenCV's": available_photos()}
    if len(pools["with OpenCV's"]) == len(PHOTOS):
        print("OpenCV's sample photos are not installed (apt-get install opencv-doc): only the nine bundled photos", file=sys.stderr)
        del pools["with OpenCV's"]
    backbone = load_reference_model("dinov2-small-backbone")
    processor = AutoImageProcessor.from_pretrained(backbone.name_or_path, local_files_only=True)
    print(f"Command: `python benchmarks/similarity_photo_pool.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print(f"| seed | photos | positive margins, {args.candidates} drawn | positive, {args.keep} kept | kept margins |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        for label, names in pools.items():
            bench = photo_similarity(backbone, processor, args.candidates, seed=seed, center="references", photos=names)
            margins = own_photo_margins(bench.model, bench.tasks).numpy()
            kept = margins[np.sort(np.argsort(-margins, kind="stable")[: args.keep])]
            print(
                f"| {seed} | {label} ({len(names)}) | {int((margins > 0).sum())} | {int((kept > 0).sum())} | "
                f"{' '.join(f'{m:+.3f}' for m in kept)} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
