"""Repair by heads: remove the heads that carry the shortcut, as many as measurement says.

The heads are ranked by :func:`~captum_gmar.heads.locate_heads` (the shortcut's images
against the rest of its class, by their exact ablation effect); then the next head is
removed while the transplant rise keeps falling and clean accuracy stays within the
budget. Every step's measurement is kept (the curve), so that the choice can be read.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..heads import locate_heads, without_heads
from .measurement import Measurement, while_it_falls
from .shortcut import Labelled, Shortcut

__all__ = ["HeadsRepair", "repair_heads"]


@dataclass(frozen=True)
class HeadsRepair:
    """The model without the heads chosen, and the curve that chose them."""

    model: nn.Module
    #: the heads removed, ``(layer, head)``
    heads: tuple[tuple[int, int], ...]
    #: ``(heads removed, measurement)`` from 0 (the model as it was) on
    curve: tuple[tuple[int, Measurement], ...]


def repair_heads(
    model: nn.Module,
    shortcut: Shortcut,
    held_out: Labelled,
    budget: float = 0.01,
    max_heads: int = 12,
    progress: bool = True,
    seed: int = 0,
) -> HeadsRepair:
    """Remove the heads that carry ``shortcut``, one by one in their ranking's order, while
    the transplant rise comes nearer zero (against a change drawn afresh on every image,
    while its rises' root mean square falls:
    :func:`~captum_gmar.repair.measurement.while_it_falls`)
    and clean accuracy (on ``held_out``) loses at most ``budget`` (a share: 0.01 is one
    point) beyond its standard error (:meth:`~captum_gmar.repair.measurement.Measurement.over`);
    at most ``max_heads``.

    Raises:
        ValueError: the shortcut has no images of the rest of its class to contrast with.
        UnsupportedModelError: a family whose heads cannot be removed (see
            :func:`~captum_gmar.heads.without_heads`); the fine-tune repairs those.
    """
    if shortcut.rest is None or not len(shortcut.rest):
        raise ValueError("locating the shortcut's heads needs the rest of its class's images (Shortcut.rest)")
    ranking = locate_heads(model, shortcut.members, shortcut.rest, shortcut.target).ranking
    best, best_model, curve = while_it_falls(
        model, shortcut, held_out, lambda k: without_heads(model, ranking[:k]), min(max_heads, len(ranking)), budget, "head", progress, seed
    )
    return HeadsRepair(best_model, tuple(ranking[:best]), curve)
