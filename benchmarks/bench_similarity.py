"""What a similarity explanation costs next to a class explanation, timed interleaved.

The same pretrained DINOv2-S/14 weights explained two ways on the same 224 px inputs:
for a class (``Dinov2ForImageClassification``, the ``dinov2-small`` reference classifier's
head on the backbone) and for the cosine similarity of its embedding to ``K`` reference
embeddings (``Dinov2Model`` with ``references=``). Each repeat times every method once
on each, alternating which goes first (ABBA...), so that load on the machine affects both
alike; the table gives the median time per image of each, the ratio of medians, and the
spread (the ratio's 10th and 90th percentiles over repeats).

    python benchmarks/bench_similarity.py --repeats 7
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import transformers

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, RawAttention, TokenGradCAM
from captum_gmar.reference import load_reference_model

METHODS = {
    "GMAR (L1)": GMARAttribution,
    "Attention rollout": AttentionRollout,
    "Raw attention": RawAttention,
    "GAE": GenericAttentionExplainability,
    "Grad-CAM": TokenGradCAM,
    "AttnLRP": AttnLRP,
    "CP-LRP": CPLRP,
}


def timed(call, x: torch.Tensor, target: torch.Tensor) -> float:
    start = time.perf_counter()
    call.attribute(x, target=target)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--references", type=int, default=9, help="K reference embeddings")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    classifier = load_reference_model("dinov2-small")
    backbone = load_reference_model("dinov2-small-backbone")
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    with torch.no_grad():
        references = backbone(pixel_values=torch.randn(args.references, 3, args.size, args.size)).pooler_output
    target = torch.arange(args.batch_size) % args.references
    rows = []
    for name, cls in METHODS.items():
        pair = {"class": cls(classifier), "similarity": cls(backbone, references=references)}
        for method in pair.values():  # warm-up
            timed(method, x, target)
        times: dict[str, list[float]] = {"class": [], "similarity": []}
        for repeat in range(args.repeats):
            order = ["class", "similarity"] if repeat % 2 == 0 else ["similarity", "class"]
            for kind in order:
                times[kind].append(timed(pair[kind], x, target) / args.batch_size)
        ratios = sorted(s / c for s, c in zip(times["similarity"], times["class"]))
        spread = (ratios[len(ratios) // 10], ratios[-1 - len(ratios) // 10])
        median = {kind: statistics.median(values) for kind, values in times.items()}
        rows.append((name, median["class"], median["similarity"], median["similarity"] / median["class"], spread))
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    print(
        f"Device: CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}, transformers {transformers.__version__}"
    )
    print(f"Command: `python benchmarks/bench_similarity.py {' '.join(sys.argv[1:] if argv is None else argv)}`")
    print(f"Batch {args.batch_size}, {args.size} x {args.size} px, {args.references} references, {args.repeats} interleaved repeats\n")
    print("| method | class: ms / image | similarity: ms / image | similarity / class | ratio, 10th-90th percentile |")
    print("|---|---|---|---|---|")
    for name, cls_time, sim_time, ratio, (low, high) in rows:
        print(f"| {name} | {cls_time * 1000:.0f} | {sim_time * 1000:.0f} | {ratio:.2f} | {low:.2f}-{high:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
