"""Where a job's methods disagree, image by image.

For every image and every pair of methods ``(a, b)``, four figures (:data:`FIGURES`),
each 1 where the two maps agree fully:

- ``spearman``: Spearman's rank correlation of the two maps over the patches (the
  Pearson correlation of their ranks, ties given their mean rank): do they order the
  patches alike, the faint ones included;
- ``pearson``: the Pearson correlation of their values: do their strong patches coincide;
- ``overlap``: the intersection over union of their top-k patches, ``k`` the
  ``top_share`` of the patches rounded up (10 %: 20 of a 14 x 14 grid, 7 of 8 x 8), ties
  broken by the patches' order;
- ``bhattacharyya``: ``sum sqrt(p q)``, ``p`` and ``q`` the maps as distributions over
  the patches (their positive part, or absolute value, summing to 1; see
  :func:`~captum_gmar.exploration.normalise.distributions`): the share of mass they put
  in the same places, in the geometry :func:`~captum_gmar.exploration.find_strategies`
  clusters in.

A flat (constant) map agrees with none: its four figures are 0 (with a map whose
positive part is zero, ``bhattacharyya`` is). Maps of different grids are first averaged
onto the coarsest (:func:`~captum_gmar.exploration.normalise.pool`). The figures are
computed :data:`BLOCK` images at a time, so that memory beyond the maps stays bounded.

**The score.** Some pairs disagree on every image (attention rollout and relevance
propagation answer different questions), others hardly ever (GMAR and rollout); a raw
``1 - spearman`` would rank images by the noisiest pair. So each pair's ``1 - figure``
is standardised across the images, robustly: minus its median, over 1.4826 times its
median absolute deviation (the standard deviation's estimate for normal data, which a
few odd images do not inflate), that deviation taken as at least
:data:`MIN_DEVIATION`, so that a pair that barely varies does not turn a change of 0.01
into many deviations. A pair's disagreement on an image is the mean of its four
standardised figures: the rank figures see a map moved or shuffled among faint patches,
the value and mass figures one whose strong patches moved, which sparse maps (relevance
propagation's positive part leaves half the patches at zero) show only there. A
method's disagreement on an image is the mean over the pairs it is in, and the image's
``score`` is the largest over the methods: a wrong map (shifted, shuffled) raises every
pair of its method, which the mean keeps whole, while a pair that disagrees a lot on
every image stands at its own median.

**Its scale.** Robust standard deviations from the typical image: 0 is an image on
which the methods agree as they usually do, a negative score one on which they agree
better than usual, and :data:`UNUSUAL` or more (three deviations: 0.13% of the images,
were the figures normal) one on which they disagree as on few others.

With three methods or more, ``odd`` names the method that scored highest where it
scored at least :data:`ODD_MARGIN` (one deviation) above the next (``-1`` elsewhere: no
method stands out; with two, both are in the one pair and ``odd`` is always ``-1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from ._extra import need, require
from .normalise import Part, as_maps, check_part, distributions, pool

__all__ = ["FIGURES", "ODD_MARGIN", "UNUSUAL", "Disagreement", "check_top_share", "find_disagreement", "robust_z"]

#: the pairwise figures, in the order of :attr:`Disagreement.figures`' last axis
FIGURES = ("spearman", "pearson", "overlap", "bhattacharyya")
#: a median absolute deviation (times :data:`MAD_TO_SD`) below this counts as this
MIN_DEVIATION = 0.05
#: the median absolute deviation times this estimates the standard deviation of normal data
MAD_TO_SD = 1.4826
#: images whose figures are computed together
BLOCK = 8192
#: a score at or above this is unusual (three robust standard deviations)
UNUSUAL = 3.0
#: the odd method's disagreement must exceed the next method's by this much
ODD_MARGIN = 1.0


@dataclass(frozen=True)
class Disagreement:
    """The methods' agreement on ``N`` images (defined in :mod:`captum_gmar.exploration.disagreement`)."""

    #: the methods' keys, in the order given
    methods: tuple[str, ...]
    #: the pairs ``(a, b)``, ``a`` before ``b`` in ``methods``
    pairs: tuple[tuple[str, str], ...]
    #: ``float64 (N, pairs, 4)``: each pair's :data:`FIGURES` on each image
    figures: np.ndarray
    #: how many patches ``overlap`` compares per map
    top_k: int
    #: the grid ``(h, w)`` compared on
    grid: tuple[int, int]
    #: ``float64 (N, methods)``: each method's disagreement with the others (robust z units)
    per_method: np.ndarray
    #: ``float64 (N,)``: the image's disagreement, the largest of ``per_method``'s row
    score: np.ndarray
    #: ``int64 (N,)``: the index in ``methods`` of the method that disagrees most by at
    #: least :data:`ODD_MARGIN`; ``-1`` where none does so, and always with two methods
    odd: np.ndarray

    def figure(self, name: str) -> np.ndarray:
        """``float64 (N, pairs)``: one of :data:`FIGURES` for every pair."""
        return self.figures[..., FIGURES.index(name)]


def robust_z(values: np.ndarray) -> np.ndarray:
    """``values`` ``(N, ...)`` standardised along the first axis: minus the median, over
    :data:`MAD_TO_SD` times the median absolute deviation (at least :data:`MIN_DEVIATION`)."""
    median = np.median(values, axis=0)
    deviation = np.maximum(MAD_TO_SD * np.median(np.abs(values - median), axis=0), MIN_DEVIATION)
    return (values - median) / deviation


def check_top_share(top_share: float) -> None:
    """Refuse a ``top_share`` outside ``(0, 1]``, before any work (ValueError)."""
    if isinstance(top_share, bool) or not isinstance(top_share, (int, float)) or not 0 < top_share <= 1:
        raise ValueError(f"top_share must be a number in (0, 1], got {top_share!r}")


def find_disagreement(maps: Mapping[str, Any], *, top_share: float = 0.1, part: Part = "positive") -> Disagreement:
    """How far each image's maps by different methods disagree.

    Args:
        maps: method key -> its maps ``(N, h, w)`` (torch tensor or numpy array; row ``i``
            of every method is the same image), two methods or more. Grids may differ;
            all are averaged onto the coarsest.
        top_share: the share of the patches whose overlap is measured (rounded up).
        part: what of a signed map is its mass, for ``bhattacharyya``: ``"positive"`` or ``"abs"``.

    Returns:
        :class:`Disagreement`.

    Raises:
        ValueError: before any work: fewer than two methods, maps not ``(N, h, w)`` or
            with NaN or infinite values, methods with different ``N``, or a bad setting.
    """
    if len(maps) < 2:
        raise ValueError(f"disagreement needs the maps of two methods or more, got {len(maps)} ({', '.join(maps) or 'none'})")
    check_top_share(top_share)
    check_part(part)
    arrays = {key: as_maps(value, f"the maps of {key!r}") for key, value in maps.items()}
    counts = {key: len(value) for key, value in arrays.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"the methods' maps are of different numbers of images ({counts}): give every method the same images, in order")
    require()
    grid = (min(a.shape[1] for a in arrays.values()), min(a.shape[2] for a in arrays.values()))
    methods = tuple(arrays)
    count, patches = next(iter(counts.values())), grid[0] * grid[1]
    top_k = max(1, math.ceil(top_share * patches))
    pairs = tuple(combinations(methods, 2))
    figures = np.empty((count, len(pairs), len(FIGURES)))
    for start in range(0, count, BLOCK):
        block = slice(start, start + BLOCK)
        views = {key: _Views(pool(values[block], grid).reshape(-1, patches), top_k, part) for key, values in arrays.items()}
        figures[block] = np.stack([views[a].figures(views[b], top_k) for a, b in pairs], axis=1)
    pair_scores = robust_z(1 - figures).mean(axis=2)
    per_method = np.stack([pair_scores[:, [key in pair for pair in pairs]].mean(axis=1) for key in methods], axis=1)
    odd = np.full(count, -1)
    if len(methods) > 2:
        ordered = np.sort(per_method, axis=1)
        stands_out = ordered[:, -1] - ordered[:, -2] >= ODD_MARGIN
        odd[stands_out] = per_method[stands_out].argmax(axis=1)
    return Disagreement(methods, pairs, figures, top_k, grid, per_method, per_method.max(axis=1), odd.astype(np.int64))


class _Views:
    """One method's maps ``(N, P)`` as each figure reads them: centred ranks, centred
    values, top-k patches, and the square roots of the distributions."""

    def __init__(self, values: np.ndarray, top_k: int, part: Part) -> None:
        ranks = need("scipy.stats").rankdata(values, axis=1)
        self.ranks = ranks - ranks.mean(axis=1, keepdims=True)  # all zero for a flat map
        self.centred = values - values.mean(axis=1, keepdims=True, dtype=np.float64)
        chosen = np.argsort(-values, axis=1, kind="stable")[:, :top_k]
        self.top = np.zeros(values.shape, dtype=bool)
        np.put_along_axis(self.top, chosen, True, axis=1)
        self.top[~self.ranks.any(axis=1)] = False  # a flat map has no top patches
        self.roots = np.sqrt(distributions(values[:, None, :], part)[0])  # zero rows for flat maps

    def figures(self, other: _Views, top_k: int) -> np.ndarray:
        """``(N, 4)``: :data:`FIGURES` between these maps and ``other``'s."""
        shared = np.count_nonzero(self.top & other.top, axis=1)
        return np.stack(
            [
                _correlation(self.ranks, other.ranks),
                _correlation(self.centred, other.centred),
                shared / (2 * top_k - shared),
                np.einsum("ij,ij->i", self.roots, other.roots, dtype=np.float64),
            ],
            axis=1,
        )


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of centred rows; 0 where a row is all zero."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide(np.einsum("ij,ij->i", a, b), norms, out=np.zeros(len(a)), where=norms > 0)
