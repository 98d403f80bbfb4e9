"""Peak memory of one attribution call on CPU against the package's estimate, per method and size.

Each measurement runs in a fresh process: it loads the model, runs the method once on a
small input (so that thread pools and lazily built kernels are in the baseline), and
measures the call with :func:`~captum_gmar.core.memory.peak_resident_increase` (freed heap
returned to the system, the kernel's peak resident set reset, then the peak's increase,
exact rather than sampled). The increase is what the call needed; the estimate is what
:meth:`estimate_bytes <captum_gmar.methods.base.ViTAttribution.estimate_bytes>` says
for it now (computed when the table is written, so a changed estimate is compared with
the same measurements).
With ``--calls 5`` each process makes five calls and keeps the median peak, as
``tests/core/test_memory.py`` does. With ``--measure live`` the peak is that of the tensors
alive at once (:func:`~captum_gmar.core.memory.peak_live_bytes`), what a caching
allocator such as CUDA's counts (``torch.cuda.max_memory_allocated``); the estimate is
then :meth:`estimate_bytes` for a ``cuda`` model of the same shape. ``--model vit-b16``
is a randomly initialised ``ViTConfig(num_labels=1000)`` (ViT-B/16 at 224 px), the model
of the CUDA figures in ``docs/benchmarks.md``; ``vit:L:D:H`` and ``dinov2:L:D:H`` random
ones of other shapes (:func:`load_model`). Measurements go to a JSON-lines file as they finish; ``--report-only`` writes the table
from it again. Linux only.

    python benchmarks/bench_memory.py --sizes 64,112,224,448,672,896,1024 --raw memory.jsonl --out memory.md
    python benchmarks/bench_memory.py --measure live --model vit-b16 --sizes 224 --batch-sizes 1,16 --raw live.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import captum
import torch
import transformers

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, RawAttention, TokenGradCAM
from captum_gmar.core.memory import gib, peak_live_bytes, peak_resident_increase
from captum_gmar.reference import load_reference_model

METHODS = {
    "gmar": GMARAttribution,
    "gmar-attention": partial(GMARAttribution, head_gradient="attention"),
    "gmar-gate": partial(GMARAttribution, head_gradient="gate"),
    "rollout": AttentionRollout,
    "gae": GenericAttentionExplainability,
    "attnlrp": AttnLRP,
    "cplrp": CPLRP,
    "raw": RawAttention,
    "gradcam": TokenGradCAM,
}


def load_model(name: str, attn: str) -> torch.nn.Module:
    """A reference model by name, or a random one: ``vit-b16`` (``ViTConfig(num_labels=1000)``),
    or ``vit:L:D:H`` (patch 16) and ``dinov2:L:D:H`` (patch 14), L layers, D wide, H heads."""
    family, *shape = ("vit:12:768:12" if name == "vit-b16" else name).split(":")
    if not shape:
        return load_reference_model(name, attn_implementation=attn)
    layers, hidden, heads = map(int, shape)
    torch.manual_seed(0)
    sizes = {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads}
    if family == "vit":
        config = transformers.ViTConfig(num_labels=1000, intermediate_size=4 * hidden, attn_implementation=attn, **sizes)
        return transformers.ViTForImageClassification(config).eval()
    config = transformers.Dinov2Config(num_labels=10, patch_size=14, image_size=224, attn_implementation=attn, **sizes)
    return transformers.Dinov2ForImageClassification(config).eval()


def measure(model_name: str, attn: str, method: str, batch: int, size: int, calls: int = 1, live: bool = False) -> dict[str, float]:
    """Peak resident-set increase, or with ``live`` peak of live tensors (bytes; the median
    over ``calls`` calls), and wall time (s) of one call, in this process."""
    explainer = METHODS[method](load_model(model_name, attn))
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(batch, dtype=torch.long)
    explainer.attribute(x[:1, :, :56, :56], target=0)  # warm-up: thread pools, kernels
    start = time.perf_counter()
    peak = peak_live_bytes if live else peak_resident_increase
    peaks = [peak(lambda: explainer.attribute(x, target=target, allow_slow=True)) for _ in range(calls)]
    return {"peak_bytes": statistics.median(peaks), "seconds": (time.perf_counter() - start) / calls, "calls": calls}


def report(rows: list[dict], argv: list[str]) -> str:
    """The Markdown table of ``rows`` with the estimate now, the device, versions and the command."""
    explainers: dict[tuple[str, str, str], object] = {}
    lines = [
        "| model | attention | method | batch | size (px) | tokens | measured peak (MiB) | estimate (MiB) | estimate / measured | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        key = (row["model"], row["attn"], row["method"])
        if key not in explainers:
            explainers[key] = METHODS[row["method"]](load_model(row["model"], row["attn"]))
        explainer = explainers[key]
        live = row.get("measure") == "live"  # against the estimate for a caching allocator's device
        estimate = explainer.estimate_bytes((row["batch"], 3, row["size"], row["size"]), device="cuda" if live else None)
        tokens = explainer.vit.num_tokens(row["size"], row["size"])
        lines.append(
            f"| {row['model']} | {row['attn']} | {row['method']} | {row['batch']} | {row['size']} | {tokens:,} | {row['peak_bytes'] / 2**20:,.0f} "
            f"| {estimate / 2**20:,.0f} | {estimate / row['peak_bytes']:.2f} | {row['seconds']:.1f} |"
        )
    header = [
        f"Device: CPU ({platform.machine()}, {torch.get_num_threads()} threads). torch {torch.__version__}, "
        f"transformers {transformers.__version__}, captum {captum.__version__}, Python {platform.python_version()}.",
        f"Command: `python {' '.join([sys.argv[0]] + argv)}` ({time.strftime('%Y-%m-%d')}).",
        "",
    ]
    return "\n".join(header + lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dinov2-small", help="a reference model (captum_gmar.names.REFERENCE_MODELS)")
    parser.add_argument("--attn", default="sdpa", help="the model's attention implementation")
    parser.add_argument("--methods", default=",".join(name for name in METHODS if not name.startswith("gmar-")))
    parser.add_argument("--sizes", default="64,112,224,448", help="square image sides in pixels")
    parser.add_argument("--batch-sizes", default="1")
    parser.add_argument("--raw", required=True, help="JSON-lines file the measurements are appended to")
    parser.add_argument("--out", default=None, help="Markdown file to write")
    parser.add_argument(
        "--calls", type=int, default=1, help="calls per process; the median peak is kept (tests/core/test_memory.py takes 5)"
    )
    parser.add_argument(
        "--measure", choices=("resident", "live"), default="resident", help="the peak resident set, or of tensors alive (as CUDA counts)"
    )
    parser.add_argument("--report-only", action="store_true", help="write the table from --raw without measuring")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "BATCH", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:  # the child process: one measurement, as JSON on stdout
        method, batch, size = args.one
        print(json.dumps(measure(args.model, args.attn, method, int(batch), int(size), args.calls, args.measure == "live")))
        return 0
    raw = Path(args.raw)
    if not args.report_only:
        for method in args.methods.split(","):
            for batch in map(int, args.batch_sizes.split(",")):
                for size in map(int, args.sizes.split(",")):
                    child = [sys.executable, __file__, "--model", args.model, "--attn", args.attn, "--raw", args.raw]
                    child += ["--calls", str(args.calls), "--measure", args.measure, "--one", method, str(batch), str(size)]
                    result = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                    row = {
                        "model": args.model,
                        "attn": args.attn,
                        "method": method,
                        "batch": batch,
                        "size": size,
                        "measure": args.measure,
                        **result,
                    }
                    print(f"{args.attn} {method} batch {batch} {size} px: {gib(row['peak_bytes'])} in {row['seconds']:.1f} s", flush=True)
                    with raw.open("a") as out:
                        out.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]
    table = report(rows, argv)
    if args.out:
        Path(args.out).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
