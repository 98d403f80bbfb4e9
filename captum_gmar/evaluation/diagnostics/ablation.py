"""Which layers and heads carry GMAR's difference from attention rollout.

GMAR with some of its head weights replaced by uniform ones (see
:func:`~captum_gmar.core.heads.uniform_except`): one layer made uniform at a time (if the
metric moves back to rollout's, that layer carried the difference), and one head left
with GMAR's weight while every other weight is uniform (if the metric moves to GMAR's,
that head alone carries it). The variants are compared methods like any other
(:func:`~captum_gmar.evaluation.runner.compare` with ``ablation=...``), and
:func:`ablation_table` pairs each with GMAR and with rollout on the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from ...core.heads import Norm, uniform_except
from ...methods.gmar import GMARAttribution
from ...names import ABLATION_KINDS
from ...vit.model import VisionTransformer, as_vision_transformer
from ..methods import Method

AblationKind = Literal["layers", "heads"]


def ablation_masks(num_layers: int, num_heads: int, kind: AblationKind) -> dict[str, Tensor]:
    """The ``keep`` masks ``(L, H)`` of :func:`~captum_gmar.core.heads.uniform_except`, by
    variant name: ``"layer l uniform"`` (every weight GMAR's but layer ``l``'s) for
    ``"layers"``, ``"only head l.h"`` (head ``h`` of layer ``l`` keeps GMAR's weight, the
    rest is uniform) for ``"heads"``."""
    if kind not in ABLATION_KINDS:
        raise ValueError(f"ablation kind must be one of {', '.join(ABLATION_KINDS)}, got {kind!r}")
    masks = {}
    for layer in range(num_layers):
        if kind == "layers":
            keep = torch.ones(num_layers, num_heads, dtype=torch.bool)
            keep[layer] = False
            masks[f"layer {layer} uniform"] = keep
            continue
        for head in range(num_heads):
            keep = torch.zeros(num_layers, num_heads, dtype=torch.bool)
            keep[layer, head] = True
            masks[f"only head {layer}.{head}"] = keep
    return masks


def ablation_methods(model_or_vit: nn.Module | VisionTransformer, kinds: Sequence[AblationKind], norm: Norm = "l1") -> list[Method]:
    """GMAR's ablated variants for a model (or one already wrapped in a
    :class:`~captum_gmar.vit.model.VisionTransformer`, which they then share), named
    ``"GMAR (L1), layer 3 uniform"`` and so on (see :func:`ablation_masks`), every layer of
    the model taking part."""
    vit = as_vision_transformer(model_or_vit)
    base = f"GMAR ({norm.upper()})"
    return [
        Method(f"{base}, {name}", GMARAttribution(vit, norm=norm, weight_transform=partial(uniform_except, keep=keep)), {})
        for kind in kinds
        for name, keep in ablation_masks(vit.num_layers, vit.num_heads, kind).items()
    ]
