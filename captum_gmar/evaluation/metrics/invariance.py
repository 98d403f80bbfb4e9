"""Implementation invariance (Sundararajan et al., ICML 2017), applied to attention heads.

Dividing head ``h``'s rows of a layer's value projection (weights and bias) by ``c`` and
multiplying the matching input columns of the output projection by ``c`` changes how the
network is parametrised but not what it computes: the head's output ``C_h = A_h V_h``
scales by ``1 / c`` and the output projection undoes it, so every logit stays the same
(to float rounding). A method that explains the function must give the same map on both
networks. Gradient x input, IntegratedGradients, Saliency, GAE and token Grad-CAM see
only the function; the norm of the gradient w.r.t. a head's output, GMAR's paper score,
scales by ``c`` with it.

:func:`reparametrised_copy` does the surgery on a copy (every supported family: separate
and timm's fused ``qkv`` value projections, RoPE models alike: the rotation touches only
queries and keys); :func:`head_scales` draws the factors for one head, one layer or all
heads; :func:`map_change` measures how much a map moved; :func:`invariance_table` runs
methods of the comparison on reparametrised copies.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UnsupportedModelError
from ...vit.blocks import AttentionBlock, ForeignModule
from ...vit.model import VisionTransformer, as_vision_transformer
from ...vit.model_state import unwrap_model
from ..methods import build_methods

__all__ = ["Scope", "check_same_function", "head_scales", "invariance_table", "map_change", "reparametrised_copy"]

#: Which heads are rescaled: head 0 of the middle layer, every head of the middle layer
#: (one factor for all), or every head of every layer (each its own factor).
Scope = Literal["head", "layer", "all"]


def head_scales(num_layers: int, num_heads: int, scope: Scope, scale: float, seed: int = 0) -> Tensor:
    """The factors ``c`` ``(L, H)`` of a reparametrisation.

    ``"head"``: ``scale`` for head 0 of layer ``L // 2``, 1 elsewhere. ``"layer"``: ``scale``
    for every head of layer ``L // 2``. ``"all"``: every head of every layer its own factor,
    log-uniform between ``1 / s`` and ``s`` with ``s = max(scale, 1 / scale)``, drawn from
    ``seed`` (so ``scale`` and ``1 / scale`` give the same factors).
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    scales = torch.ones(num_layers, num_heads, dtype=torch.float64)
    if scope == "head":
        scales[num_layers // 2, 0] = scale
    elif scope == "layer":
        scales[num_layers // 2] = scale
    elif scope == "all":
        spread = abs(math.log(scale))
        uniform = torch.rand(num_layers, num_heads, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        scales = torch.exp((2 * uniform - 1) * spread)
    else:
        raise ValueError(f"scope must be 'head', 'layer' or 'all', got {scope!r}")
    return scales


def reparametrised_copy(model: nn.Module, scales: Tensor) -> nn.Module:
    """A copy of ``model`` computing the same function with every head rescaled.

    Head ``h`` of layer ``l``: its rows of the value projection (weight and bias) are
    divided by ``scales[l, h]`` and its input columns of the output projection multiplied
    by it. ``model`` itself is untouched.

    Args:
        model: a supported model (see ``docs/models.md``; a classifier, a head on an
            embedding, timm ViTs and EVA included).
        scales: ``(L, H)`` positive factors, e.g. from :func:`head_scales`.

    Returns:
        The unwrapped copy, in eval mode.

    Raises:
        ValueError: ``scales`` is not ``(L, H)`` positive.
        UnsupportedModelError: something other than the identity sits between the heads'
            outputs and the output projection (timm's ``scale_norm``), which the
            rescaling would change.
    """
    clone = copy.deepcopy(unwrap_model(model))
    blocks = VisionTransformer(clone).blocks
    if scales.shape != (len(blocks), blocks[0].num_heads) or not bool((scales > 0).all()):
        raise ValueError(f"scales must be ({len(blocks)}, {blocks[0].num_heads}) positive factors, got shape {tuple(scales.shape)}")
    with torch.no_grad():
        for block, factors in zip(blocks, scales):
            values, output = _value_rows_and_output(block)
            head_dim = output.in_features // block.num_heads
            per_channel = factors.repeat_interleave(head_dim)  # (H * d,): head h's channels get c_h
            for param, offset in values:
                rows = param[offset : offset + output.in_features]
                rows.copy_((rows.double() / per_channel.view(-1, *[1] * (rows.dim() - 1))).to(rows.dtype))
            output.weight.copy_((output.weight.double() * per_channel).to(output.weight.dtype))
    return clone.eval()


def _value_rows_and_output(block: AttentionBlock) -> tuple[list[tuple[Tensor, int]], ForeignModule]:
    """The parameters holding a block's value projection (each with the index of its first
    value row: timm's fused ``qkv`` stacks queries, keys and values) and its output
    projection, whose input is the heads' outputs (a linear layer, or peft's wrapper of
    one: ``in_features``, ``weight`` and ``bias`` are read by name)."""
    if block.value is not None:  # transformers: separate projections, the output projection is block.output
        return _linear_rows(block.value, 0), block.output
    attention: ForeignModule = block.attention  # timm: Attention (fused qkv or q/k/v_proj) and Eva (qkv with q_bias, v_bias)
    if not isinstance(getattr(attention, "norm", nn.Identity()), nn.Identity):
        raise UnsupportedModelError(
            f"{type(attention).__name__} normalises the heads' outputs (scale_norm) before its output projection: "
            "rescaling a head's values changes what the network computes, so there is no function-preserving rescaling"
        )
    if getattr(attention, "v_proj", None) is not None:  # EVA sets the unused one to None
        return _linear_rows(attention.v_proj, 0), attention.proj
    qkv = attention.qkv
    offset = 2 * qkv.out_features // 3
    rows = _linear_rows(qkv, offset)
    if isinstance(getattr(attention, "v_bias", None), Tensor):  # Eva's separate value bias
        rows.append((attention.v_bias, 0))
    return rows, attention.proj


def _linear_rows(linear: ForeignModule, offset: int) -> list[tuple[Tensor, int]]:
    return [(linear.weight, offset)] + ([(linear.bias, offset)] if linear.bias is not None else [])


def check_same_function(model: nn.Module | VisionTransformer, clone: nn.Module, images: Tensor, rtol: float = 1e-4) -> float:
    """The largest logit difference between ``model`` (or its wrapper, a
    :class:`~captum_gmar.vit.model.VisionTransformer`) and ``clone`` on ``images``,
    relative to the largest logit (at least 1).

    Raises:
        RuntimeError: it exceeds ``rtol``: the surgery changed the function (a family
            it does not handle), so no map comparison would mean anything.
    """
    vit = as_vision_transformer(model)
    with torch.no_grad():
        before, after = vit.logits(images).float(), VisionTransformer(clone).logits(images).float()
    error = float((after - before).abs().max() / before.abs().max().clamp_min(1))
    if not error <= rtol:
        raise RuntimeError(
            f"the reparametrised {type(vit.model).__name__} computes other logits (relative difference {error:.2e} > "
            f"{rtol:.0e}): the rescaling is not function-preserving for this model"
        )
    return error


def map_change(a: Tensor, b: Tensor, patch_size: int | tuple[int, int] = 1) -> Tensor:
    """How much of a map's mass moved: the total variation distance between the two maps,
    each normalised to sum to 1 (absolute values).

    Chosen over ``1 - Spearman``: it is Lipschitz in the maps, so a map that changes only
    by float rounding scores at rounding size (a rank correlation jumps wherever near-tied
    values swap, as in the flat regions of rectified maps), and it ignores a rescaling of
    the whole map, which does not change what the map says.

    Args:
        a, b: ``(B, H, W)`` maps of the same items.
        patch_size: average over patches of this size first (the model's patch size for
            the patch grid, 1 for pixels).

    Returns:
        ``(B,)`` float32 in ``[0, 1]``: 0 for maps equal up to a factor, 1 for maps with
        disjoint support; NaN where either map is all zero.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"map_change takes two (B, H, W) maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = (F.avg_pool2d(m.float().abs().unsqueeze(1), patch_size).flatten(1) for m in (a, b.to(a.device)))
    x, y = (m / m.sum(-1, keepdim=True) for m in (x, y))  # 0 / 0 = NaN for an all-zero map
    return 0.5 * (x - y).abs().sum(-1)


def invariance_table(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    methods: Sequence[str],
    scales: Sequence[float] = (0.01, 0.1, 10.0, 100.0),
    scopes: Sequence[Scope] = ("head", "layer", "all"),
    seed: int = 0,
    ig_steps: int = 50,
    rtol: float = 1e-4,
) -> list[dict[str, object]]:
    """The change of each method's maps under function-preserving head rescalings.

    For each scope and scale a :func:`reparametrised_copy` is made, its logits checked
    against the model's (:func:`check_same_function`), and every method of ``methods``
    (keys of :data:`~captum_gmar.names.METHOD_KEYS`) explains ``images`` on both. The
    scope ``"all"`` draws its factors from ``seed`` and spans ``[1 / s, s]``, so a scale
    and its inverse are run once.

    Args:
        model: a supported classifier or a head on an embedding (as
            :func:`~captum_gmar.evaluation.runner.compare` takes it).
        images: ``(B, C, H, W)`` pixel values on the model's device.
        targets: ``(B,)`` the classes explained.
        methods, seed, ig_steps: as in :func:`~captum_gmar.evaluation.runner.compare`.
        rtol: the largest relative logit difference accepted (float32 rounding).

    Returns:
        One row per method, scope and scale: ``method``, ``scope``, ``scale``,
        ``logit_error`` (relative, of that copy), ``patch_change`` and ``pixel_change``
        (:func:`map_change` on the patch grid and on pixels, mean over images) and
        ``patch_change_max`` (the largest over images).
    """
    model = unwrap_model(model)  # in eval mode: the methods refuse a model in training mode
    vit = VisionTransformer(model)
    patch = vit.patch_size
    originals = {m.name: m(images, targets) for m in build_methods(vit, list(methods), ig_steps=ig_steps)}
    rows: list[dict[str, object]] = []
    done: set[tuple[str, float]] = set()
    for scope in scopes:
        for scale in scales:
            key = (scope, max(scale, 1 / scale) if scope == "all" else scale)
            if key in done:
                continue
            done.add(key)
            clone = reparametrised_copy(model, head_scales(vit.num_layers, vit.num_heads, scope, scale, seed))
            error = check_same_function(vit, clone, images, rtol)
            for method in build_methods(clone, list(methods), ig_steps=ig_steps):
                maps, before = method(images, targets), originals[method.name]
                on_patches = map_change(before, maps, patch)
                rows.append(
                    dict(
                        method=method.name,
                        scope=scope,
                        scale=key[1],
                        logit_error=error,
                        patch_change=float(on_patches.mean()),
                        pixel_change=float(map_change(before, maps).mean()),
                        patch_change_max=float(on_patches.max()),
                    )
                )
    return rows
