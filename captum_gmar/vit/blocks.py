"""The parts of a vision transformer the package works with, found by name: its attention
blocks (the projections, the heads, the output projection), the layer holding a block,
and the token groups a classifier reads (its pooling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from torch import nn

#: A group of tokens a classifier can read: the class token, the distillation token
#: (DeiT), the mean of the patch tokens, the mean of all tokens, or the attention of an
#: attention-pooling head over the tokens (SigLIP's image embedding; mean over its heads).
TokenGroup = Literal["class", "distillation", "patches", "tokens", "probe"]
#: What a classifier reads from the last layer's tokens: the average, with equal weights,
#: of these groups (each itself an average over its tokens).
Pooling = tuple[TokenGroup, ...]
CaptureKind = Literal["projections", "kernel"]
#: A transformers or timm model, or a part of one: its submodules and configuration are
#: found by name at run time (``model.config``, ``model.vision_model``, timm's
#: ``patch_embed``), which :class:`torch.nn.Module`'s annotations cannot follow.
ForeignModule = Any
#: ``"auto"``: the model's own pooling where it reads one group of tokens, else the class
#: token; ``"cls"``: the class token; ``"model"``: the model's own pooling.
Readout = Literal["auto", "cls", "model"]


@dataclass(frozen=True)
class AttentionBlock:
    """One self-attention block.

    ``attention`` computes ``softmax(q k^T s + b) V`` for all heads; its first input is the
    normalised tokens. ``output`` is the module whose input is the heads' outputs
    concatenated, ``(B, T, H * d)`` (``o_proj``/``out_proj`` in transformers 5,
    ``attention.output.dense`` in 4.x, timm's ``attn.norm`` before ``attn.proj``).
    ``query``, ``key``, ``value`` and ``scaling`` are the projections and the score scale,
    set where the attention can be rebuilt from them.
    """

    attention: nn.Module
    output: nn.Module
    num_heads: int
    query: nn.Module | None = None
    key: nn.Module | None = None
    value: nn.Module | None = None
    scaling: float | None = None


def pooling_spans(pooling: Pooling, num_prefix_tokens: int, num_tokens: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` token ranges of the groups of ``pooling`` (all but ``"probe"``)."""
    spans = {"class": (0, 1), "distillation": (1, 2), "patches": (num_prefix_tokens, num_tokens), "tokens": (0, num_tokens)}
    return [spans[group] for group in pooling if group != "probe"]


def parse_pooling(spec: str) -> Pooling:
    """``"class+patches"`` -> ``("class", "patches")``, checked against :data:`TokenGroup`."""
    groups = tuple(part.strip() for part in spec.split("+"))
    allowed = [group for group in get_args(TokenGroup) if group != "probe"]  # the probe is SigLIP's pooling head's
    if any(group not in allowed for group in groups) or len(set(groups)) != len(groups):
        raise ValueError(f"token_pooling must be '+'-joined distinct groups among {', '.join(allowed)}; got {spec!r}")
    return cast(Pooling, groups)  # each group checked above


def find_attention_blocks(vision: nn.Module) -> list[AttentionBlock]:
    """Attention blocks of a vision transformer, first layer first.

    transformers 5 names the projections ``q_proj/k_proj/v_proj`` and ``o_proj`` (CLIP and
    SigLIP: ``out_proj``) on one module; 4.x has ``attention.{query,key,value}`` and
    ``output.dense`` under an outer module; timm has a fused ``qkv`` (or ``q_proj`` ...)
    and ``proj``, with ``norm`` between the heads' outputs and ``proj``.
    """
    blocks = []
    modules: list[ForeignModule] = list(vision.modules())
    for module in modules:
        if all(hasattr(module, n) for n in ("q_proj", "k_proj", "v_proj")) and hasattr(module, "o_proj") | hasattr(module, "out_proj"):
            output = module.o_proj if hasattr(module, "o_proj") else module.out_proj
            blocks.append(_hf_block(module, module.q_proj, module.k_proj, module.v_proj, output))
        elif hasattr(module, "output") and hasattr(getattr(module, "attention", None), "query"):
            inner = module.attention
            blocks.append(_hf_block(inner, inner.query, inner.key, inner.value, module.output.dense))
        elif hasattr(module, "proj") and hasattr(module, "fused_attn") and (hasattr(module, "qkv") or hasattr(module, "q_proj")):
            # timm's Attention and EvaAttention (not the latent query of an attention-pooling head)
            blocks.append(AttentionBlock(module, getattr(module, "norm", module.proj), module.num_heads))
    return blocks


def _hf_block(attention: ForeignModule, query: ForeignModule, key: nn.Module, value: nn.Module, output: nn.Module) -> AttentionBlock:
    heads = int(getattr(attention, "num_attention_heads", None) or attention.num_heads)
    head_dim = query.out_features // heads
    scaling = float(getattr(attention, "scaling", None) or getattr(attention, "scale", None) or head_dim**-0.5)
    return AttentionBlock(attention, output, heads, query, key, value, scaling)


def layer_of(model: nn.Module, attention: nn.Module) -> nn.Module:
    """The transformer layer holding ``attention``: the outermost module below the
    ``ModuleList`` (timm: ``Sequential``) of layers that contains it."""
    for layers in model.modules():
        if isinstance(layers, (nn.ModuleList, nn.Sequential)):  # transformers' layer lists, timm's blocks
            for layer in layers:
                if any(m is attention for m in layer.modules()):
                    return layer
    raise ValueError(f"cannot find the layer holding {type(attention).__name__}")
