"""How well a clustering of one class's maps isolates the tagged images: pure functions
over label arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Match", "best_match", "cluster_match"]


@dataclass(frozen=True)
class Match:
    """One cluster against the tagged images."""

    #: its label
    cluster: int
    #: its tagged images over all tagged images
    recall: float
    #: its tagged images over its images
    precision: float
    #: the harmonic mean of the two (0 where both are 0)
    f1: float
    #: its 1-based position in the order a user is shown the clusters (``None``: no order given)
    rank: int | None


def cluster_match(labels: np.ndarray, tagged: np.ndarray, cluster: int, order: Sequence[int] | None = None) -> Match:
    """Cluster ``cluster`` of ``labels`` (``int (N,)``; ``-1``, a map set aside, is in no
    cluster) against ``tagged`` (``bool (N,)``); ``order``: the clusters as a user is shown
    them, first first, for the rank.

    Raises:
        ValueError: no image is tagged, or the shapes differ.
    """
    if labels.shape != tagged.shape:
        raise ValueError(f"labels {labels.shape} and tagged {tagged.shape} must have the same shape")
    if not tagged.any():
        raise ValueError("no image is tagged: recall is undefined")
    members = labels == cluster
    hits = int((members & tagged).sum())
    recall, precision = hits / int(tagged.sum()), hits / max(int(members.sum()), 1)
    f1 = 2 * recall * precision / (recall + precision) if hits else 0.0
    rank = None if order is None else list(order).index(cluster) + 1
    return Match(cluster, recall, precision, f1, rank)


def best_match(labels: np.ndarray, tagged: np.ndarray, order: Sequence[int] | None = None) -> Match:
    """The cluster of ``labels`` with the highest F1 against ``tagged`` (the lowest label
    among ties); ``order`` as for :func:`cluster_match`."""
    clusters = sorted(set(labels[labels >= 0].tolist()))
    return max((cluster_match(labels, tagged, c, order) for c in clusters), key=lambda m: (m.f1, -m.cluster))
