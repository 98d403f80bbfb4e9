"""Correlation over the last dimension, shared by the head-importance and sanity metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def average_ranks(x: Tensor) -> Tensor:
    """0-based ranks along the last dimension, ties sharing their average rank.

    Pairwise comparisons, ``O(N^2)`` per row: cheap for a layer's heads and for patch
    grids up to a few thousand patches.
    """
    below = (x.unsqueeze(-1) > x.unsqueeze(-2)).sum(-1)
    tied = (x.unsqueeze(-1) == x.unsqueeze(-2)).sum(-1)
    return below + (tied - 1) / 2


def pearson(x: Tensor, y: Tensor, undefined: float) -> Tensor:
    """Pearson correlation along the last dimension; ``undefined`` where either side is
    constant."""
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    scale = (x.square().sum(-1) * y.square().sum(-1)).sqrt()
    return torch.where(scale > 0, (x * y).sum(-1) / scale.clamp_min(torch.finfo(scale.dtype).tiny), undefined)
