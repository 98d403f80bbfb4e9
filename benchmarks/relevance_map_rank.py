"""Quantus' rank-based localisation (RelevanceRankAccuracy) of AttnLRP and CP-LRP under each
way their signed relevance becomes a map, beside GMAR and rollout.

RelevanceRankAccuracy (Arras et al. 2022) takes the ``k`` pixels of highest value, ``k``
the object's size, and counts the fraction on the object: a rank-based score, unlike the
mass inside the mask of ``compare``, which clamps negative values to zero. Every item of
``--scenes`` test-split scenes (seed 0) is explained once per method and map choice.

    python benchmarks/relevance_map_rank.py --model vit-tiny --scenes 200
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import quantus
import torch
from transformers import AutoImageProcessor

from captum_gmar import load_reference_model
from captum_gmar.evaluation.data import SceneTasks, collate
from captum_gmar.evaluation.quantus import QuantusModel, explain_func
from captum_gmar.imagedata.scenes import make_scenes
from captum_gmar.loading import model_folder
from captum_gmar.names import RELEVANCE_MAPS


def mean_and_error(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1) / len(values) ** 0.5:.3f}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-tiny", help="a reference model")
    parser.add_argument("--scenes", type=int, default=200)
    args = parser.parse_args(argv)

    model = QuantusModel(load_reference_model(args.model)).eval()
    processor = AutoImageProcessor.from_pretrained(model_folder(args.model))
    batch = collate(list(SceneTasks(make_scenes(args.scenes, "test", seed=0), processor)))  # one task per item
    x, y, s = batch.pixel_values.numpy(), batch.targets.numpy(), batch.masks.numpy()[:, None]
    runs = [("gmar-l1", "positive"), ("rollout", "positive")] + [(m, c) for m in ("attnlrp", "cplrp") for c in RELEVANCE_MAPS]
    scores = {}
    for method, choice in runs:
        metric = quantus.RelevanceRankAccuracy(disable_warnings=True)
        start = time.perf_counter()
        kwargs = {"method": method, "relevance_map": choice}
        scores[method, choice] = np.array(
            metric(
                model=model,
                x_batch=x,
                y_batch=y,
                s_batch=s,
                explain_func=explain_func,
                explain_func_kwargs=kwargs,
                device="cpu",
                batch_size=32,
            )
        )
        print(f"{method:8} {choice:9} {mean_and_error(scores[method, choice])} ({time.perf_counter() - start:.0f} s)", flush=True)

    print(
        f"\nDevice: CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}, quantus {quantus.__version__}."
    )
    print(f"Command: `python {' '.join([sys.argv[0]] + argv)}` ({time.strftime('%Y-%m-%d')}); {len(y)} items.\n")
    print("| method | map | RelevanceRankAccuracy ↑ | − GMAR (L1), paired |")
    print("|---|---|---|---|")
    for method, choice in runs:
        difference = scores[method, choice] - scores["gmar-l1", "positive"]
        paired = "" if method == "gmar-l1" else mean_and_error(difference)
        print(
            f"| {method} | {choice if method in ('attnlrp', 'cplrp') else '(its own)'} | {mean_and_error(scores[method, choice])} | {paired} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
