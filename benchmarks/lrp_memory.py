"""Where AttnLRP's and CP-LRP's memory goes, next to one forward and backward pass (CPU).

For each attention implementation and batch size, on the dinov2-small reference model at
112 px (parameters held constant, as in ``bench_attribution.py``):

- what the autograd graph still holds when the forward pass is over (what the backward
  pass will read): the distinct storages saved by its nodes, parameters aside, grouped by
  the kind of node that saved them, for the plain pass and under each rule set;
- the exact peak increase of the resident set of one call (freed heap returned to the
  system first, then the kernel's peak reset: :func:`~captum_gmar.core.memory.peak_resident_increase`)
  of forward+backward, AttnLRP and CP-LRP, after a warm-up call; the part of the peak the
  graph does not explain is the passes' temporaries, the gradient and the output.

``--keep-value-graph`` is the ablation of the scaled-gradient rules taking their value
detached (:func:`captum_gmar.core.lrp_rules._scaled`): the value is passed as it is, so
that each activation's own graph stays alive beside the identity rule's ratio.

    python benchmarks/lrp_memory.py --attn sdpa,eager --batch-sizes 8,32
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import captum
import torch
import transformers
from bench_attribution import forward_backward

from captum_gmar import CPLRP, AttnLRP
from captum_gmar.core import lrp_rules
from captum_gmar.core.memory import peak_resident_increase
from captum_gmar.evaluation.cost import _return_freed_blocks_to_the_system
from captum_gmar.reference import load_reference_model
from captum_gmar.vit.model import VisionTransformer
from captum_gmar.vit.model_state import evaluating, frozen_parameters
from captum_gmar.vit.propagation import relevance_rules

MIB = 2**20


def held_by_graph(root: torch.autograd.graph.Node | None, skip: set[int]) -> dict[str, int]:
    """Bytes of the distinct storages the graph from ``root`` saved, by the kind of node
    that saved them (a storage saved by several nodes counts once, for the first met);
    storages whose address is in ``skip`` (the parameters) are left out."""
    seen_nodes: set[int] = set()
    seen_storages: set[int] = set()
    by_kind: dict[str, int] = collections.defaultdict(int)
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        kind = type(node).__name__
        tensors = []
        for name in dir(node):
            if name.startswith("_saved_"):
                try:
                    value = getattr(node, name)
                except RuntimeError:  # freed already
                    continue
                values = value if isinstance(value, (list, tuple)) else [value]
                tensors += [t for t in values if isinstance(t, torch.Tensor)]
        if not kind.endswith("Backward0") and hasattr(node, "saved_tensors"):  # an autograd.Function's
            tensors += [t for t in node.saved_tensors if t is not None]
        for tensor in tensors:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen_storages and storage.data_ptr() not in skip:
                seen_storages.add(storage.data_ptr())
                by_kind[kind] += storage.nbytes()
        stack += [next_node for next_node, _ in node.next_functions]
    return dict(by_kind)


def graph_breakdown(model: torch.nn.Module, vit: VisionTransformer, x: torch.Tensor, rules: AbstractContextManager) -> dict[str, int]:
    """:func:`held_by_graph` after one forward pass under ``rules``, as AttnLRP runs it."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with evaluating(model), rules, frozen_parameters(), torch.enable_grad():
        logits = vit.logits(x.clone().requires_grad_(True))
    return held_by_graph(logits.grad_fn, parameters)


def measure_cell(model: torch.nn.Module, vit: VisionTransformer, attn: str, batch: int, repeats: int) -> list[str]:
    """The Markdown rows of one model, attention implementation and batch size."""
    x = torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    target = torch.arange(batch) % vit.num_labels
    rule_sets: dict[str, Callable[[], AbstractContextManager]] = {
        "forward+backward": nullcontext,
        "attnlrp": lambda: relevance_rules(model, vit.blocks, variant="attnlrp"),
        "cplrp": lambda: relevance_rules(model, vit.blocks, variant="cplrp"),
    }
    calls: dict[str, Callable[[], object]] = {
        "forward+backward": lambda: forward_backward(vit, x, target),
        "attnlrp": lambda: AttnLRP(model).attribute(x, target=target),
        "cplrp": lambda: CPLRP(model).attribute(x, target=target),
    }
    lines = [f"### dinov2-small, {attn}, batch {batch}", ""]
    lines += [
        "| pass | held by the graph after the forward pass (MiB), by node | total held (MiB) | peak extra memory (MiB) | peak - held (MiB) |"
    ]
    lines += ["|---|---|---|---|---|"]
    for method, call in calls.items():
        call()  # warm-up
        peak = min(peak_resident_increase(call) for _ in range(repeats))
        held = graph_breakdown(model, vit, x, rule_sets[method]())
        parts = ", ".join(f"{kind} {size / MIB:.1f}" for kind, size in sorted(held.items(), key=lambda kv: -kv[1]))
        total = sum(held.values())
        lines.append(f"| {method} | {parts} | {total / MIB:.1f} | {peak / MIB:.0f} | {(peak - total) / MIB:.0f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attn", default="sdpa,eager")
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep-value-graph", action="store_true", help="ablation: the rules' values not detached")
    args = parser.parse_args(argv)
    if args.keep_value_graph:
        lrp_rules._scaled = lambda function, x, value, scale: function.apply(x, value, scale)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    _return_freed_blocks_to_the_system()  # as measure_cost: freed tensors leave the resident set

    lines = [
        f"Device: CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads). torch {torch.__version__}, "
        f"transformers {transformers.__version__}, captum {captum.__version__}, Python {platform.python_version()}.",
        f"Command: `python {' '.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))}` ({time.strftime('%Y-%m-%d')}).",
        "",
    ]
    for attn in args.attn.split(","):
        model = load_reference_model("dinov2-small", attn_implementation=attn)
        for param in model.parameters():
            param.requires_grad_(False)
        vit = VisionTransformer(model)
        for batch in map(int, args.batch_sizes.split(",")):
            cell = measure_cell(model, vit, attn, batch, args.repeats)
            print("\n".join(cell), flush=True)
            lines += cell
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
