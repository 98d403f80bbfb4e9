"""CUDA kernels, device time and wall time of one GMAR call against one forward and backward pass.

ViT-B/16 (``transformers.ViTConfig(num_labels=1000)``, sdpa, random weights, frozen) at
batch 1 and 8: three warm-up calls, then one call under ``torch.profiler`` (its CUDA
events: kernels and their device time), then the median wall time of 20 calls, each
closed by ``torch.cuda.synchronize``. Run from the root of the tree to measure, with that
tree importable; the argument names it in the output:

    PYTHONPATH=. python docs/results/h200-2026-11-28/kernels.py new >> kernels.jsonl
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

from captum_gmar import GMARAttribution


def measure(call: Callable[[], object]) -> dict[str, float]:
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    times = []
    for _ in range(20):
        torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {
        "kernels": sum(e.count for e in events),
        "gpu_ms": sum(e.self_device_time_total for e in events) / 1e3,
        "wall_ms": sorted(times)[len(times) // 2] * 1e3,
    }


def main() -> None:
    torch.manual_seed(0)
    config = transformers.ViTConfig(num_labels=1000, attn_implementation="sdpa")
    model = transformers.ViTForImageClassification(config).eval().cuda().requires_grad_(False)
    gmar = GMARAttribution(model)
    out: dict[str, object] = {"tree": sys.argv[1]}
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224, device="cuda")
        target = torch.zeros(batch, dtype=torch.long, device="cuda")

        def forward_backward(x: torch.Tensor = x) -> object:
            inputs = x.clone().requires_grad_(True)
            return torch.autograd.grad(model(pixel_values=inputs).logits[:, 0].sum(), inputs)

        def explain(x: torch.Tensor = x, target: torch.Tensor = target) -> object:
            return gmar.attribute(x, target=target)

        out[f"fb_b{batch}"] = measure(forward_backward)
        out[f"gmar_b{batch}"] = measure(explain)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
