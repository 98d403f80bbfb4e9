"""Head importance: do GMAR's head weights pick the heads the prediction depends on?

The ground truth is a masking experiment: zero a head's output (see
:meth:`~captum_gmar.vit.model.VisionTransformer.heads_zeroed`) and measure how much the
target logit drops. Masked forward passes are batched: each image of a chunk carries
its own head mask, so many (example, mask) pairs share one forward pass.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ...core.correlation import average_ranks, pearson
from ...vit.model import VisionTransformer, as_vision_transformer
from ...vit.outputs import masked_target_outputs
from ..checks import check_images, check_targets


class GroupDrops(NamedTuple):
    """Target-logit drops when a group of heads is zeroed, each ``(B,)``."""

    #: the ``k`` highest-weighted heads of every layer zeroed
    top: Tensor
    #: the ``k`` lowest-weighted heads of every layer zeroed
    bottom: Tensor


def head_masking_drops(vit: VisionTransformer | nn.Module, images: Tensor, targets: Tensor, batch_size: int = 64) -> Tensor:
    """Drop of the target logit when each head alone is zeroed.

    ``drop[b, l, h] = logit_clean - logit_with_head_(l, h)_zeroed`` for example ``b``'s
    target: ``L * H`` masked passes over the batch, without gradients.

    Args:
        vit: a :class:`~captum_gmar.vit.model.VisionTransformer` or a supported Hugging Face
            model, in eval mode.
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` class indices.
        batch_size: most images per forward pass.

    Returns:
        ``(B, L, H)`` float32 on the images' device; positive where the head helps the
        target.
    """
    vit = _as_vit(vit)
    batch, targets = _check(vit, images, targets)
    layers, heads = vit.num_layers, vit.num_heads
    one_head = torch.eye(layers * heads, dtype=torch.bool, device=images.device).view(-1, 1, layers, heads)
    clean = torch.zeros(1, batch, layers, heads, dtype=torch.bool, device=images.device)
    logits = _masked_target_logits(vit, images, targets, clean, batch_size)
    masked = _masked_target_logits(vit, images, targets, one_head.expand(-1, batch, -1, -1), batch_size)
    return (logits - masked).T.reshape(batch, layers, heads)


def group_masking_drops(
    vit: VisionTransformer | nn.Module,
    images: Tensor,
    targets: Tensor,
    head_weights: Tensor,
    k: int,
    batch_size: int = 64,
) -> GroupDrops:
    """Drop of the target logit when the ``k`` highest (or lowest) weighted heads go.

    Per example, the ``k`` heads with the highest weight in every layer are zeroed at
    once, and separately the ``k`` with the lowest; ties are broken by head index (a
    stable sort). A faithful head weighting gives ``top`` well above ``bottom``.

    Args:
        vit: a :class:`~captum_gmar.vit.model.VisionTransformer` or a supported Hugging Face
            model, in eval mode.
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` class indices.
        head_weights: ``(B, L, H)``, e.g. GMAR's ``return_head_weights`` with
            ``start_layer=0``.
        k: heads zeroed per layer, in ``[1, H]``.
        batch_size: most images per forward pass.

    Returns:
        :class:`GroupDrops` ``(top, bottom)`` of ``(B,)`` float32 on the images' device.
    """
    vit = _as_vit(vit)
    batch, targets = _check(vit, images, targets)
    layers, heads = vit.num_layers, vit.num_heads
    _check_head_tensor(head_weights, (batch, layers, heads), "head_weights")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= heads:
        raise ValueError(f"k must be an int in [1, {heads}], got {k!r}")
    weights = head_weights.to(images.device).float()
    masks = torch.zeros(3, batch, layers, heads, dtype=torch.bool, device=images.device)
    for group, descending in ((1, True), (2, False)):
        chosen = torch.sort(weights, dim=-1, descending=descending, stable=True).indices[..., :k]
        masks[group].scatter_(-1, chosen, True)
    clean, top, bottom = _masked_target_logits(vit, images, targets, masks, batch_size)
    return GroupDrops(clean - top, clean - bottom)


def rank_correlation(head_weights: Tensor, drops: Tensor) -> Tensor:
    """Spearman correlation of head weights with masking drops, per layer, averaged.

    GMAR normalises its weights per layer, so only ranks within a layer are compared.
    Tied values get their average rank. A layer where either tensor is constant has no
    defined correlation and contributes 0 to the average (no evidence either way).

    Args:
        head_weights: ``(B, L, H)``, e.g. GMAR's head weights.
        drops: ``(B, L, H)``, e.g. from :func:`head_masking_drops`.

    Returns:
        ``(B,)`` float32 in ``[-1, 1]``.
    """
    _check_head_tensor(head_weights, None, "head_weights")
    _check_head_tensor(drops, tuple(head_weights.shape), "drops")
    if head_weights.shape[-1] < 2:
        raise ValueError("rank correlation needs at least two heads per layer")
    x = average_ranks(head_weights.float())
    y = average_ranks(drops.to(head_weights.device).float())
    return pearson(x, y, undefined=0.0).mean(-1)


def _masked_target_logits(vit: VisionTransformer, images: Tensor, targets: Tensor, masks: Tensor, batch_size: int) -> Tensor:
    """Target logit of every (mask, example) pair: ``(M, B)`` float32 on the images' device
    (``masks``: ``(M, B, L, H)`` bool, one head mask per pair, may be an expanded view)."""
    return masked_target_outputs(vit, images, targets, masks, batch_size)[0]


def _as_vit(vit: VisionTransformer | nn.Module) -> VisionTransformer:
    vit = as_vision_transformer(vit)
    if vit.model.training:
        raise ValueError("the model is in training mode (dropout would make drops random); call model.eval() first")
    return vit


def _check(vit: VisionTransformer, images: Tensor, targets: Tensor) -> tuple[int, Tensor]:
    """Validate images and targets for ``vit``; returns the batch size and int64 targets."""
    check_images(images)
    batch = images.shape[0]
    targets = check_targets(targets, batch, images.device)
    if (targets >= vit.num_labels).any():
        raise ValueError(f"targets must be below the model's {vit.num_labels} classes")
    return batch, targets


def _check_head_tensor(values: object, shape: tuple[int, ...] | None, name: str) -> None:
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor of shape (B, L, H)")
    if values.dim() != 3 or (shape is not None and tuple(values.shape) != shape):
        expected = f"(B, L, H) = {shape}" if shape is not None else "(B, L, H)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contain NaN or infinite values")
