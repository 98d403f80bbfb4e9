"""How much a cluster of maps looks like a shortcut, and whether it is flagged: pure
functions over the maps' distributions and their cluster labels.

A shortcut (a tag, a watermark, a border) adds mass on a small, fixed region to the maps
of the images that carry it, and leaves the rest of each map as the class's other maps
have it. An object part, or the object seen at one place, differs from the rest of the
class over a wider region, and away from it too. For cluster ``c`` (``n_c`` members; the
class's other clustered maps are the *rest*, ``n_r`` of them), with ``p_i`` each map's
distribution over the ``P`` patches:

1. **Excess.** ``e = mean_c(p) - mean_rest(p)``; its positive part sums to the total
   variation distance ``D`` between the two mean maps (the share of mass the cluster
   moves).
2. **Region.** ``n_eff = exp(H(e+ / D))``, the number of patches the positive excess
   effectively covers (``H`` the entropy); the region ``E`` is the ``ceil(n_eff)``
   patches of largest excess. ``localised = 1 - n_eff / P``: 1 for a region of one patch
   on a fine grid, 0 for an excess spread over the whole grid. A share of the grid, so
   that a tag of the same size in the image scores alike on any grid.
3. **What is left.** Every map with the region removed and renormalised; ``D_rest`` the
   total variation distance between the members' and the rest's mean of these residual
   maps, less ``noise``, its expected value had the members been drawn from the same
   maps as the rest: ``(1/2) sqrt(2/pi) sqrt(1/n_c + 1/n_r) sum_j s_j`` (``s_j`` the
   standard deviation of patch ``j`` of the residual maps over all clustered maps).
   ``additive = 1 - max(0, D_rest - noise) / D``: 1 where the region holds all of the
   cluster's difference from the rest (its maps are the class's maps plus something on
   the region), 0 where removing the region leaves them as different as before.
4. ``suspicion = localised * additive`` (clipped to ``[0, 1]``), and the cluster is
   **flagged** when it reaches :data:`FLAG_AT`.

Two further figures describe a cluster without entering its suspicion: ``shared``, the
share of its members that put more mass on the region than 90% of the rest do ("nearly
every member"), and ``confidence``, where the model's score or margin per map is given,
the probability that a member's is higher than a map's of the rest (the area under the
ROC curve: 0.5 where the model is as sure of the cluster as of the rest).

The threshold :data:`FLAG_AT` was chosen on classes without a planted shortcut (the
reference models' own, synthetic ones, one seed of an untouched model on tagged images)
and checked on more of the latter (``docs/results.md``, "Finding a planted shortcut": the
share of (method, class) groups with a flagged cluster, per source).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._extra import need

__all__ = ["FLAG_AT", "FLAG_CALIBRATION", "Suspicion", "cluster_sums", "excess", "excess_direction", "suspicions"]

#: the suspicion at or above which a cluster is flagged
FLAG_AT = 0.8
#: what the flag's threshold was measured against (``docs/results.md``, "Finding a planted shortcut")
FLAG_CALIBRATION = (
    "Where no shortcut was planted, 2 of 290 method-and-class groups had a flagged cluster: 1 of 70 of each reference "
    "model's own classes, none of 70 of the untouched vit-tiny on tagged images, none of 80 synthetic classes"
)
#: maps read per block when summing over the maps: memory stays O(block * P)
_BLOCK = 65536


@dataclass(frozen=True)
class Suspicion:
    """The figures of one cluster (see :mod:`captum_gmar.exploration.suspicion`)."""

    suspicion: float
    localised: float
    additive: float
    #: the total variation distance between the cluster's mean map and the rest's
    difference: float
    #: ``n_eff``, the patches its positive excess effectively covers
    spread: float
    #: the region ``E``: its patches as ``(row, column)``, largest excess first
    region: tuple[tuple[int, int], ...]
    #: the members' and the rest's median mass on the region
    member_mass: float
    rest_mass: float
    shared: float
    #: the AUC of the members' confidence against the rest's; NaN where none was given
    confidence: float

    @property
    def flagged(self) -> bool:
        return self.suspicion >= FLAG_AT


def cluster_sums(p: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``float64 (k, P)``: the sum of the maps ``p`` ``(n, P)`` of each cluster ``0 .. k - 1``."""
    sums = np.zeros((k, p.shape[1]))
    for start in range(0, len(p), _BLOCK):
        block, which = p[start : start + _BLOCK], labels[start : start + _BLOCK]
        for c in np.unique(which):
            sums[c] += block[which == c].sum(axis=0, dtype=np.float64)
    return sums


def excess(sums: np.ndarray, sizes: np.ndarray, c: int) -> np.ndarray:
    """``float64 (P,)``: cluster ``c``'s mean map less the mean map of the other clusters."""
    rest = (sums.sum(axis=0) - sums[c]) / (sizes.sum() - sizes[c])
    return sums[c] / sizes[c] - rest


def excess_direction(sums: np.ndarray, sizes: np.ndarray, c: int) -> np.ndarray:
    """Cluster ``c``'s positive excess as a unit vector (zero where it has none)."""
    positive = np.clip(excess(sums, sizes, c), 0, None)
    norm = np.linalg.norm(positive)
    return positive / norm if norm > 0 else positive


def suspicions(p: np.ndarray, labels: np.ndarray, k: int, width: int, confidence: np.ndarray | None = None) -> list[Suspicion]:
    """The figures of each cluster ``0 .. k - 1``.

    Args:
        p: ``float32 (n, P)``, each row a map's distribution over the patches.
        labels: ``int64 (n,)``, each map's cluster, ``0 .. k - 1`` (every cluster non-empty,
            at least two clusters).
        width: the grid's width (patches per row), to name the region's patches.
        confidence: ``(n,)``: the model's score or margin per map (NaN: unknown), or ``None``.

    Returns:
        one :class:`Suspicion` per cluster, in label order.
    """
    sizes = np.bincount(labels, minlength=k)
    sums = cluster_sums(p, labels, k)
    return [_one(p, labels, c, sums, sizes, width, confidence) for c in range(k)]


def _one(
    p: np.ndarray, labels: np.ndarray, c: int, sums: np.ndarray, sizes: np.ndarray, width: int, confidence: np.ndarray | None
) -> Suspicion:
    patches = p.shape[1]
    e = excess(sums, sizes, c)
    positive = np.clip(e, 0, None)
    difference = float(positive.sum())
    share = positive / difference if difference > 0 else np.full(patches, 1 / patches)
    spread = math.exp(-float(np.sum(share[share > 0] * np.log(share[share > 0]))))
    region = np.argsort(-e, kind="stable")[: math.ceil(spread - 1e-9)]
    members = labels == c
    on_region = p[:, region].sum(axis=1, dtype=np.float64)
    # residual maps: the region removed, each renormalised (a map all on the region has none)
    scale = np.divide(1.0, 1.0 - on_region, out=np.zeros_like(on_region), where=on_region < 1 - 1e-6)
    keep = np.ones(patches, dtype=bool)
    keep[region] = False
    first, second, counts = _weighted_moments(p, keep, scale, members)
    means = first / np.maximum(counts, 1)[:, None]
    gap = 0.5 * float(np.abs(means[0] - means[1]).sum())
    total = counts.sum()
    variance = np.clip(second.sum(axis=0) / total - (first.sum(axis=0) / total) ** 2, 0, None)
    noise = 0.5 * math.sqrt(2 / math.pi) * math.sqrt(1 / max(counts[0], 1) + 1 / max(counts[1], 1)) * float(np.sqrt(variance).sum())
    localised = 1 - spread / patches
    additive = 1 - max(0.0, gap - noise) / difference if difference > 0 else 0.0
    suspicion = float(np.clip(localised * additive, 0.0, 1.0))
    rest_on_region = on_region[~members]
    return Suspicion(
        suspicion=suspicion,
        localised=float(localised),
        additive=float(np.clip(additive, 0.0, 1.0)),
        difference=difference,
        spread=spread,
        region=tuple(divmod(int(j), width) for j in region),
        member_mass=float(np.median(on_region[members])),
        rest_mass=float(np.median(rest_on_region)),
        shared=float(np.mean(on_region[members] > np.quantile(rest_on_region, 0.9))),
        confidence=_auc(confidence[members], confidence[~members]) if confidence is not None else math.nan,
    )


def _weighted_moments(p: np.ndarray, keep: np.ndarray, scale: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sums of the residual maps ``scale_i * p_i[keep]`` and of their squares, over the
    members (row 0) and the rest (row 1), and how many maps of each have a residual."""
    first, second = np.zeros((2, int(keep.sum()))), np.zeros((2, int(keep.sum())))
    counts = np.zeros(2)
    for start in range(0, len(p), _BLOCK):
        block = p[start : start + _BLOCK][:, keep].astype(np.float64) * scale[start : start + _BLOCK, None]
        inside, has = members[start : start + _BLOCK], scale[start : start + _BLOCK] > 0
        for row, where in enumerate((inside & has, ~inside & has)):
            first[row] += block[where].sum(axis=0)
            second[row] += (block[where] ** 2).sum(axis=0)
            counts[row] += where.sum()
    return first, second, counts


def _auc(members: np.ndarray, rest: np.ndarray) -> float:
    """The probability that a member's value exceeds a value of the rest (ties count
    half; the Mann-Whitney U over the pairs), NaN values left out; NaN where either side
    has none."""
    a, b = members[np.isfinite(members)], rest[np.isfinite(rest)]
    if not len(a) or not len(b):
        return math.nan
    return float(need("scipy.stats").mannwhitneyu(a, b).statistic / (len(a) * len(b)))
