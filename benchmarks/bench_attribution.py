"""Speed and memory of GMAR next to the model's own passes and the other methods.

For each model config, attention implementation and batch size it measures the model's
forward, forward+backward (gradient w.r.t. the input, no parameter gradients), GMAR,
attention rollout, raw attention, GAE, token Grad-CAM, AttnLRP, CP-LRP, Captum's Saliency
and IntegratedGradients (50 steps, the fastest of a few internal batch sizes), on one
device, in one process: median wall time over repeats after
a warm-up, images per second, and peak extra memory (CUDA: allocated; CPU: resident set
size, sampled). It prints a Markdown table and writes it with the device, the library
versions and the command.

    python benchmarks/bench_attribution.py --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import captum
import torch
import transformers
from captum.attr import IntegratedGradients, Saliency
from tqdm.auto import tqdm

from captum_gmar import (
    CPLRP,
    AttentionRollout,
    AttnLRP,
    GenericAttentionExplainability,
    GMARAttribution,
    RawAttention,
    TokenGradCAM,
)
from captum_gmar.evaluation.cost import measure_cost
from captum_gmar.vit.model import VisionTransformer

CONFIGS: dict[str, Callable[[], transformers.PretrainedConfig] | None] = {
    "reference": None,  # the bundled model, 64 px
    "dinov2-small": None,  # the pretrained DINOv2-S/14 reference classifier, 112 px (the pretrained extra)
    "vit-b16": lambda: transformers.ViTConfig(num_labels=1000),  # 224 px, 12 x 12 heads, 768 wide
    "vit-l16": lambda: transformers.ViTConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, num_labels=1000
    ),
    # BEiT-B/16 with a relative position bias per layer: attention captured at the kernel
    "beit-b16": lambda: transformers.BeitConfig(use_relative_position_bias=True, num_labels=1000),
}
#: the input size where it is not the config's ``image_size`` (DINOv2's position embeddings
#: are for 518 px; the reference classifier was trained, and is used, at 112 px)
INPUT_SIZES = {"dinov2-small": (112, 112)}


def load(name: str, attn: str, device: torch.device) -> torch.nn.Module:
    if CONFIGS[name] is None:
        from captum_gmar.reference import load_reference_model

        return load_reference_model("vit-tiny" if name == "reference" else name, device=device, attn_implementation=attn)
    config = CONFIGS[name]()
    config._attn_implementation = attn
    torch.manual_seed(0)
    model_class = transformers.BeitForImageClassification if name.startswith("beit") else transformers.ViTForImageClassification
    return model_class(config).to(device).eval()


def forward_backward(vit: VisionTransformer, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The floor GMAR is measured against: one forward and one backward to the input."""
    x = x.detach().requires_grad_(True)
    logits = vit.logits(x)
    return torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)[0]


def method_calls(model: torch.nn.Module, vit: VisionTransformer, x: torch.Tensor, target: torch.Tensor) -> dict[str, Callable[[], object]]:
    """One zero-argument call per method key (IG aside, timed over internal batch sizes)."""

    def no_grad_logits() -> torch.Tensor:
        with torch.no_grad():
            return vit.logits(x)

    return {
        "forward": no_grad_logits,
        "forward+backward": lambda: forward_backward(vit, x, target),
        "gmar": lambda: GMARAttribution(model).attribute(x, target=target),
        "rollout": lambda: AttentionRollout(model).attribute(x, target=target),
        "raw-attention": lambda: RawAttention(model).attribute(x, target=target),
        "gae": lambda: GenericAttentionExplainability(model).attribute(x, target=target),
        "gradcam": lambda: TokenGradCAM(model).attribute(x, target=target),
        "attnlrp": lambda: AttnLRP(model).attribute(x, target=target),
        "cplrp": lambda: CPLRP(model).attribute(x, target=target),
        "saliency": lambda: Saliency(vit.logits).attribute(x.detach().requires_grad_(True), target=target),
    }


def report(rows: list[tuple], device: torch.device, argv: list[str] | None) -> str:
    """The Markdown table of ``rows`` with the ratios within each cell, the device and the command."""
    lines = [
        "| model | attention | batch | method | median time (s) | images/s | peak extra memory (MiB) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {a} | {b} | {m} | {t:.4f} | {ips:.1f} | {mem:.0f} | {note} |" for n, a, b, m, t, ips, mem, note in rows]
    ratios = ["", "Ratios within one cell (same model, attention and batch):", ""]
    by_cell: dict[tuple, dict[str, float]] = {}
    for n, a, b, m, t, *_ in rows:
        by_cell.setdefault((n, a, b), {})[m] = t
    for (n, a, b), times in by_cell.items():
        if "forward+backward" in times:
            floor = times["forward+backward"]
            parts = [f"{m} / forward+backward = {times[m] / floor:.2f}" for m in ("gmar", "attnlrp", "cplrp") if m in times]
            if "ig" in times and "gmar" in times:
                parts.append(f"IG / GMAR = {times['ig'] / times['gmar']:.1f}")
            if parts:
                ratios.append(f"- {n}, {a}, batch {b}: " + "; ".join(parts))
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    header = [
        f"Device: {device_name}. torch {torch.__version__}, transformers {transformers.__version__}, captum {captum.__version__}, Python {platform.python_version()}.",
        f"Command: `python {' '.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))}` ({time.strftime('%Y-%m-%d')}).",
        "",
    ]
    return "\n".join(header + lines + ratios) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="reference,vit-b16,vit-l16")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--attn", default="sdpa,eager")
    parser.add_argument("--methods", default="forward,forward+backward,gmar,rollout,gae,ig")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ig-internal-batch-sizes", default="32,128,512")
    parser.add_argument("--max-images", type=int, default=64, help="skip cells whose batch exceeds this for the model")
    parser.add_argument("--max-ig-images", type=int, default=800, help="skip IG when batch * 50 steps exceeds this")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="Markdown file to write")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu"))
    methods = args.methods.split(",")
    rows = []
    cells = [(m, a, int(b)) for m in args.models.split(",") for a in args.attn.split(",") for b in args.batch_sizes.split(",")]
    for name, attn, batch in tqdm(cells, desc="benchmark"):
        if batch > args.max_images and CONFIGS[name] is not None:
            continue
        model = load(name, attn, device)
        vit = VisionTransformer(model)
        for param in model.parameters():  # the baseline computes no parameter gradients either
            param.requires_grad_(False)
        size = INPUT_SIZES.get(name, vit.image_size)
        x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device, vit.parameter.dtype)
        target = torch.arange(batch, device=device) % vit.num_labels
        runs = method_calls(model, vit, x, target)
        results = {}
        for method in methods:
            if method == "ig":
                if batch * 50 > args.max_ig_images:
                    continue
                ig = IntegratedGradients(vit.logits)
                best = None
                for internal in map(int, args.ig_internal_batch_sizes.split(",")):
                    xi = x.detach().requires_grad_(True)
                    cost = measure_cost(
                        ig.attribute,
                        xi,
                        device=device,
                        target=target,
                        n_steps=50,
                        internal_batch_size=internal,
                        repeats=1,
                        warmup=0,
                    )
                    if best is None or cost.seconds_median < best[0].seconds_median:
                        best = (cost, internal)
                results["ig"] = best[0]
                results["ig_internal_batch_size"] = best[1]
                continue
            results[method] = measure_cost(runs[method], device=device, repeats=args.repeats, warmup=1)
        for method, cost in results.items():
            if method == "ig_internal_batch_size":
                continue
            note = f"internal_batch_size={results['ig_internal_batch_size']}" if method == "ig" else ""
            rows.append((name, attn, batch, method, cost.seconds_median, batch / cost.seconds_median, cost.peak_memory_bytes / 2**20, note))
        del model, vit
        if args.out:  # after every cell, so that a long run interrupted keeps what it measured
            Path(args.out).write_text(report(rows, device, argv))
    print(report(rows, device, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
