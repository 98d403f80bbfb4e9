"""Rollout mathematics: residual term, discarding weak attentions, the read-out row and
its product with the layers.

Pure functions over fused, per-layer token-to-token matrices ``(B, T, T)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def add_residual(attn: Tensor, alpha: float = 0.5) -> Tensor:
    """Model the residual connection: ``(1 - alpha) * attn + alpha * I``, rows renormalised.

    For a row-stochastic ``attn`` (mean or weighted fusion) the renormalisation changes
    nothing; after max/min fusion or discarding it makes the rows sum to 1 again, as in
    the reference rollout implementations.

    Args:
        attn: ``(B, T, T)`` fused attention.
        alpha: weight of the identity, in ``[0, 1]``.

    Returns:
        ``(B, T, T)`` with rows summing to 1 (rows that are all zero stay zero).
    """
    eye = torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)
    mixed = torch.lerp(attn, eye, alpha)  # (1 - alpha) * attn + alpha * I in one operation (a Python number costs a copy in a product)
    return mixed / mixed.sum(-1, keepdim=True).clamp_min(torch.finfo(mixed.dtype).tiny)


def add_identity(attn: Tensor) -> Tensor:
    """``attn + I``: the update ``R = R + Abar @ R`` of Chefer et al. written as a factor,
    since ``R + Abar @ R = (I + Abar) @ R``. No renormalisation.

    Args:
        attn: ``(B, T, T)``.

    Returns:
        ``(B, T, T)``.
    """
    return attn + torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)


def discard_lowest(attn: Tensor, ratio: float) -> Tensor:
    """Zero the lowest ``ratio`` of each example's attention entries, as the discard option
    of vit-explain's rollout does, with one difference: exactly ``int(T * T * ratio)``
    entries other than the class token's attention to itself are zeroed, whereas
    vit-explain takes the ``int(T * T * ratio)`` lowest entries and then spares (CLS, CLS)
    if it is among them, zeroing one fewer.

    Args:
        attn: ``(B, T, T)`` fused attention.
        ratio: fraction of the ``T * T`` entries to zero, in ``[0, 1)``.

    Returns:
        ``(B, T, T)``, a new tensor.
    """
    batch, tokens, _ = attn.shape
    count = int(tokens * tokens * ratio)
    if count == 0:
        return attn
    flat = attn.reshape(batch, -1)
    ranked = flat.clone()
    ranked[:, 0] = torch.inf  # entry (CLS, CLS) is kept
    lowest = ranked.topk(count, dim=-1, largest=False).indices
    return flat.scatter(-1, lowest, 0.0).view_as(attn)


def readout_row(num_tokens: int, spans: Sequence[tuple[int, int]]) -> Tensor:
    """The read-out row ``p``: the average, over ``spans``, of the mean over each span's tokens.

    This is how a classifier pools the last layer's tokens: the class token is the span
    ``(0, 1)``, the mean of the patch tokens ``(S + 1, T)``, a head that averages a
    class-token and a distillation-token head ``[(0, 1), (1, 2)]``.

    Args:
        num_tokens: ``T``.
        spans: ``(start, stop)`` token ranges, each non-empty.

    Returns:
        ``(T,)`` float32, non-negative, summing to 1.
    """
    if not spans:
        raise ValueError("the read-out needs at least one span of tokens")
    row = torch.zeros(num_tokens)
    for start, stop in spans:
        if not 0 <= start < stop <= num_tokens:
            raise ValueError(f"span ({start}, {stop}) is empty or outside the {num_tokens} tokens")
        row[start:stop] += 1.0 / ((stop - start) * len(spans))
    return row


def rollout_row(layers_top_down: Iterable[Tensor], readout: Tensor) -> Tensor:
    """The read-out row times the product: ``p^T M[L] @ M[L-1] @ ... @ M[1]``.

    Only one row is needed, so it is carried as a row vector from the top layer down:
    ``r = p^T M[L]``, then ``r = r @ M[l]``. That is ``O(L * T^2)`` per example
    instead of ``O(L * T^3)``, and each matrix can be built just before it is used and
    freed after, so only one layer's matrix is alive at a time. With ``p = e_0`` this is
    the class token's row of the product.

    Args:
        layers_top_down: per-layer ``(B, T, T)`` matrices, the LAST layer first
            (a generator is fine).
        readout: ``p``, ``(T,)`` (the same for every example) or ``(B, T)``.

    Returns:
        ``(B, T)``, the relevance of every token for the read-out.
    """
    row: Tensor | None = None  # (B, 1, T) between the layers: one product per layer, no reshaping
    for matrix in layers_top_down:
        if row is None:
            p = readout.to(matrix.device, matrix.dtype)
            row = p.unsqueeze(-2) @ matrix  # (1, T) or (B, 1, T) times (B, T, T)
        else:
            row = torch.bmm(row, matrix)
    if row is None:
        raise ValueError("rollout needs at least one layer")
    return row.squeeze(-2)
