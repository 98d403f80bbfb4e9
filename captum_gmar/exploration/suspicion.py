"""How much a cluster of maps looks like a shortcut, and whether it is flagged: pure
functions over the maps' distributions and their cluster labels.

A shortcut (a tag, a watermark, a border, a line of text) adds mass on a fixed region,
of any size, to the maps of the images that carry it, and leaves the rest of each map as
the class's other maps have it. An object part, or the object seen at one place, differs
from the rest of the class away from that region too. For cluster ``c`` (``n_c`` members; the
class's other clustered maps are the *rest*, ``n_r`` of them), with ``p_i`` each map's
distribution over the ``P`` patches:

1. **Excess.** ``e = mean_c(p) - mean_rest(p)``; its positive part sums to the total
   variation distance ``D`` between the two mean maps (the share of mass the cluster
   moves).
2. **Region.** ``n_eff = exp(H(e+ / D))``, the number of patches the positive excess
   effectively covers (``H`` the entropy); the region ``E`` starts as the ``ceil(n_eff)``
   patches of largest excess, and grows where the members' mean, less the rest's scaled
   by the share of mass the members keep outside ``E``, at least doubles the scaled
   rest's and adds a material share of what the region's patches add, while ``E`` holds
   at most half of the rest's mass (:func:`_region`): a member that puts most of its
   mass on a frame has little left for the rest of its map, so the plain excess misses
   the frame's patches where the rest has some mass too. ``localised = 1 - n_eff / P`` describes it (1 for one
   patch, 0 for the whole grid) but does not enter the suspicion: a frame or a line of
   text is as much a shortcut as a corner tag.
3. **What is left, on average.** Every map with the region removed and renormalised;
   ``D_rest`` the total variation distance between the members' and the rest's mean of
   these residual maps, less ``noise``, its expected value had the members been drawn
   from the same maps as the rest: ``(1/2) sqrt(2/pi) sqrt(1/n_c + 1/n_r) sum_j s_j``
   (``s_j`` the standard deviation of patch ``j`` of the residual maps over all
   clustered maps). ``additive = 1 - max(0, D_rest - noise) / D``: 1 where the region
   holds all of the cluster's difference from the rest, 0 where removing the region
   leaves them as different as before.
4. **What is left, map by map.** ``intact`` is the product of two shares, each at
   most 1. The rest's median effective number of patches of a residual map (``exp`` of
   its entropy) over the members' median, counted in full from 0.5 (:data:`_FLATTER`):
   a shortcut's members keep the object the rest of the class shows, each map at least
   half as concentrated as the rest's (a model that relies on a shortcut takes relevance
   off the object: with the whole mark removed, AttnLRP's and GAE's residual maps of the
   marked images were 0.52 to 0.79 times as concentrated on two trained models, 1.03 to
   1.29 times on the untouched model's maps of the same images, ``docs/results.md``); a
   cluster of objects seen at one place,
   in a class whose objects move, has nothing but background left once that place is
   removed, which the mean maps of step 3 cannot tell from an object spread over the
   class. And the members' median mass outside the region over a
   quarter of the rest's: a shortcut leaves its maps some of their mass elsewhere,
   while the rest of a class whose tag forms one cluster "differs" from it everywhere
   but the tag, and keeps almost nothing outside that region.
5. **Beyond chance.** ``chance = (1/2) sqrt(2/pi) sqrt(1/n_c + 1/n_r) sum_j sigma_j``
   (``sigma_j`` the standard deviation of patch ``j`` over all clustered maps) is the
   expected ``D`` of members drawn at random from the class's maps;
   ``beyond = clip((D / chance - 1) / 2, 0, 1)``: 0 for a cluster that differs no more
   than chance would make it (a split of one strategy, which leaves nothing but noise on
   a spread region and so looks additive and intact), 1 from three times the chance
   level (the untouched vit-tiny's clusters of rollout-like maps that were flagged at
   twice it held between 2.0 and 2.7 times).
6. ``suspicion = additive * intact * beyond``, and the cluster is **flagged** when it reaches
   the threshold for its number of maps, :func:`flag_threshold`: the figures of a small
   cluster are noisier, so it must reach more, and one of fewer than
   :data:`MIN_FLAGGED` maps is never flagged.
7. **A second shortcut.** Where a cluster is flagged, each other cluster that is not is
   scored again against the rest less the flagged clusters: a second shortcut in the
   class is not the class's ordinary content, and against a rest that holds the first
   one's mark the second cluster's maps "lack" that mark and look less additive (on
   synthetic classes with two tags, the second tag's cluster scored 0.85 to 0.90 in 10
   of 99 classes, ``docs/results.md``). Where nothing is flagged, nothing is scored again.

Two further figures describe a cluster without entering its suspicion: ``shared``, the
share of its members that put more mass on the region than 90% of the rest do ("nearly
every member"), and ``confidence``, where the model's score or margin per map is given,
the probability that a member's is higher than a map's of the rest (the area under the
ROC curve: 0.5 where the model is as sure of the cluster as of the rest).

The thresholds were chosen on synthetic classes without a shortcut of 20 to 300 maps
(``python -m tools.shortcut.shapes``) and checked on the untouched reference model's own
classes drawn at those sizes (``docs/results.md``, "Shortcuts of any shape": the share of
(method, class) groups with a flagged cluster, per source and class size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ._extra import need

__all__ = [
    "FLAG_AT",
    "FLAG_CALIBRATION",
    "FLAG_RULE",
    "MIN_FLAGGED",
    "Suspicion",
    "cluster_sums",
    "excess",
    "excess_direction",
    "flag_threshold",
    "suspicions",
]

#: the suspicion at or above which a cluster of :data:`FLAG_AT_MAPS` maps or more is flagged
FLAG_AT = 0.9
FLAG_AT_MAPS = 20
#: the fewest maps a flagged cluster has; it must reach :data:`FLAG_SMALL`
MIN_FLAGGED, FLAG_SMALL = 8, 0.99
#: the flag's rule in words
FLAG_RULE = f"suspicion {FLAG_AT} or more for a cluster of {FLAG_AT_MAPS} maps or more, up to {FLAG_SMALL} at {MIN_FLAGGED}; none of fewer"
#: what the flag's thresholds were measured against (``docs/results.md``, "Shortcuts of any shape")
FLAG_CALIBRATION = (
    "Where no shortcut was planted, at most 5% of method-and-class groups had a flagged cluster at each class size of "
    "20, 50, 100 and 300 maps (synthetic classes and the untouched vit-tiny's own classes); a cluster of fewer than "
    f"{MIN_FLAGGED} maps is never flagged"
)
#: a cluster's maps count as intact where they keep this share of the mass the rest keeps
#: outside the region (the whole class less a tag's cluster keeps almost none)
_KEEP_FULL = 0.25
#: a cluster's difference counts in full from this many times its chance level (``beyond``)
_FULL_BEYOND = 3.0
#: the most times the region grows (:func:`_region`); it holds still after two or three
_REGION_STEPS = 5
#: a patch joins the region where the members hold this many times the rest's mass, scaled (:func:`_region`)
_GROWTH = 2.0
#: ... and the mass added there is at least this share of its median over the region (:func:`_region`)
_MATERIAL = 0.2
#: the region grows only while it holds at most this share of the rest's mass (:func:`_region`)
_REST_SHARE = 0.5
#: a cluster's residual maps count as concentrated in full up to 1 / this times as flat as the rest's (``intact``)
_FLATTER = 0.5
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
    #: the members' residual maps as concentrated as the rest's (1) or flatter (towards 0)
    intact: float
    #: how far the difference ``D`` lies beyond its chance level, ``[0, 1]`` (1 from three times it)
    beyond: float
    #: the suspicion that flags a cluster of this many maps; ``None`` for fewer than :data:`MIN_FLAGGED`
    threshold: float | None
    #: whether "the rest" is the class's other maps less the flagged clusters (step 7)
    rest_less_flagged: bool

    @property
    def suspected(self) -> bool:
        """Whether the suspicion reaches the flag (``suspicion >= threshold``)."""
        return self.threshold is not None and self.suspicion >= self.threshold

    @property
    def flagged(self) -> bool:
        return self.suspected


def flag_threshold(maps: int) -> float | None:
    """The suspicion that flags a cluster of ``maps`` maps: :data:`FLAG_SMALL` at
    :data:`MIN_FLAGGED` maps, falling linearly to :data:`FLAG_AT` at :data:`FLAG_AT_MAPS`
    and above; ``None`` (never flagged) below :data:`MIN_FLAGGED`."""
    if maps < MIN_FLAGGED:
        return None
    share = min(1.0, (maps - MIN_FLAGGED) / (FLAG_AT_MAPS - MIN_FLAGGED))
    return FLAG_SMALL - share * (FLAG_SMALL - FLAG_AT)


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
    deviation = float(np.sqrt(_variances(p)).sum())
    own = _mass_and_entropy(p)
    figures = [_one(p, labels, c, sums, sizes, width, confidence, deviation, own) for c in range(k)]
    flagged = [c for c in range(k) if figures[c].flagged]
    for c in range(k):
        others = [f for f in flagged if f != c]
        if figures[c].flagged or not others or sizes.sum() - sizes[c] - sizes[others].sum() == 0:
            continue
        # against the rest less the flagged clusters (step 7 of the module)
        less_sums, less_sizes = sums.copy(), sizes.copy()
        less_sums[others], less_sizes[others] = 0, 0
        again = _one(p, labels, c, less_sums, less_sizes, width, confidence, deviation, own, counted=~np.isin(labels, others))
        figures[c] = replace(again, rest_less_flagged=True)
    return figures


def _variances(p: np.ndarray) -> np.ndarray:
    """``float64 (P,)``: each patch's variance over the maps ``p`` ``(n, P)``, in one pass."""
    first, second = np.zeros(p.shape[1]), np.zeros(p.shape[1])
    for start in range(0, len(p), _BLOCK):
        block = p[start : start + _BLOCK].astype(np.float64)
        first += block.sum(axis=0)
        second += (block**2).sum(axis=0)
    return np.clip(second / len(p) - (first / len(p)) ** 2, 0, None)


def _mass_and_entropy(p: np.ndarray) -> np.ndarray:
    """``float64 (2, n)``: each map's mass and its sum of ``p log p`` (0 where ``p`` is 0), in one pass."""
    own = np.zeros((2, len(p)))
    for start in range(0, len(p), _BLOCK):
        block = p[start : start + _BLOCK].astype(np.float64)
        own[0, start : start + _BLOCK] = block.sum(axis=1)
        own[1, start : start + _BLOCK] = (block * np.log(block, out=np.zeros_like(block), where=block > 0)).sum(axis=1)
    return own


def _chance(members: float, rest: float, deviation: float) -> float:
    """The expected total variation distance between the mean maps of ``members`` and
    ``rest`` maps drawn from one population whose patches' standard deviations sum to
    ``deviation`` (half the expected absolute difference of two normal means, summed)."""
    return 0.5 * math.sqrt(2 / math.pi) * math.sqrt(1 / max(members, 1) + 1 / max(rest, 1)) * deviation


def _one(
    p: np.ndarray,
    labels: np.ndarray,
    c: int,
    sums: np.ndarray,
    sizes: np.ndarray,
    width: int,
    confidence: np.ndarray | None,
    deviation: float,
    own: np.ndarray,
    counted: np.ndarray | None = None,
) -> Suspicion:
    """Cluster ``c``'s figures against the rest: the other maps, only those ``counted``
    (``bool (n,)``) where given (``sums`` and ``sizes`` then count only those). ``own``:
    each map's mass and sum of ``p log p`` (:func:`_mass_and_entropy`)."""
    patches = p.shape[1]
    member_mean = sums[c] / sizes[c]
    e = excess(sums, sizes, c)
    difference = float(np.clip(e, 0, None).sum())
    region, spread = _region(member_mean, member_mean - e)
    members = labels == c
    rest = ~members if counted is None else ~members & counted
    on_region = p[:, region].sum(axis=1, dtype=np.float64)
    # residual maps: the region removed, each renormalised (a map all on the region has none)
    scale = np.divide(1.0, 1.0 - on_region, out=np.zeros_like(on_region), where=on_region < 1 - 1e-6)
    keep = np.ones(patches, dtype=bool)
    keep[region] = False
    first, second, counts, spreads = _residuals(p, keep, scale, members, rest, own, on_region)
    means = first / np.maximum(counts, 1)[:, None]
    gap = 0.5 * float(np.abs(means[0] - means[1]).sum())
    total = counts.sum()
    variance = np.clip(second.sum(axis=0) / total - (first.sum(axis=0) / total) ** 2, 0, None)
    noise = _chance(counts[0], counts[1], float(np.sqrt(variance).sum()))
    localised = 1 - spread / patches
    additive = float(np.clip(1 - max(0.0, gap - noise) / difference if difference > 0 else 0.0, 0.0, 1.0))
    has = scale > 0
    inside, outside = spreads[members & has], spreads[rest & has]
    flatness = float(np.median(outside) / np.median(inside)) if len(inside) and len(outside) else 0.0
    concentrated = min(1.0, flatness / _FLATTER)
    left, rest_left = float(np.median(1 - on_region[members])), float(np.median(1 - on_region[rest]))
    kept = min(1.0, left / (_KEEP_FULL * rest_left)) if rest_left > 0 else 0.0
    intact = concentrated * kept
    chance = _chance(sizes[c], sizes.sum() - sizes[c], deviation)
    beyond = float(np.clip((difference / chance - 1) / (_FULL_BEYOND - 1), 0.0, 1.0)) if chance > 0 else 1.0
    suspicion = additive * intact * beyond
    rest_on_region = on_region[rest]
    return Suspicion(
        suspicion=suspicion,
        localised=float(localised),
        additive=additive,
        difference=difference,
        spread=spread,
        region=tuple(divmod(int(j), width) for j in region),
        member_mass=float(np.median(on_region[members])),
        rest_mass=float(np.median(rest_on_region)),
        shared=float(np.mean(on_region[members] > np.quantile(rest_on_region, 0.9))),
        confidence=_auc(confidence[members], confidence[rest]) if confidence is not None else math.nan,
        intact=intact,
        beyond=beyond,
        threshold=flag_threshold(int(members.sum())),
        rest_less_flagged=False,
    )


def _region(member_mean: np.ndarray, rest_mean: np.ndarray) -> tuple[np.ndarray, float]:
    """The region ``E`` (patch indices, largest excess first) and ``n_eff``, the patches the cluster's added mass
    effectively covers (module docstring, step 2).

    A member's map is modelled as ``(1 - a) q + a t``: ``q`` a map as the rest have them,
    ``t`` what the cluster adds. Outside ``t``'s patches the members' mean is the rest's
    scaled by ``kept = 1 - a``, so the mass the cluster adds is ``member_mean - kept *
    rest_mean``. The plain excess (``kept = 1``) hides the part of a large region (a frame)
    where the rest has some mass too: a member that puts 60% of its mass on the frame keeps
    40% for the rest of its map. Starting from the plain excess's region, ``kept`` is
    estimated from the region (the members' mass outside it over the rest's), and the
    region grows by the patches where the members hold at least :data:`_GROWTH` times the
    scaled rest (as much added as ordinary mass) and the mass added there is material, at
    least :data:`_MATERIAL` times its median over the region (a side of a frame the model
    looks at less than the others), until it holds still. It does not grow past half of
    the rest's mass (:data:`_REST_SHARE`): a shortcut adds mass where the class's other
    maps have little, and a region that would hold most of theirs is the complement of a
    shortcut's cluster (the class's objects, "added" where the tagged maps have less).
    Means only: no pass over the maps.
    """
    plain = member_mean - rest_mean
    spread = _spread(np.clip(plain, 0, None))
    region = np.argsort(-plain, kind="stable")[: math.ceil(spread - 1e-9)]
    for _ in range(_REGION_STEPS):
        outside = 1 - float(rest_mean[region].sum())
        kept = min(1.0, (1 - float(member_mean[region].sum())) / outside) if outside > 1e-6 else 1.0
        added = member_mean - kept * rest_mean
        # the patches of largest added mass (its n_eff), and any other that adds a material share of the region's
        material = np.zeros(len(added), dtype=bool)
        material[np.argsort(-added, kind="stable")[: math.ceil(_spread(np.clip(added, 0, None)) - 1e-9)]] = True
        typical = float(np.median(added[region]))
        if typical > 0:
            material |= added >= _MATERIAL * typical
        doubled = member_mean >= _GROWTH * kept * rest_mean
        grown = np.union1d(region, np.flatnonzero(material & doubled))
        if len(grown) == len(region) or float(rest_mean[grown].sum()) > _REST_SHARE:
            break
        region = grown
    return region[np.argsort(-plain[region], kind="stable")], spread


def _spread(mass: np.ndarray) -> float:
    """``exp`` of the entropy of ``mass`` ``(P,)`` normalised: the patches it effectively
    covers (``P`` where it has none)."""
    total = float(mass.sum())
    if total <= 0:
        return float(len(mass))
    share = mass[mass > 0] / total
    return math.exp(-float(np.sum(share * np.log(share))))


def _residuals(
    p: np.ndarray,
    keep: np.ndarray,
    scale: np.ndarray,
    members: np.ndarray,
    rest: np.ndarray,
    own: np.ndarray,
    on_region: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """In one pass over the residual maps ``scale_i * p_i[keep]``: their sums and the sums
    of their squares over the ``members`` (row 0) and the ``rest`` (row 1), how many maps of each
    have a residual, and each map's effective number of patches, ``exp`` of its entropy
    (``float64 (n,)``; 1 for a map with no residual).

    The sums are products with the weights ``scale`` (BLAS), and the entropy comes from the
    maps' own (``own``, :func:`_mass_and_entropy`; ``on_region``, each map's mass on the
    region) less the region's few patches: with
    ``b = s p`` on the kept patches, ``sum b log b = s log(s) sum p + s sum p log p``,
    both sums over the kept patches. No logarithm of all the maps per cluster: in
    ``find_strategies`` at 300,000 maps the pass took 4.0 s a cluster with one, 0.8 s without."""
    first, second = np.zeros((2, p.shape[1])), np.zeros((2, p.shape[1]))
    has = scale > 0
    weights = np.stack([np.where(members & has, scale, 0.0), np.where(rest & has, scale, 0.0)])  # (2, n)
    counts = np.array([(members & has).sum(), (rest & has).sum()], dtype=np.float64)
    region_entropy = np.zeros(len(p))
    for start in range(0, len(p), _BLOCK):
        block = p[start : start + _BLOCK].astype(np.float64)  # every patch: selecting the kept ones cost more than it saved
        w = weights[:, start : start + _BLOCK]
        first += w @ block
        second += (w * w) @ (block * block)
        region = block[:, ~keep]
        region_entropy[start : start + _BLOCK] = (region * np.log(region, out=np.zeros_like(region), where=region > 0)).sum(axis=1)
    first, second = first[:, keep], second[:, keep]
    kept_mass, kept_entropy = own[0] - on_region, own[1] - region_entropy
    spreads = np.ones(len(p))
    s = scale[has]
    spreads[has] = np.exp(-(s * np.log(s) * kept_mass[has] + s * kept_entropy[has]))
    return first, second, counts, spreads


def _auc(members: np.ndarray, rest: np.ndarray) -> float:
    """The probability that a member's value exceeds a value of the rest (ties count
    half; the Mann-Whitney U over the pairs), NaN values left out; NaN where either side
    has none."""
    a, b = members[np.isfinite(members)], rest[np.isfinite(rest)]
    if not len(a) or not len(b):
        return math.nan
    return float(need("scipy.stats").mannwhitneyu(a, b).statistic / (len(a) * len(b)))
