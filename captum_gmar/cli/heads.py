"""``captum-gmar heads MAPS --model MODEL --cluster METHOD:CLASS:RANK --images FOLDER``:
which heads make a strategy's cluster differ from the rest of its class
(:func:`~captum_gmar.heads.locate_heads`), written to ``--out`` as ``heads.csv``,
``heads.json`` and ``heads.png``; with ``--remove K``, the model without the ``K`` heads
ranked first (:func:`~captum_gmar.heads.without_heads`), saved in ``OUT/model``."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from .arguments import folder, int_at_least
from .maps_options import HeadsOptions, cluster_and_model

#: what ``--out`` holds
FILES = ("heads.csv", "heads.json", "heads.png", "model")


def add_parser(commands: argparse._SubParsersAction, help: str) -> None:
    """``heads``' parser, among ``commands``."""
    parser = commands.add_parser("heads", help=help, description=help)
    parser.add_argument("maps", type=folder, help="a maps folder, as explain FOLDER (or explain_dataset) wrote it")
    parser.add_argument("--model", required=True, help="the model the job explained: a folder, or a bundled model's name")
    parser.add_argument(
        "--cluster",
        required=True,
        help="METHOD:CLASS:RANK, a cluster as explore ranks it with its defaults (e.g. gae:Shirt:1, 1 the most suspicious)",
    )
    parser.add_argument("--images", type=folder, required=True, help="the image folder the maps folder's job read")
    parser.add_argument("--out", default="heads", help="the folder to write (default heads): new, empty, or an earlier heads run's")
    parser.add_argument("--remove", type=int_at_least(1), default=None, help="save the model without the K heads ranked first in OUT/model")
    parser.add_argument(
        "--mode",
        choices=["zero", "mean"],
        default="zero",
        help="how --remove removes a head: zero (default: its output zeroed) or mean (replaced by its mean over the class's other images)",
    )
    parser.add_argument(
        "--max-images", type=int_at_least(1), default=256, help="the most images of the cluster, and of the rest, read (default 256)"
    )
    parser.add_argument(
        "--budget", type=int_at_least(1), default=None, help="heads ablated, by the largest gate-score contrast (default: all up to 144)"
    )
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="the draw of images beyond --max-images (default 0)")
    parser.set_defaults(options=HeadsOptions.from_arguments)


def run(options: HeadsOptions) -> None:
    """Locate the heads of ``options.cluster``; save the model without the first ones where asked."""
    from ..exploration.folder import STRATEGIES
    from .output import check_apart, check_output

    check_apart(options.out, {"the maps folder": options.maps, "--images": options.images}, nest_in=STRATEGIES)
    check_output(options.out, figure=False, files=FILES)
    import torch

    from .. import loading
    from ..exploration.page import DATA, HEADS, write_heads_list
    from ..files import claim_files, replacing, save_figure, write_atomic
    from ..heads import locate_heads, without_heads
    from ..heads.cluster import cluster_images
    from ..reference.inputs import load_image_processor
    from ..visualization import head_grids
    from ..vit.model import VisionTransformer

    cluster, model = cluster_and_model(options.maps, options.cluster, options.model)
    processor = load_image_processor(model)
    vit = VisionTransformer(model)
    print(
        f"locating the heads of {options.cluster} in {options.maps} with {loading.model_name(options.model)} "
        f"({vit.num_layers} layers of {vit.num_heads} heads)",
        flush=True,
    )
    found = cluster_images(cluster, options.images, processor, vit.image_size or (224, 224), options.max_images, options.seed)
    location = locate_heads(vit, found.members, found.others, cluster.target, budget=options.budget)
    out = Path(options.out)
    claim_files(out, FILES)
    rows = location.rows()
    with replacing(out / "heads.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    summary = {
        "maps": str(options.maps),
        "cluster": options.cluster,
        "class": cluster.target,
        "class_name": cluster.target_name,
        "cluster_size": len(cluster.members),
        "rest": len(cluster.others),
        "images": location.images,
        "reference_images": location.reference_images,
        "suspicion": cluster.suspicion,
        "flagged": cluster.flagged,
        "ranking": [list(head) for head in location.ranking],
        "agreement": location.agreement,
        "ablated": int(location.ablated.sum()),
    }
    grids = {"ablation effect (logit)": location.masking_effect, **{name: values for name, values in location.scores.items()}}
    save_figure(
        head_grids(grids, f"{options.cluster}: the cluster's {location.images} images against {location.reference_images} of its class"),
        out / "heads.png",
        dpi=110,
    )
    top = location.ranking[0]
    print(
        f"the head whose removal lowers the class's logit most on the cluster's images, beyond the rest's: layer {top[0]}, head {top[1]} "
        f"({float(location.masking_effect[top]):+.3f}); agreement with it, Spearman over the heads: "
        + ", ".join(f"{name} {a['spearman']:+.2f}" for name, a in location.agreement.items())
    )
    if options.remove is not None:
        heads = list(location.ranking[: options.remove])
        corrected = without_heads(model, heads, mode=options.mode, reference_images=found.others)
        corrected.save_pretrained(out / "model")
        processor.save_pretrained(out / "model")
        with torch.no_grad():
            before = [float(vit.logits(x)[:, cluster.target].mean()) for x in (found.members, found.others)]
            after = [float(VisionTransformer(corrected).logits(x)[:, cluster.target].mean()) for x in (found.members, found.others)]
        summary["removed"] = {"heads": [list(h) for h in heads], "mode": options.mode, "logit_before": before, "logit_after": after}
        print(
            f"saved the model without heads {', '.join(f'{layer}.{head}' for layer, head in heads)} ({options.mode}) in {out / 'model'}: the class's mean logit "
            f"on the cluster's images {before[0]:.3f} -> {after[0]:.3f}, on the rest {before[1]:.3f} -> {after[1]:.3f}"
        )
    write_atomic(out / "heads.json", json.dumps(summary, indent=1) + "\n")
    explored = out.resolve().parent.parent
    if out.resolve().parent.name == HEADS and (explored / DATA / "heads.js").is_file():  # into an explore folder: its page lists the run
        write_heads_list(explored)
    print(f"wrote {', '.join(f for f in FILES if (out / f).exists())} to {out}")
