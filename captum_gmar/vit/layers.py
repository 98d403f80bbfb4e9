"""The residual stream between a model's layers: the patch tokens a layer puts out, read
(pooled over the patches), and every token it puts out shifted by a direction, for the
strategies found in the model's features (:mod:`captum_gmar.exploration.features`).

A layer is the module that holds one attention block and adds its branches to the tokens:
the child of the model's list of layers (``encoder.layer``, ``encoder.layers``, timm's
``blocks``) that holds the block's attention. Its output, the tokens after the block, is
what the next layer reads; a direction added to its patch tokens moves their mean by that
direction exactly. As in :meth:`~captum_gmar.vit.model.VisionTransformer.trace`, a pass
runs under the model's lock, in eval mode, and the hook ignores other threads' passes and
is removed on exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from .model import VisionTransformer
from .model_state import evaluating, model_lock

__all__ = ["layer_modules", "pooled_patches", "scores_with_tokens_shifted", "tokens_shifted"]


def layer_modules(vit: VisionTransformer) -> list[nn.Module]:
    """Each attention block's layer, first layer first: the child of a ``ModuleList`` or
    ``Sequential`` that holds the block's attention.

    Raises:
        UnsupportedModelError: a block whose attention sits in no such list.
    """
    parents = {child: module for module in vit.model.modules() for child in module.children()}
    layers = []
    for index, block in enumerate(vit.blocks):
        module = block.attention
        while module in parents and not isinstance(parents[module], nn.ModuleList | nn.Sequential):
            module = parents[module]
        if module not in parents:
            raise UnsupportedModelError(f"the attention of layer {index} lies in no list of layers: its layer's output cannot be read")
        layers.append(module)
    return layers


@contextmanager
def _layer_output_edited(vit: VisionTransformer, layer: int, edit: Callable[[Tensor], Tensor | None]) -> Iterator[None]:
    """For the block, ``edit`` sees the tokens ``(B, T, D)`` that layer ``layer`` puts out
    in this thread's passes, and replaces them where it returns a tensor."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < vit.num_layers:
        raise ValueError(f"layer must be an integer from 0 to {vit.num_layers - 1}, got {layer!r}")
    owner = threading.get_ident()

    def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> Tensor | tuple | None:
        if threading.get_ident() != owner:
            return None
        tokens = output[0] if isinstance(output, tuple) else output
        edited = edit(tokens)
        if edited is None:
            return None
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    handle = layer_modules(vit)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def tokens_shifted(vit: VisionTransformer, layer: int, shifts: Tensor) -> Iterator[None]:
    """Within the block, this thread's passes of ``B`` images have ``shifts`` ``(B, D)``
    added to every token that layer ``layer`` (from 0) puts out, image by image (a row
    of zeros leaves its image as it is). Neither locks the model nor changes its mode: a
    fine-tune trains through it (see :func:`scores_with_tokens_shifted` for scoring).

    Raises:
        ValueError: a pass of another number of images than ``shifts`` has rows.
    """

    def shift(tokens: Tensor) -> Tensor:
        if len(tokens) != len(shifts):
            raise ValueError(f"{len(shifts)} shifts for a pass of {len(tokens)} images")
        return tokens + shifts.to(tokens.device, tokens.dtype)[:, None, :]

    with _layer_output_edited(vit, layer, shift):
        yield


@torch.no_grad()
def pooled_patches(vit: VisionTransformer, pixel_values: Tensor, layer: int) -> Tensor:
    """The mean of the patch tokens that layer ``layer`` (from 0) puts out, ``(B, D)``
    float32, for ``pixel_values`` ``(B, C, H, W)`` on the model's device and dtype."""
    kept: list[Tensor] = []

    def keep(tokens: Tensor) -> None:
        kept.append(tokens[:, vit.num_prefix_tokens :].float().mean(dim=1))

    with model_lock(vit.lock_owner), evaluating(vit.model), _layer_output_edited(vit, layer, keep):
        vit.logits(pixel_values)
    return kept[0]


@torch.no_grad()
def scores_with_tokens_shifted(
    vit: VisionTransformer, pixel_values: Tensor, layer: int, directions: Tensor, scores: Callable[[Tensor], Tensor]
) -> Tensor:
    """The class scores ``(S, B, K)`` of ``pixel_values`` ``(B, C, H, W)`` with each of
    ``directions`` ``(S, D)`` in turn added to every token that layer ``layer`` puts out;
    ``scores`` turns logits into scores. One pass of ``S * B`` images."""
    count, batch = len(directions), len(pixel_values)
    repeated = pixel_values.repeat(count, 1, 1, 1)
    with model_lock(vit.lock_owner), evaluating(vit.model), tokens_shifted(vit, layer, directions.repeat_interleave(batch, 0)):
        logits = vit.logits(repeated)
    return scores(logits).unflatten(0, (count, batch))
