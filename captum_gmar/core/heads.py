"""Per-head mathematics: attention maps, their gradients, head scores and head fusion.

Pure functions over tensors; nothing here knows about models or hooks. Shapes use
``B`` batch, ``H`` heads, ``T`` tokens, ``d`` head size, ``D = H * d``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Norm = Literal["l1", "l2"]
GateSign = Literal["abs", "positive"]
HeadFusion = Literal["mean", "max", "min"]


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """Split the channels of per-token head outputs into heads.

    Args:
        x: ``(B, T, H * d)``; channels ``h*d ... (h+1)*d - 1`` belong to head ``h``,
            as in the input of a ViT attention block's output projection.
        num_heads: ``H``.

    Returns:
        ``(B, H, T, d)``, a view of ``x``.
    """
    batch, tokens, channels = x.shape
    if channels % num_heads:
        raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
    return x.view(batch, tokens, num_heads, channels // num_heads).transpose(1, 2)


def attention_probs(query: Tensor, key: Tensor, scaling: float, bias: Tensor | None = None) -> Tensor:
    """Attention probabilities ``softmax(q k^T * scaling + bias)``, computed in float32.

    This is what an eager attention computes, so the maps can be rebuilt from the
    queries and keys whatever kernel (sdpa, flash) ran the forward pass.

    Args:
        query, key: ``(B, H, T, d)``, as the attention multiplied them (after any
            rotary position embedding).
        scaling: the score scale, usually ``d ** -0.5``.
        bias: added to the scores before the softmax, broadcastable to
            ``(B, H, T, T)`` (e.g. BEiT's relative position bias), or a bool mask
            (``True`` where a token may attend), as ``scaled_dot_product_attention``
            takes it; ``None`` for none.

    Returns:
        ``(B, H, T, T)`` float32, rows summing to 1.
    """
    batch, heads, tokens, size = query.shape
    q = _float(query).reshape(batch * heads, tokens, size)
    k = _float(key).reshape(batch * heads, key.shape[-2], size)
    # the scale applied inside the product (the GEMM's alpha; with beta=0 the first argument is
    # ignored): one operation where a product and a multiplication by a Python number take five
    scores = torch.baddbmm(q.new_empty(1, 1, 1), q, k.transpose(1, 2), beta=0, alpha=scaling).view(batch, heads, tokens, -1)
    if bias is not None:
        if bias.dtype == torch.bool:
            scores = scores.masked_fill(~bias, float("-inf"))
        else:
            scores = scores + bias.float()
    return torch.softmax(scores, dim=-1)


def attention_grad(context_grad: Tensor, value: Tensor) -> Tensor:
    """Gradient with respect to the attention probabilities, from the context gradient.

    A head's context is ``C_h = A_h @ V_h``, so ``dL/dA_h = dL/dC_h @ V_h^T`` exactly
    (in eval mode, where attention dropout is the identity). This gives the attention
    gradient without running the model in eager mode.

    Args:
        context_grad: ``(B, T, H * d)``, gradient w.r.t. the concatenated head outputs.
        value: ``(B, H, T, d)``, the values the attention multiplied.

    Returns:
        ``(B, H, T, T)`` float32.
    """
    g = split_heads(context_grad.float(), value.shape[1])
    return g @ value.float().transpose(-1, -2)


def _float(x: Tensor) -> Tensor:
    """``x`` as float32, without an operation where it already is (each one a kernel
    launch on a GPU, which small batches wait on)."""
    return x if x.dtype == torch.float32 else x.float()


def context_head_scores(context_grad: Tensor, num_heads: int, norm: Norm = "l1") -> Tensor:
    """:func:`head_scores` of the heads' output gradient ``(B, T, H * d)``, read in place:
    ``head_scores(split_heads(context_grad, num_heads), norm)``, without the copy that
    flattening the split view would make.

    Returns:
        ``(B, H)`` float32, non-negative.
    """
    batch, tokens, channels = context_grad.shape
    if channels % num_heads:
        raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    grad = _float(context_grad).view(batch, tokens, num_heads, channels // num_heads)
    return torch.linalg.vector_norm(grad, 1 if norm == "l1" else 2, dim=(1, 3))  # one reduction over tokens and channels


def head_scores(grad: Tensor, norm: Norm = "l1") -> Tensor:
    """GMAR head scores: the L1 or L2 norm of each head's gradient.

    Args:
        grad: ``(B, H, ...)``, a gradient split by head (``(B, H, T, d)`` for head outputs,
            ``(B, H, T, T)`` for attention probabilities).
        norm: ``"l1"`` (sum of absolute values) or ``"l2"`` (Euclidean norm).

    Returns:
        ``(B, H)`` float32, non-negative.
    """
    flat = grad.float().flatten(2)
    if norm == "l1":
        return flat.abs().sum(-1)
    if norm == "l2":
        return flat.square().sum(-1).sqrt()
    raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")


def gate_scores(context_grad: Tensor, context: Tensor, sign: GateSign = "abs") -> Tensor:
    """Head importance of Michel et al. (NeurIPS 2019): the gradient of the target with
    respect to a multiplicative gate ``g_h`` on each head's output, at ``g_h = 1``.

    With the head's output ``C_h`` multiplied by ``g_h`` before the output projection,
    ``dy/dg_h = sum_{t, j} (dy/dC_h)[t, j] * C_h[t, j]``. Unlike the norm of ``dy/dC_h``
    (:func:`head_scores`), it does not change when a head's value projection is divided
    by ``c`` and the matching columns of the output projection multiplied by ``c``
    (``C_h`` scales by ``1 / c``, its gradient by ``c``): it depends on what the network
    computes, not on how it is parametrised.

    Args:
        context_grad: ``(B, H, T, d)``, the gradient w.r.t. the heads' outputs, split by head.
        context: ``(B, H, T, d)``, the heads' outputs ``A_h @ V_h``.
        sign: ``"abs"`` (the absolute value, Michel et al.'s: a head whose removal would
            raise the target counts too) or ``"positive"`` (the positive part: only heads
            whose output supports the target count).

    Returns:
        ``(B, H)`` float32, non-negative.
    """
    if context_grad.shape != context.shape or context.dim() != 4:
        raise ValueError(
            f"context_grad and context must be (B, H, T, d) of one shape, got {tuple(context_grad.shape)} and {tuple(context.shape)}"
        )
    gate = (context_grad.float() * context.float()).sum((-2, -1))
    if sign == "abs":
        return gate.abs()
    if sign == "positive":
        return gate.clamp_min(0)
    raise ValueError(f"gate must be 'abs' or 'positive', got {sign!r}")


def normalize_head_weights(scores: Tensor) -> Tensor:
    """Normalise head scores to weights that sum to 1 over heads.

    Args:
        scores: ``(..., H)`` non-negative scores.

    Returns:
        ``(..., H)``; ``scores / scores.sum(-1)``, and uniform ``1 / H`` where the sum is 0
        (a layer with no gradient at all gives every head the same weight).
    """
    total = scores.sum(-1, keepdim=True)
    uniform = torch.full_like(scores, 1.0 / scores.shape[-1])
    return torch.where(total > 0, scores / total.clamp_min(torch.finfo(scores.dtype).tiny), uniform)


def fuse_heads(attn: Tensor, weights: Tensor) -> Tensor:
    """Weighted sum of the heads' attention maps.

    Args:
        attn: ``(B, H, T, T)``.
        weights: ``(B, H)``; with weights summing to 1 the fused rows still sum to 1.

    Returns:
        ``(B, T, T)``.
    """
    batch, heads, tokens, _ = attn.shape
    weights = weights if weights.dtype == attn.dtype else weights.to(attn.dtype)
    fused = torch.bmm(weights.unsqueeze(1), attn.reshape(batch, heads, tokens * tokens))  # one product, no einsum planning
    return fused.view(batch, tokens, tokens)


def reduce_heads(attn: Tensor, fusion: HeadFusion = "mean") -> Tensor:
    """Class-agnostic head fusion of attention rollout: mean, max or min over heads.

    Args:
        attn: ``(B, H, T, T)``.
        fusion: ``"mean"``, ``"max"`` or ``"min"``.

    Returns:
        ``(B, T, T)``; rows sum to 1 only for ``"mean"``.
    """
    if fusion == "mean":
        return attn.mean(1)
    if fusion == "max":
        return attn.amax(1)
    if fusion == "min":
        return attn.amin(1)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {fusion!r}")


def gradient_weighted_heads(attn: Tensor, grad: Tensor) -> Tensor:
    """Chefer et al.'s (ICCV 2021) head fusion: ``mean_h relu(dy/dA * A)``.

    Args:
        attn: ``(B, H, T, T)`` attention probabilities.
        grad: ``(B, H, T, T)`` gradient of the target logit w.r.t. them.

    Returns:
        ``(B, T, T)``, non-negative.
    """
    return (grad * attn).clamp_min(0).mean(1)


def uniform_except(weights: Tensor, keep: Tensor) -> Tensor:
    """Head weights with only the ``keep`` entries left as they are: the other heads of
    each layer share what is left equally, so every layer still sums to 1.

    An ablation of GMAR's weights: ``keep`` all ``False`` gives uniform weights (GMAR is
    then attention rollout with mean fusion), all ``True`` GMAR's own; one layer
    ``False`` makes that layer uniform, one entry ``True`` leaves one head's weight and
    spreads the rest of its layer evenly.

    Args:
        weights: ``(B, L, H)``, non-negative, each layer summing to 1.
        keep: ``(L, H)`` (the same for every example) or ``(B, L, H)`` bool.

    Returns:
        ``(B, L, H)`` in ``weights``' dtype.
    """
    if keep.dtype != torch.bool:
        raise TypeError(f"keep must be a bool tensor, got {keep.dtype}")
    if weights.dim() != 3 or keep.shape not in (weights.shape[1:], weights.shape):
        raise ValueError(
            f"keep must be (L, H) or (B, L, H) for weights of shape (B, L, H) = {tuple(weights.shape)}, got {tuple(keep.shape)}"
        )
    keep = keep.to(weights.device).expand_as(weights)
    kept = torch.where(keep, weights, 0.0)
    others = (~keep).sum(-1, keepdim=True)
    # a fully kept layer has no other heads: the clamp only avoids 0 / 0, nothing is shared
    share = (1.0 - kept.sum(-1, keepdim=True)).clamp_min(0) / others.clamp_min(1)
    return torch.where(keep, weights, share.to(weights.dtype))
