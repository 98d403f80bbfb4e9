"""The memory estimate for a CUDA device against the live tensors' peak on model families outside its fit.

Random 6-layer, 384-wide, 6-head models at 224 px, batch 2: BEiT (a relative position
bias, which sdpa keeps per layer), DeiT with its distillation token, and the CLIP vision
tower with its own ``quick_gelu`` and, as the ablation, with ``gelu``; every method, sdpa
and eager. The peak is :func:`~captum_gmar.core.memory.peak_live_bytes` (what a caching
allocator such as CUDA's holds); the estimate is ``estimate_bytes(shape, device="cuda")``.

    python benchmarks/memory_families.py
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import transformers

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, RawAttention, TokenGradCAM
from captum_gmar.core.memory import peak_live_bytes

METHODS = [GMARAttribution, AttentionRollout, GenericAttentionExplainability, AttnLRP, CPLRP, RawAttention, TokenGradCAM]
SHAPE = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536}


def families() -> dict[str, Callable[[str], torch.nn.Module]]:
    """Each family's model for an attention implementation."""

    def clip(activation: str) -> Callable[[str], torch.nn.Module]:
        vision = {**SHAPE, "patch_size": 16, "image_size": 224, "hidden_act": activation}
        return lambda attn: transformers.CLIPForImageClassification(
            transformers.CLIPConfig(vision_config=vision, num_labels=10, attn_implementation=attn)
        )

    return {
        "BEiT": lambda attn: transformers.BeitForImageClassification(
            transformers.BeitConfig(**SHAPE, use_relative_position_bias=True, num_labels=10, attn_implementation=attn)
        ),
        "DeiT (distilled)": lambda attn: transformers.DeiTForImageClassificationWithTeacher(
            transformers.DeiTConfig(**SHAPE, num_labels=10, attn_implementation=attn)
        ),
        "CLIP (quick_gelu)": clip("quick_gelu"),
        "CLIP (gelu)": clip("gelu"),
    }


def main() -> int:
    print("| model | attention | method | live peak (MiB) | estimate (MiB) | estimate / peak |")
    print("|---|---|---|---:|---:|---|")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for name, make in families().items():
        for attn in ("sdpa", "eager"):
            torch.manual_seed(0)
            model = make(attn).eval()
            for method in METHODS:
                explainer = method(model)
                explainer.attribute(x[:1], target=0)  # warm-up: lazily built kernels
                peak = peak_live_bytes(partial(explainer.attribute, x, target=0))
                estimate = explainer.estimate_bytes(x.shape, device="cuda")
                print(
                    f"| {name} | {attn} | {method.get_name()} | {peak / 2**20:.1f} | {estimate / 2**20:.1f} | {estimate / peak:.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
