"""The time guard's estimates against the real time of one attribution call, per method and size.

For each method and image side: the lower bound (:func:`~captum_gmar.core.memory.attention_seconds`),
the estimate from this device's measured throughput that the guard uses above
:data:`~captum_gmar.core.memory.MEASURE_ABOVE_SECONDS`
(:func:`~captum_gmar.methods.guard.timed_estimate`: two smaller images and the fit of
``a T^2 + b T``), and the time of the call itself, on a DINOv2-S/14-shaped classifier
(12 layers, 6 heads, 384 wide; random weights: the time does not depend on them).
Prints a Markdown table.

    python benchmarks/bench_time_estimate.py --sides 518,770,1022 --methods gmar,attnlrp
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import transformers

from captum_gmar import AttnLRP, GMARAttribution
from captum_gmar.core.memory import EXTRAPOLATION_MARGIN, attention_seconds
from captum_gmar.methods.guard import timed_estimate

METHODS = {"gmar": GMARAttribution, "attnlrp": AttnLRP}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", default="518,770,1022", help="image sides in pixels, comma-separated (multiples of 14)")
    parser.add_argument("--methods", default="gmar,attnlrp", help=f"comma-separated, of {', '.join(METHODS)}")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, num_labels=3)
    model = transformers.Dinov2ForImageClassification(config).eval()
    print(
        f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"transformers {transformers.__version__}\n"
    )
    print("| method | side (px) | tokens | lower bound (s) | extrapolation (s) | call (s) | call / extrapolation |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key in args.methods.split(","):
        explainer = METHODS[key](model)
        explainer.attribute(torch.zeros(1, 3, 224, 224), target=0, output="patches")  # thread pools and kernels warmed up
        for side in map(int, args.sides.split(",")):
            shape = (1, 3, side, side)
            vit = explainer.vit
            tokens = vit.num_tokens(side, side)
            bound = attention_seconds(1, tokens, vit.num_layers, vit.hidden_size, True, torch.device("cpu"))
            estimate, _ = timed_estimate(vit, shape, lambda x, e=explainer: e.attribute(x, target=0, output="patches", allow_slow=True))
            estimate /= EXTRAPOLATION_MARGIN  # the extrapolation itself
            start = time.perf_counter()
            explainer.attribute(torch.zeros(shape), target=0, output="patches", allow_slow=True)
            seconds = time.perf_counter() - start
            print(
                f"| {explainer.get_name()} | {side} | {tokens:,} | {bound:.1f} | {estimate:.1f} | {seconds:.1f} | {seconds / estimate:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
