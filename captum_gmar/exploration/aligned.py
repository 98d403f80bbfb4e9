"""One shortcut the clustering split: clusters of one class whose directions agree with a flagged one's.

The eigengap may split a shortcut's images into parts, and each part is then flagged
alone, or one flagged and another just short of it, none of them holding the shortcut's
images whole. :func:`aligned_groups` finds such parts among the clusters of a class, by the
direction each moves the class's features in, :func:`joined` makes each group one cluster,
and :func:`undiluted` takes back a join that a part not flagged spoilt. Pure functions over
arrays; the checks are the caller's (:mod:`~captum_gmar.exploration.features`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ._extra import need
from .spectral import numbered

__all__ = ["JOINED_AT", "aligned_groups", "joined", "undiluted"]

#: the cosine of two clusters' directions, one of them flagged (each its images' mean
#: feature less the mean of the class's images in no flagged cluster and not in it), at
#: which they are one shortcut the clustering split. Measured (docs/explore.md): the tint's two halves on one vit-tiny at
#: 0.986, a brightened item's three parts on another at 0.973 to 0.995. Changes the model
#: reads along one direction are one to it: on the tint's model, a contrast change and a
#: cast moved the clean Shirts' features along the tint's own (0.99, 0.97), a blur not
#: (-0.17)
JOINED_AT = 0.9


def aligned_groups(
    features: Tensor, labels: np.ndarray, flagged: Sequence[int], at: float = JOINED_AT, others: Sequence[int] = ()
) -> list[list[int]]:
    """The clusters of ``flagged`` (labels of ``labels``, ``int (N,)``), and of ``others``
    (clusters not flagged), that are one shortcut the clustering split: the groups of two
    or more whose directions (each cluster's mean of ``features`` ``(N, D)`` less that of
    the images in no flagged cluster and not in it) are linked, pair by pair, by a cosine of at least
    ``at``: a chain, so two parts below ``at`` of each other are one group where a third
    links them. A cluster of ``others`` links only to a flagged one, so every group holds
    one flagged cluster at least, first: on a planted grain (docs/explore.md) the clustering
    split its images into two halves at a cosine of 0.971, one flagged, the other's
    direction short of the bar (+0.187 against 0.2), and F1 0.67 became one. Two parts not
    flagged are each in the other's reference, which bends both away from the flagged one:
    they may then not join, a part missed rather than a cluster joined wrongly. None where
    every image is in a flagged cluster; a part not flagged that holds every other image
    has no reference and joins nothing."""
    if not flagged:
        return []
    rest = ~np.isin(labels, flagged)
    # a part not flagged that holds every image outside the flagged has no reference: it joins nothing
    others = [c for c in others if (rest & (labels != c)).any()]
    if not rest.any() or len(flagged) + len(others) < 2:
        return []
    candidates = [*flagged, *others]
    mean = [features[torch.from_numpy(labels == c)].double().mean(dim=0) for c in candidates]
    # each against the images in no flagged cluster and not in it: a part not flagged is no part of its own reference
    directions = torch.stack([m - features[torch.from_numpy(rest & (labels != c))].double().mean(dim=0) for m, c in zip(mean, candidates)])
    unit = directions / directions.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    through_flagged = np.arange(len(candidates)) < len(flagged)
    linked = (unit @ unit.T >= at).numpy() & (through_flagged[:, None] | through_flagged[None, :])
    count, component = need("scipy.sparse.csgraph").connected_components(linked, directed=False)
    groups = [[candidates[int(i)] for i in np.flatnonzero(component == g)] for g in range(count)]
    return [group for group in groups if len(group) > 1]


def joined(labels: np.ndarray, groups: list[list[int]]) -> tuple[np.ndarray, dict[int, tuple[int, ...]]]:
    """``labels`` (``int (N,)``) with each of ``groups`` one cluster, renumbered by size
    (``int64 (N,)``, largest first), and the sizes of the parts of each joined cluster, by its new label."""
    merged = labels.copy()
    for group in groups:
        merged[np.isin(labels, group)] = group[0]
    renumbered = numbered(merged)
    parts = {
        int(renumbered[labels == group[0]][0]): tuple(sorted((int((labels == c).sum()) for c in group), reverse=True)) for group in groups
    }
    return renumbered, parts


def undiluted(groups: list[list[int]], diluted: Callable[[list[int]], bool], alone: list[list[int]]) -> list[list[int]]:
    """``groups`` (of :func:`aligned_groups` with ``others``) as joined, but each that
    ``diluted`` says came out worse for a part not flagged (joined, it is no longer flagged
    and has no place): in its place, the groups of ``alone`` (of the flagged clusters alone)
    that lie within it. The other groups keep their joins."""
    kept = [group for group in groups if not diluted(group)]
    return kept + [part for group in groups if diluted(group) for part in alone if set(part) <= set(group)]
