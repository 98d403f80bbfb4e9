"""The model without some of its heads: a copy whose output projections no longer read
those heads' outputs, written into the weights, so that the copy is a standard model of
the same class (``save_pretrained`` and its own ``from_pretrained``, every method, the
data-set job).

Head ``h`` of a layer owns the columns ``h*d ... (h+1)*d - 1`` of the attention's output
projection ``W`` (``d`` the head size). With ``mode="zero"`` they are set to zero: the
head adds nothing to the residual stream. With ``mode="mean"`` the head's output is
replaced by its mean ``m`` over ``reference_images`` (and their tokens) at every token:
``W[:, cols] @ m`` is added to the projection's bias, then the columns are zeroed. The
same replacement as :meth:`~captum_gmar.vit.model.VisionTransformer.heads_replaced`'s, which
:func:`~captum_gmar.heads.locate_heads` ablates with.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..vit.blocks import AttentionBlock
from ..vit.model import VisionTransformer, as_vision_transformer

__all__ = ["RemovalMode", "without_heads"]

RemovalMode = Literal["zero", "mean"]
Model = TypeVar("Model", bound=nn.Module)


def without_heads(
    model: Model,
    heads: Sequence[tuple[int, int]],
    mode: RemovalMode = "zero",
    reference_images: Tensor | None = None,
    batch_size: int = 64,
) -> Model:
    """A copy of ``model`` with ``heads`` removed (see :mod:`captum_gmar.heads.remove`).

    Args:
        model: a supported model (not wrapped), in eval mode; it is not changed.
        heads: ``(layer, head)`` pairs, as :attr:`~captum_gmar.heads.HeadLocation.ranking` gives them.
        mode: ``"zero"`` (no images needed) or ``"mean"`` (each head's mean output over
            ``reference_images`` in its place).
        reference_images: pixel values ``(N, C, H, W)``, for ``mode="mean"``.
        batch_size: images per pass, for the means.

    Returns:
        the copy, of ``model``'s class, in eval mode.

    Raises:
        ValueError: one line, before any change: a head out of range or named twice, a bad
            mode, ``mode="mean"`` without ``reference_images``.
        UnsupportedModelError: a family whose output projection is not a plain linear layer
            reading the heads' outputs (a LoRA adapter on it, say), saying why.
    """
    if isinstance(model, VisionTransformer):
        raise ValueError("give the model itself, not its VisionTransformer wrapper: the copy is a model of its class")
    vit = as_vision_transformer(model)
    chosen = _checked_heads(heads, vit.num_layers, vit.num_heads)
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    if mode == "mean" and reference_images is None:
        raise ValueError("mode='mean' replaces each head by its mean output over reference images: give reference_images (N, C, H, W)")
    for layer in {layer for layer, _ in chosen}:
        _projection(vit.blocks[layer], layer, mode)  # refuse before copying anything
    means = vit.head_means(reference_images, batch_size) if mode == "mean" and reference_images is not None else None
    copied = copy.deepcopy(model).eval()
    blocks = as_vision_transformer(copied).blocks
    with torch.no_grad():
        for layer, head in chosen:
            linear = _projection(blocks[layer], layer, mode)
            size = linear.in_features // blocks[layer].num_heads
            columns = slice(head * size, (head + 1) * size)
            if means is not None:
                assert linear.bias is not None  # _projection refuses a projection without one
                shift = linear.weight[:, columns].float() @ means[layer, head].to(linear.weight.device)
                linear.bias.add_(shift.to(linear.bias.dtype))
            linear.weight[:, columns] = 0
    return copied


def _checked_heads(heads: Sequence[tuple[int, int]], layers: int, count: int) -> list[tuple[int, int]]:
    if isinstance(heads, (str, bytes)) or not isinstance(heads, Sequence) or not heads:
        raise ValueError(f"heads must be a non-empty list of (layer, head) pairs, got {heads!r}")
    chosen = []
    for pair in heads:
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pair)
            or not (0 <= pair[0] < layers and 0 <= pair[1] < count)
        ):
            raise ValueError(
                f"each head must be a (layer, head) pair with layer in [0, {layers - 1}] and head in [0, {count - 1}], got {pair!r}"
            )
        chosen.append((int(pair[0]), int(pair[1])))
    if len(set(chosen)) < len(chosen):
        raise ValueError(f"heads names a head twice: {chosen}")
    return chosen


def _projection(block: AttentionBlock, layer: int, mode: RemovalMode) -> nn.Linear:
    """The linear layer that reads a block's heads' outputs: the output projection itself,
    or, where the captured module is an identity before it (timm's ``attn.norm``), the
    attention's ``proj``."""
    linear = block.output
    if isinstance(linear, nn.Identity):
        linear = getattr(block.attention, "proj", linear)
    if type(linear) is not nn.Linear:
        raise UnsupportedModelError(
            f"layer {layer}'s output projection ({type(linear).__name__}) is not a plain nn.Linear reading the heads' outputs "
            "(a LoRA adapter: merge it first, merge_and_unload()): its heads cannot be removed in the weights"
        )
    if mode == "mean" and linear.bias is None:
        raise UnsupportedModelError(f"layer {layer}'s output projection has no bias to hold a head's mean output: use mode='zero'")
    return linear
