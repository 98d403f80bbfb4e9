"""How far each deletion baseline moves the similarity of the benchmark's composites.

A deletion curve is only informative if removing everything moves the score: for each
composite photo of ``compare --task similarity`` it prints the mean cosine to its
reference for the composite itself, for the composite blurred (the ``"blur"`` baseline)
and for the mean image (``"zero"``, zeros in normalised pixels), with the plain and the
centred cosine, and the mean cosine to the references of photos not in the composite,
the level at which nothing of the photo is left.

    python benchmarks/similarity_baselines.py --composites 40
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import AutoImageProcessor

from captum_gmar.evaluation.data import collate
from captum_gmar.evaluation.metrics.faithfulness import blur
from captum_gmar.evaluation.photo_similarity import photo_similarity
from captum_gmar.reference import load_reference_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--composites", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="as compare's --seed")
    args = parser.parse_args(argv)
    backbone = load_reference_model("dinov2-small-backbone")
    processor = AutoImageProcessor.from_pretrained(backbone.name_or_path, local_files_only=True)
    print(f"Command: `python benchmarks/similarity_baselines.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print("| cosine | composite | blurred (`blur`) | mean image (`zero`) | photos not in the composite |")
    print("|---|---|---|---|---|")
    for center in ("none", "references"):
        bench = photo_similarity(backbone, processor, args.composites, seed=args.seed, center=center)
        batch = collate([bench.tasks[i] for i in range(len(bench.tasks))])
        with torch.no_grad():
            scores = {name: bench.model(images) for name, images in (("image", batch.pixel_values), ("blur", blur(batch.pixel_values)))}
            scores["zero"] = bench.model(torch.zeros_like(batch.pixel_values[:1])).expand_as(scores["image"])
        own = {name: value.gather(1, batch.targets[:, None]).mean().item() for name, value in scores.items()}
        present = torch.zeros_like(scores["image"], dtype=torch.bool)
        composites = [info["composite"] for info in batch.info]
        for row, composite in enumerate(composites):
            present[row, [t for t, c in zip(batch.targets.tolist(), composites) if c == composite]] = True
        absent = scores["image"][~present].mean().item()
        name = "plain" if center == "none" else "centred on the references' mean"
        print(f"| {name} | {own['image']:.3f} | {own['blur']:.3f} | {own['zero']:.3f} | {absent:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
