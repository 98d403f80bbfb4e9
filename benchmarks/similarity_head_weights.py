"""Does GMAR's map change with the reference on the real-photo similarity benchmark?

For one image of each composite of ``compare --task similarity`` (its first photo's
item; the image is the same for every photo of a composite), GMAR's head weights for
each of the nine references (:meth:`~captum_gmar.GMARAttribution.class_head_weights`),
split into prior, composite, reference and interaction parts
(:func:`~captum_gmar.evaluation.decompose_head_weights`), and the correlation, on the
patch grid, between the map for the first reference and the maps for the eight others.

    python benchmarks/similarity_head_weights.py --composites 16
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoImageProcessor

from captum_gmar import GMARAttribution
from captum_gmar.evaluation.data import collate
from captum_gmar.evaluation.diagnostics.weight_decomposition import decompose_head_weights
from captum_gmar.evaluation.metrics.sanity import map_correlation
from captum_gmar.evaluation.photo_similarity import photo_similarity
from captum_gmar.reference import load_reference_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--composites", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="as compare's --seed")
    parser.add_argument("--norms", default="l1,l2")
    parser.add_argument("--centers", default="none,references")
    args = parser.parse_args(argv)
    backbone = load_reference_model("dinov2-small-backbone")
    processor = AutoImageProcessor.from_pretrained(backbone.name_or_path, local_files_only=True)
    for center in args.centers.split(","):
        bench = photo_similarity(backbone, processor, args.composites, seed=args.seed, center=center)
        tasks = bench.tasks
        first = [i for i in range(len(tasks)) if i == 0 or tasks.composite[i] != tasks.composite[i - 1]]
        x = collate([tasks[i] for i in first]).pixel_values
        references = bench.model.num_labels
        for norm in args.norms.split(","):
            gmar = GMARAttribution(bench.model, norm=norm)
            shares = decompose_head_weights(gmar.class_head_weights(x, internal_batch_size=8)).shares.tolist()
            maps = [gmar.attribute(x, target=k, internal_batch_size=8)[:, 0] for k in range(references)]
            corr = torch.stack([map_correlation(maps[0], maps[k], backbone.config.patch_size) for k in range(1, references)], 1)
            print(
                f"center={center} GMAR ({norm}): head weights' deviation from uniform: prior {shares[0]:.3f}, composite "
                f"{shares[1]:.3f}, reference {shares[2]:.3f}, interaction {shares[3]:.3f}; map correlation, reference 0 "
                f"against the others: mean {corr.mean():.5f}, lowest {corr.min():.5f} ({len(x)} composites)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
