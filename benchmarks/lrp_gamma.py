"""AttnLRP and CP-LRP with and without the gamma rule on the linear layers: faithfulness and
localisation on evaluation scenes, to choose the default ``gamma``.

``lxt`` recommends the gamma rule for vision transformers; this measures whether it helps
on a reference model. Each item is explained with its class; the maps are what
``compare`` scores (positive part of the channel sum), with ``compare``'s metrics and
settings (blur baseline, Chefer's perturbation AUC), and the summary is a Markdown table
of means and standard errors.

    python benchmarks/lrp_gamma.py --model dinov2-small --scenes 100 --gammas 0,0.05,0.25
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoImageProcessor

from captum_gmar import CPLRP, AttnLRP
from captum_gmar.evaluation.data import SceneTasks, collate
from captum_gmar.evaluation.methods import Method
from captum_gmar.evaluation.metrics.faithfulness import deletion_auc, insertion_auc, perturbation_auc
from captum_gmar.evaluation.metrics.localisation import class_sensitivity, mass_inside, pointing_game
from captum_gmar.evaluation.report import markdown_table, summarize
from captum_gmar.imagedata import make_scenes
from captum_gmar.reference import load_reference_model
from captum_gmar.vit.model import VisionTransformer
from captum_gmar.vit.outputs import score_function


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2-small", choices=["vit-tiny", "dinov2-small"])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--gammas", default="0,0.05,0.25")
    parser.add_argument("--deletion-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = load_reference_model(args.model)
    processor = None if args.model == "vit-tiny" else AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    tasks = SceneTasks(make_scenes(args.scenes, "test", seed=args.seed), processor)
    score_fn = score_function(VisionTransformer(model))
    methods = [
        Method(f"{cls.get_name()} (gamma {gamma:g})", cls(model, gamma=gamma), {}, reduce="positive")
        for cls in (AttnLRP, CPLRP)
        for gamma in map(float, args.gammas.split(","))
    ]
    rows = []
    start = time.perf_counter()
    for batch in tqdm(DataLoader(tasks, batch_size=args.batch_size, collate_fn=collate), desc="lrp gamma"):
        x, t, masks = batch.pixel_values, batch.targets, batch.masks
        has_both = batch.has_mask & batch.has_other
        for method in methods:
            maps = method(x, t)
            columns = {
                "deletion_auc": deletion_auc(score_fn, x, maps, t, baseline="blur", steps=args.deletion_steps),
                "insertion_auc": insertion_auc(score_fn, x, maps, t, baseline="blur", steps=args.deletion_steps),
                "positive_perturbation_auc": perturbation_auc(score_fn, x, maps, t, positive=True),
                "negative_perturbation_auc": perturbation_auc(score_fn, x, maps, t, positive=False),
                "pointing_game": pointing_game(maps, masks).float(),
                "mass_inside": mass_inside(maps, masks),
                "class_sensitivity": torch.where(has_both, class_sensitivity(maps, masks, batch.other_masks).difference, math.nan),
            }
            rows += [{"method": method.name, **{k: float(v[i]) for k, v in columns.items()}} for i in range(len(t))]
    print(
        f"{args.model}, {args.scenes} scenes ({len(tasks)} items), seed {args.seed}; CPU ({platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}; {time.perf_counter() - start:.0f} s.\n"
        f"Command: `python {' '.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))}`\n"
    )
    print(markdown_table(summarize(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
