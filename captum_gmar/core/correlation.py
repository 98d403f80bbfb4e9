"""Rank and Pearson correlation over the last dimension: the head scores against their
ablation (``heads.locate``, the head-importance diagnostic) and the sanity metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def average_ranks(x: Tensor) -> Tensor:
    """0-based ranks along the last dimension, ties sharing their average rank.

    By sorting: ``O(N log N)`` time and ``O(N)`` memory per row, so pixel maps of any
    size can be ranked. A value's tie group spans ``[lo, hi)`` in the sorted row (the
    values below it, and those not above it), so its average rank is ``(lo + hi - 1) / 2``.

    Args:
        x: ``(..., N)``, without NaN.

    Returns:
        ``(..., N)`` in the default float dtype.
    """
    order = x.argsort(-1)
    ordered = x.gather(-1, order).contiguous()
    lo = torch.searchsorted(ordered, ordered, side="left")
    hi = torch.searchsorted(ordered, ordered, side="right")
    average = (lo + hi - 1) / 2
    return torch.empty_like(average).scatter_(-1, order, average)


def pearson(x: Tensor, y: Tensor, undefined: float) -> Tensor:
    """Pearson correlation along the last dimension; ``undefined`` where either side is
    constant."""
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    scale = (x.square().sum(-1) * y.square().sum(-1)).sqrt()
    return torch.where(scale > 0, (x * y).sum(-1) / scale.clamp_min(torch.finfo(scale.dtype).tiny), undefined)
