"""What GMAR's head weights depend on: a two-way decomposition of their departure from
uniform over images and explained classes.

Pure functions over a tensor ``w`` of head weights ``(N, K, L, H)``: ``N`` images, each
explained for the same ``K`` classes (e.g. from
:meth:`~captum_gmar.GMARAttribution.class_head_weights`), ``L`` layers of ``H`` heads,
each layer summing to 1. Where the weights are uniform (``1/H``) GMAR is attention
rollout, so what matters is the deviation ``d = w - 1/H``. As in a two-way analysis of
variance without replication, per layer and head,

``d[i, c] = m + a[i] + b[c] + r[i, c]``

with ``m`` the grand mean over images and classes (a fixed prior, the same for every
image and class), ``a`` the image main effect, ``b`` the class main effect and ``r`` the
image x class interaction. The four parts are orthogonal, so their sums of squares add
up to ``sum d^2`` exactly, and each share says how much of GMAR's departure from rollout
comes from that source.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

#: the parts of the decomposition, in the order of :class:`WeightDecomposition`'s columns
COMPONENTS: tuple[str, ...] = ("prior", "image", "class", "interaction")


class WeightDecomposition(NamedTuple):
    """Shares of the head weights' squared deviation from uniform."""

    #: ``(4,)`` over all layers: prior, image, class, interaction (see :data:`COMPONENTS`); sums to 1
    shares: Tensor
    #: ``(L, 4)`` the same per layer, each row summing to 1
    layer_shares: Tensor
    #: ``(L,)`` root mean square of ``w - 1/H`` per layer (the size of what is shared out)
    layer_rms: Tensor


def decompose_head_weights(weights: Tensor) -> WeightDecomposition:
    """Split the deviation of head weights from uniform into prior, image, class and
    interaction parts (see the module docstring).

    Args:
        weights: ``(N, K, L, H)`` head weights of ``N >= 2`` images, each for the same
            ``K >= 2`` classes; non-negative, each layer summing to 1.

    Returns:
        :class:`WeightDecomposition`; its shares are NaN where the weights are exactly
        uniform (there is no deviation to share out).
    """
    d = _deviation(weights, least=2)
    m = d.mean((0, 1))
    a = d.mean(1) - m
    b = d.mean(0) - m
    r = d - m - a.unsqueeze(1) - b.unsqueeze(0)
    n, k = d.shape[:2]
    # per layer: sum over heads of each part's sum of squares over (image, class) cells
    parts = torch.stack(
        [n * k * m.square().sum(-1), k * a.square().sum((0, -1)), n * b.square().sum((0, -1)), r.square().sum((0, 1, -1))], dim=-1
    )
    total = d.square().sum((0, 1, -1))
    return WeightDecomposition(
        shares=parts.sum(0) / total.sum(),
        layer_shares=parts / total.unsqueeze(-1),
        layer_rms=(total / (n * k * d.shape[-1])).sqrt(),
    )


def class_share(weights: Tensor) -> Tensor:
    """Per image, the share of its weights' squared deviation from uniform that changes
    with the explained class: ``sum (w[c] - mean_c w)^2 / sum (w[c] - 1/H)^2`` over
    classes, layers and heads. 0: the same weights whatever the class (a fixed prior and
    an image effect); 1: the weights average to uniform over the classes.

    Args:
        weights: ``(N, K, L, H)`` as for :func:`decompose_head_weights` (``K >= 2``).

    Returns:
        ``(N,)`` float64 in ``[0, 1]``; NaN for an image whose weights are all uniform.
    """
    d = _deviation(weights, least=1)
    if d.shape[1] < 2:
        raise ValueError(f"class_share needs at least two classes per image, got {d.shape[1]}")
    within = (d - d.mean(1, keepdim=True)).square().sum((1, 2, 3))
    return within / d.square().sum((1, 2, 3))


def _deviation(weights: Tensor, least: int) -> Tensor:
    """``weights - 1/H`` in float64, after checking the shape and that layers sum to 1."""
    if not isinstance(weights, Tensor) or not weights.is_floating_point():
        raise TypeError("weights must be a floating-point torch.Tensor of shape (N, K, L, H)")
    if weights.dim() != 4:
        raise ValueError(f"weights must have shape (N images, K classes, L layers, H heads), got {tuple(weights.shape)}")
    if min(weights.shape[:2]) < least or weights.shape[-1] < 2:
        raise ValueError(f"weights need at least {least} images, {least} classes and 2 heads, got shape {tuple(weights.shape)}")
    w = weights.double()
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    if not torch.allclose(w.sum(-1), torch.ones((), dtype=w.dtype), atol=1e-4):
        raise ValueError("each layer's head weights must sum to 1 (GMAR's do)")
    return w - 1.0 / w.shape[-1]
