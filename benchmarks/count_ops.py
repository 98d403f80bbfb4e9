"""How many aten operations each method's call runs, against one forward and backward pass.

On a GPU at small batches every operation is a kernel launch the device waits on, so
the count, not the arithmetic, sets the time. The count is taken on the CPU with
``torch.profiler`` (every ``aten::`` event of ``key_averages()``, nested ones included),
after one warm-up call:

- the pass: ``VisionTransformer(model).logits(x)`` and ``torch.autograd.grad`` of the
  target's logit to the input;
- a method: ``Method(model).attribute(x, target=t)``, construction included.

The model is ``transformers.ViTConfig(num_labels=1000)`` (ViT-B/16, 224 px) with its
default sdpa attention and frozen parameters.

    python benchmarks/count_ops.py --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, RawAttention, TokenGradCAM
from captum_gmar.vit.model import VisionTransformer

METHODS: dict[str, Callable[[torch.nn.Module], object]] = {
    "GMAR (L1)": GMARAttribution,
    "attention rollout": AttentionRollout,
    "raw attention": RawAttention,
    "GAE": GenericAttentionExplainability,
    "token Grad-CAM": TokenGradCAM,
    "AttnLRP": AttnLRP,
    "CP-LRP": CPLRP,
}


def count_aten(call: Callable[[], object]) -> int:
    """The number of ``aten::`` operations one ``call`` runs (after one warm-up call)."""
    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    return sum(event.count for event in prof.key_averages() if event.key.startswith("aten::"))


def model(num_layers: int | None = None) -> torch.nn.Module:
    """ViT-B/16 with random weights, sdpa, frozen (``num_layers`` fewer layers for a quick count)."""
    config = transformers.ViTConfig(num_labels=1000, **({} if num_layers is None else {"num_hidden_layers": num_layers}))
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(config).eval()
    vit.requires_grad_(False)
    return vit


def counts(vit: torch.nn.Module, batch: int, methods: list[str]) -> dict[str, int]:
    """The pass's count and each method's, at ``batch`` images."""
    size = vit.config.image_size
    x = torch.randn(batch, 3, size, size)
    target = torch.arange(batch) % vit.config.num_labels
    wrapped = VisionTransformer(vit)

    def forward_backward() -> object:
        inputs = x.clone().requires_grad_(True)
        score = wrapped.logits(inputs).gather(1, target[:, None]).sum()
        return torch.autograd.grad(score, inputs)

    found = {"forward + backward": count_aten(forward_backward)}
    for name in methods:
        found[name] = count_aten(lambda name=name: METHODS[name](vit).attribute(x, target=target))  # type: ignore[attr-defined]
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", default="1", help="comma-separated batch sizes (default 1)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of: {', '.join(METHODS)}")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers than ViT-B's 12, for a quick look")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",")]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose among {list(METHODS)}")
    vit = model(args.layers)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; command: python {' '.join(sys.argv)}\n")
    print("| batch | call | aten operations | / forward + backward |")
    print("|---|---|---|---|")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        found = counts(vit, batch, methods)
        base = found["forward + backward"]
        for name, n in found.items():
            print(f"| {batch} | {name} | {n:,} | {n / base:.2f} |")


if __name__ == "__main__":
    main()
