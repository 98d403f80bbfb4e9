"""What each head attends to, and what GMAR's weight for it follows.

Where an ablation (:mod:`.ablation`) says which heads carry GMAR's difference from
rollout, these measures say what sets those heads apart: how much of their attention
goes to the class token and to the single most-attended token, how large their output
is, and how large the parameters that carry their output into the residual stream are
(the output projection's columns for the head, times the layer scale where the model
has one, as DINOv2, BEiT and timm's ViTs with ``init_values`` do). GMAR's weight is the
norm of the gradient at the head's output, which passes back through exactly those
parameters, so a weight that follows them is a fixed prior of the model, not evidence
about the image or the class.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ...core.heads import split_heads
from ...methods.gmar import GMARAttribution
from ...vit.blocks import AttentionBlock, layer_of
from .head_importance import rank_correlation

#: parameter names of a transformer layer's scale on the attention branch, by family:
#: DINOv2 (with or without registers), BEiT / Data2Vec-Vision, timm
_LAYER_SCALES = ("layer_scale1.lambda1", "lambda_1", "ls1.gamma")


class HeadProfile(NamedTuple):
    """Per image, layer and head, each ``(B, L, H)`` float32."""

    #: GMAR's head weight for the image's target
    weight: Tensor
    #: mean over queries of the attention to the class token (token 0)
    class_token_share: Tensor
    #: the largest mean attention any one token receives (an "attention sink" is near 1)
    top_token_share: Tensor
    #: mean over tokens of the L2 norm of the head's output ``A_h V_h``
    activation: Tensor
    #: Frobenius norm of the output projection's columns for the head, times the layer
    #: scale where there is one (the same for every image); NaN where the output
    #: projection is not a linear layer of ``(D, H * d)``
    output_norm: Tensor


def attention_shares(attn: Tensor) -> tuple[Tensor, Tensor]:
    """Where each head's attention goes.

    Args:
        attn: ``(B, H, T, T)`` attention probabilities, rows summing to 1.

    Returns:
        ``(class_token_share, top_token_share)``, each ``(B, H)``: the mean over query
        rows of the attention to token 0, and the largest such mean over all tokens.
    """
    received = attn.float().mean(-2)  # (B, H, T): the mean attention each token receives
    return received[..., 0], received.amax(-1)


def head_activation(attn: Tensor, value: Tensor) -> Tensor:
    """Mean over tokens of the L2 norm of each head's output ``A_h V_h``.

    Args:
        attn: ``(B, H, T, T)``; value: ``(B, H, T, d)``.

    Returns:
        ``(B, H)`` float32.
    """
    return (attn.float() @ value.float()).norm(dim=-1).mean(-1)


def output_norms(weight: Tensor, num_heads: int, scale: Tensor | None = None) -> Tensor:
    """Frobenius norm of each head's columns of an output projection.

    Args:
        weight: ``(D_out, H * d)``, the projection's weight (``nn.Linear`` layout).
        num_heads: ``H``.
        scale: ``(D_out,)`` layer scale multiplying the projection's output, or ``None``.

    Returns:
        ``(H,)`` float32.
    """
    w = weight.detach().float()
    if scale is not None:
        w = w * scale.detach().float().unsqueeze(-1)
    return split_heads(w.unsqueeze(0), num_heads)[0].flatten(1).norm(dim=-1)


def head_profile(gmar: GMARAttribution, images: Tensor, targets: Tensor) -> HeadProfile:
    """Measure :class:`HeadProfile` for ``images`` and their ``targets``.

    Two passes: GMAR's own (for its weights) and one forward pass without gradients that
    keeps every layer's attention and values. GMAR must use every layer
    (``start_layer=0``) and no ``weight_transform``.

    Args:
        gmar: the GMAR whose weights are profiled.
        images: ``(B, C, H, W)`` pixel values; targets: ``(B,)`` class indices.
    """
    if gmar.start_layer != 0 or gmar.weight_transform is not None:
        raise ValueError("head_profile needs GMAR's own weights of every layer: start_layer=0 and no weight_transform")
    _, weights = gmar.attribute(images, target=targets, return_head_weights=True)
    vit, param = gmar.vit, gmar.vit.parameter
    with vit.trace(images.to(device=param.device, dtype=param.dtype), with_grad=False, keep_value=True) as trace:
        shares, activation = [], []
        for k, layer in enumerate(trace.layers):
            attn = layer.attention_probs()
            shares.append(attention_shares(attn))
            activation.append(head_activation(attn, trace.value(k)))
    norms = torch.stack([_output_norm(vit.model, block) for block in vit.blocks]).to(weights.device)
    return HeadProfile(
        weight=weights.float(),
        class_token_share=torch.stack([s[0] for s in shares], 1).to(weights.device),
        top_token_share=torch.stack([s[1] for s in shares], 1).to(weights.device),
        activation=torch.stack(activation, 1).to(weights.device),
        output_norm=norms.expand_as(weights),
    )


def weight_correlations(profile: HeadProfile, layers: slice | list[int] = slice(None)) -> dict[str, Tensor]:
    """Within-layer Spearman correlation of GMAR's weights with each other measure of
    ``profile``, per image, averaged over ``layers`` (see
    :func:`~.head_importance.rank_correlation`).

    Returns:
        ``{measure: (B,)}`` for ``class_token_share``, ``top_token_share``,
        ``activation`` and, where it is known, ``output_norm``.
    """
    weight = profile.weight[:, layers]
    return {
        name: rank_correlation(weight, getattr(profile, name)[:, layers])
        for name in ("class_token_share", "top_token_share", "activation", "output_norm")
        if torch.isfinite(getattr(profile, name)).all()
    }


def _output_norm(model: nn.Module, block: AttentionBlock) -> Tensor:
    """``(H,)`` :func:`output_norms` of ``block``, NaN where its output is not a linear layer."""
    output = block.output
    proj = getattr(block.attention, "proj", None)
    if isinstance(output, nn.Identity) and isinstance(proj, nn.Linear):
        output = proj  # timm: the heads' outputs pass an identity norm, then the projection
    if not isinstance(output, nn.Linear) or output.in_features % block.num_heads:
        return torch.full((block.num_heads,), float("nan"))
    params = dict(layer_of(model, block.attention).named_parameters())
    scale = next((params[name] for name in _LAYER_SCALES if name in params), None)
    return output_norms(output.weight, block.num_heads, scale).cpu()
