"""Relative cost of the methods, timed interleaved so that a drift of the machine hits all alike.

``bench_attribution.py`` times each method in a block of repeats, one method after the
other; a machine whose speed drifts (another job, frequency scaling) then biases the
ratios between methods. Here every round calls each method once, in an order rotated
from round to round (ABC, BCA, CAB, ...), so each ratio is taken within one round, and
the report gives the median over rounds with the spread (the quartiles), next to each
method's median time.

    python benchmarks/bench_interleaved.py --model dinov2-small --batch-size 8 --rounds 30
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import captum
import torch
import transformers
from bench_attribution import INPUT_SIZES, forward_backward, load

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution
from captum_gmar.vit.model import VisionTransformer

METHODS = {"gmar": GMARAttribution, "rollout": AttentionRollout, "gae": GenericAttentionExplainability, "attnlrp": AttnLRP, "cplrp": CPLRP}


def calls(model: torch.nn.Module, names: list[str], x: torch.Tensor, target: torch.Tensor) -> dict[str, Callable[[], object]]:
    """One zero-argument call per method name (``forward+backward``: the model's own passes)."""
    made: dict[str, Callable[[], object]] = {}
    for name in names:
        if name == "forward+backward":
            vit = VisionTransformer(model)
            made[name] = lambda vit=vit: forward_backward(vit, x, target)
        else:
            explainer = METHODS[name](model)
            made[name] = lambda explainer=explainer: explainer.attribute(x, target=target)
    return made


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The 25th, 50th and 75th percentiles of ``values``."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2-small", help="a name of bench_attribution.CONFIGS")
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--methods", default="forward+backward,gmar,attnlrp,cplrp", help="the first is the one every ratio divides by")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)

    device = torch.device("cpu")
    model = load(args.model, args.attn, device)
    size = INPUT_SIZES.get(args.model, (224, 224) if args.model != "reference" else (64, 64))
    x = torch.randn(args.batch_size, 3, *size, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(args.batch_size, dtype=torch.long)
    names = args.methods.split(",")
    run = calls(model, names, x, target)
    for call in run.values():  # warm-up: thread pools, kernels, caches
        call()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            run[name]()
            times[name].append(time.perf_counter() - start)

    base = names[0]
    print(
        f"Device: CPU ({platform.machine()}, {torch.get_num_threads()} threads). torch {torch.__version__}, "
        f"transformers {transformers.__version__}, captum {captum.__version__}, Python {platform.python_version()}."
    )
    print(f"Command: `python {' '.join([sys.argv[0]] + argv)}` ({time.strftime('%Y-%m-%d')}).\n")
    print(f"{args.model}, {args.attn}, batch {args.batch_size}, {args.rounds} rounds, each method once per round in a rotated order.\n")
    print(f"| method | median time (s) | quartiles (s) | time / {base}, median over rounds | quartiles of the ratio |")
    print("|---|---|---|---|---|")
    for name in names:
        t1, t2, t3 = quartiles(times[name])
        r1, r2, r3 = quartiles([a / b for a, b in zip(times[name], times[base], strict=True)])
        print(f"| {name} | {t2:.4f} | {t1:.4f} to {t3:.4f} | {r2:.2f} | {r1:.2f} to {r3:.2f} |")
    if "gmar" in names:
        for name in names:
            if name not in (base, "gmar"):
                r1, r2, r3 = quartiles([a / b for a, b in zip(times[name], times["gmar"], strict=True)])
                print(f"\n{name} / gmar, median over rounds: {r2:.2f} (quartiles {r1:.2f} to {r3:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
