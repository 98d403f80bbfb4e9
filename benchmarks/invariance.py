"""Implementation invariance of every method on a reference model: how much each map moves
when heads are rescaled against their output projection, the function kept the same.

Runs :func:`captum_gmar.evaluation.metrics.invariance.invariance_table` on evaluation scenes
(``make_scenes(n, "test", seed=0)``, each explained for its first item's class) for one
head, one layer and all heads, and prints a markdown table: the mean change of the map on
the patch grid (pixels in brackets) per method, scope and scale.

    python benchmarks/invariance.py --model vit-tiny --scenes 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import AutoImageProcessor

import captum_gmar
from captum_gmar.evaluation import SceneTasks, invariance_table
from captum_gmar.evaluation.data import collate
from captum_gmar.imagedata import make_scenes
from captum_gmar.names import METHOD_KEYS, REFERENCE_MODELS
from captum_gmar.reference import load_reference_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-tiny", choices=["vit-tiny", "dinov2-small"])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--methods", default=",".join(METHOD_KEYS))
    parser.add_argument("--ig-steps", type=int, default=16)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = load_reference_model(args.model, device="cpu")
    folder = Path(captum_gmar.__file__).parent / REFERENCE_MODELS[args.model]
    processor = None if args.model == "vit-tiny" else AutoImageProcessor.from_pretrained(folder, local_files_only=True)  # dinov2: resized
    tasks = SceneTasks(make_scenes(args.scenes, "test", seed=0), processor)
    batch = collate([tasks[i] for i in range(args.scenes)])
    start = time.perf_counter()
    rows = invariance_table(model, batch.pixel_values, batch.targets, args.methods.split(","), ig_steps=args.ig_steps)
    seconds = time.perf_counter() - start
    columns = sorted({(r["scope"], r["scale"]) for r in rows}, key=lambda k: (["head", "layer", "all"].index(k[0]), k[1]))
    print(
        f"{args.model}, {args.scenes} images, {seconds:.0f} s; largest relative logit difference {max(r['logit_error'] for r in rows):.1e}\n"
    )
    print(
        "| method | "
        + " | ".join(f"{scope} x{scale:g}" if scope != "all" else f"all, 1/{scale:g}..{scale:g}" for scope, scale in columns)
        + " |"
    )
    print("|---" * (len(columns) + 1) + "|")
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = {(r["scope"], r["scale"]): r for r in rows if r["method"] == method}
        print(f"| {method} | " + " | ".join(f"{cells[k]['patch_change']:.1e} ({cells[k]['pixel_change']:.1e})" for k in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
