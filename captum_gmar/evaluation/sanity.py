"""Sanity checks: does a map depend on the model, and does GMAR differ from rollout?

- Model randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018):
  re-initialise part of the model (the classifier head, or the last block) and compare
  a method's maps before and after. A map that stays the same does not explain what
  that part of the model learnt.
- The agreement of two methods' maps, item by item (GMAR against attention rollout).
- The entropy of GMAR's head weights: near 1 (uniform weights) GMAR is rollout.

Maps are compared on the model's patch grid (the mean over each patch), where the
patch-level methods have their resolution and upsampling adds no ties.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model_state import unwrap_model
from ..models import VisionTransformer
from ._stats import average_ranks, pearson

__all__ = ["head_weight_entropy", "layer_of", "map_correlation", "randomised_copy"]

Part = Literal["head", "last_block"]


def map_correlation(a: Tensor, b: Tensor, patch_size: int | tuple[int, int] = 1, rank: bool = False) -> Tensor:
    """Per-item correlation of two maps.

    Args:
        a, b: ``(B, H, W)`` maps of the same items.
        patch_size: average over patches of this size first (the model's patch size).
        rank: Spearman (ties share their average rank) instead of Pearson.

    Returns:
        ``(B,)`` float32 in ``[-1, 1]``; NaN for an item where either map is constant.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"map_correlation takes two (B, H, W) maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = (F.avg_pool2d(m.float().unsqueeze(1), patch_size).flatten(1) for m in (a, b.to(a.device)))
    if rank:
        x, y = average_ranks(x), average_ranks(y)
    return pearson(x, y, undefined=math.nan)


def head_weight_entropy(head_weights: Tensor) -> Tensor:
    """Normalised entropy of each layer's head weights: 1 for uniform weights (GMAR then
    equals rollout), 0 for all weight on one head.

    Args:
        head_weights: ``(B, L, H)``, non-negative, summing to 1 over heads (GMAR's).

    Returns:
        ``(B, L)`` float32 in ``[0, 1]``.
    """
    if head_weights.dim() != 3 or head_weights.shape[-1] < 2:
        raise ValueError(f"head_weights must be (B, L, H) with at least two heads, got {tuple(head_weights.shape)}")
    w = head_weights.float()
    return -(w * w.clamp_min(1e-30).log()).sum(-1) / math.log(w.shape[-1])


def randomised_copy(model: nn.Module, part: Part, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with ``part`` re-initialised; the model itself is untouched.

    ``"head"``: the classifier (``model.classifier``). ``"last_block"``: every module of
    the last transformer layer that has ``reset_parameters`` (its linear layers and
    norms; DINOv2's layer scale keeps its values). The initialisation is torch's default
    for each module, drawn from ``seed``.

    Raises:
        ValueError: the model has no ``classifier`` (for ``"head"``), or ``part`` is unknown.
    """
    if part not in ("head", "last_block"):
        raise ValueError(f"part must be 'head' or 'last_block', got {part!r}")
    clone = copy.deepcopy(unwrap_model(model))
    if part == "head":
        target = getattr(clone, "classifier", None)
        if not isinstance(target, nn.Module):
            raise ValueError(f"{type(clone).__name__} has no classifier module to re-initialise")
    else:
        target = layer_of(clone, VisionTransformer(clone).blocks[-1].attention)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        resettable: list[Any] = [m for m in target.modules() if hasattr(m, "reset_parameters")]  # each with that method
        if not resettable:
            raise ValueError(f"nothing in the {part} of {type(clone).__name__} can be re-initialised")
        for module in resettable:
            module.reset_parameters()
    return clone.eval()


def layer_of(model: nn.Module, attention: nn.Module) -> nn.Module:
    """The transformer layer holding ``attention``: the outermost module below the
    ``ModuleList`` (timm: ``Sequential``) of layers that contains it."""
    for layers in model.modules():
        if isinstance(layers, (nn.ModuleList, nn.Sequential)):  # transformers' layer lists, timm's blocks
            for layer in layers:
                if any(m is attention for m in layer.modules()):
                    return layer
    raise ValueError(f"cannot find the layer holding {type(attention).__name__}")
