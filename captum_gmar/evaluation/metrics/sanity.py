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

from ...core.correlation import average_ranks, pearson
from ...methods.gmar import GMARAttribution
from ...vit.blocks import layer_of
from ...vit.model import VisionTransformer
from ...vit.model_state import unwrap_model
from ..diagnostics.weight_decomposition import class_share
from ..methods import Method, build_methods
from .base import Column, MetricGroup, MetricInputs
from .invariance import check_same_function, head_scales, map_change, reparametrised_copy

__all__ = ["head_weight_entropy", "map_correlation", "randomised_copy"]

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


#: the invariance column rescales every head by a factor in [1 / this, this]
INVARIANCE_SCALE = 100.0


class Sanity(MetricGroup):
    """Randomisation and invariance checks, on the first ``robustness_limit`` items (NaN for
    the others): each map's correlation with attention rollout's, and with the same
    method's on the model with its classifier head or its last block re-initialised (on
    the patch grid and on pixels); how much it changes when every head is rescaled without
    changing the function (:mod:`.invariance`); GMAR's head-weight entropy and the share of
    its weights' deviation from uniform that changes with the class (every class
    explained: one more backward pass per class). The re-initialised and rescaled copies
    are built once per comparison."""

    key = "sanity"
    columns = (
        Column("rollout_correlation", "Pearson correlation with attention rollout's map, on the patch grid"),
        Column(
            "randomised_head_correlation",
            "Spearman correlation with the map after re-initialising the classifier head (lower: the map depends on it)",
            "lower",
        ),
        Column(
            "randomised_block_correlation",
            "Spearman correlation with the map after re-initialising the last block (lower: the map depends on it)",
            "lower",
        ),
        Column("randomised_head_pixel_correlation", "the same as randomised_head_correlation on pixels instead of the patch grid", "lower"),
        Column(
            "randomised_block_pixel_correlation", "the same as randomised_block_correlation on pixels instead of the patch grid", "lower"
        ),
        Column(
            "invariance",
            "Map change (total variation on the patch grid) when every head is rescaled, the function kept the same "
            "(0: implementation-invariant; see evaluation.invariance)",
            "lower",
        ),
        Column("head_entropy", "Normalised entropy of the head weights, mean over layers (1: uniform, GMAR = rollout; GMAR only)"),
        Column(
            "head_weight_class_share",
            "Share of the head weights' squared deviation from uniform that changes with the explained class, every class explained (GMAR only)",
        ),
    )

    def __init__(self, vit: VisionTransformer, methods: list[Method], settings: Any) -> None:
        super().__init__(vit, methods, settings)
        keys, seed = settings.methods, settings.seed
        options: dict[str, Any] = {
            "ig_steps": settings.ig_steps,
            "ig_internal_batch_size": settings.ig_internal_batch_size,
            "relevance_map": settings.relevance_map,
        }
        self.rollout = build_methods(vit, ["rollout"])[0]
        # the same methods (the ablations aside) on re-initialised copies of the model
        self.randomised = {
            part: {m.name: m for m in build_methods(randomised_copy(vit.model, part, seed), keys, **options)}
            for part in ("head", "last_block")
            if part != "head" or hasattr(vit.model, "classifier")  # a similarity's "head" is its references
        }
        # every head of every layer rescaled by its own factor in [1/100, 100], the function kept the same
        self.reparametrised_model = reparametrised_copy(
            vit.model, head_scales(vit.num_layers, vit.num_heads, "all", INVARIANCE_SCALE, seed)
        )
        self.reparametrised = {m.name: m for m in build_methods(self.reparametrised_model, keys, **options)}
        self.function_checked = False
        self.rollout_maps: Tensor | None = None

    def start_batch(self, x: Tensor, t: Tensor, keep: slice) -> None:
        """Attention rollout's maps of the batch, once for every method's correlation."""
        self.rollout_maps = self.rollout(x[keep], t[keep]) if keep.stop else None
        if self.rollout_maps is not None and not self.function_checked:  # a map change means nothing if the logits changed
            check_same_function(self.vit, self.reparametrised_model, x[keep])
            self.function_checked = True

    def compute(self, inputs: MetricInputs) -> dict[str, Tensor]:
        method, maps, weights, keep = inputs.method, inputs.maps, inputs.weights, inputs.keep
        parts = {"randomised_head_correlation": "head", "randomised_block_correlation": "last_block"}
        randomised = {name: part for name, part in parts.items() if method.name in self.randomised.get(part, {})}
        # the same correlations on pixels, where a map with many exact zeros (LRP's positive part) has long ties
        pixel_level = {name: name.replace("_correlation", "_pixel_correlation") for name in randomised}
        # GMAR's own weights (not an ablation's) for every class: how much they depend on it
        gmar = isinstance(method.attribution, GMARAttribution) and method.attribution.weight_transform is None
        invariance = method.name in self.reparametrised  # the ablations are not re-run
        names = [
            "rollout_correlation",
            *randomised,
            *pixel_level.values(),
            *(["invariance"] if invariance else []),
            *(["head_entropy"] if weights is not None else []),
            *(["head_weight_class_share"] if gmar else []),
        ]
        columns = {name: torch.full((len(inputs.t),), math.nan) for name in names}
        if keep.stop:
            assert self.rollout_maps is not None  # computed by start_batch
            patch, xk, tk = self.vit.patch_size, inputs.x[keep], inputs.t[keep]
            columns["rollout_correlation"][keep] = map_correlation(maps[keep], self.rollout_maps, patch).cpu()
            for name, part in randomised.items():
                after = self.randomised[part][method.name](xk, tk)
                columns[name][keep] = map_correlation(maps[keep], after, patch, rank=True).cpu()
                columns[pixel_level[name]][keep] = map_correlation(maps[keep], after, rank=True).cpu()
            if invariance:
                columns["invariance"][keep] = map_change(maps[keep], self.reparametrised[method.name](xk, tk), patch).cpu()
            if weights is not None:
                columns["head_entropy"][keep] = head_weight_entropy(weights[keep]).mean(-1).cpu()
            if gmar:
                columns["head_weight_class_share"][keep] = class_share(method.attribution.class_head_weights(xk)).float().cpu()
        return columns
