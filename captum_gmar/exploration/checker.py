"""The checks of a maps folder's clusters with the model: :class:`ClusterChecker` pastes
every cluster's region on other classes' images beside its null
(:mod:`~captum_gmar.exploration.transplant`), and masks the region of those it confirms
(:mod:`~captum_gmar.exploration.causal`), reading each image once per class;
:func:`decided_by_transplant` lets the transplant flag the clusters it ran on. The checks
themselves are pure, over pixel values and a scoring function; this module is their
plumbing: the images read and processed, the draws seeded, the model scored.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .causal import CausalCheck, causal_check
from .normalise import Part, distributions
from .strategies import DEFAULT_CLUSTERING
from .transplant import Transplant, best_shifts, moved, transplant_check

if TYPE_CHECKING:
    from .strategies import Cluster, Strategies

__all__ = ["CAUSAL_IMAGES", "ClusterChecker", "RankedCluster", "decided_by_transplant"]

#: the most images of a cluster, and of the rest of its class, the checks score
CAUSAL_IMAGES = 64

#: the group's draws' place in the seed sequence ``[seed, class, 3, method]`` (the
#: features' checks draw ``[seed, class]``, ``[seed, class, 1]`` and ``[seed, class, 2, ...]``)
_GROUP_DRAWS = 3


class RankedCluster(Protocol):
    """A cluster by method, class and rank, with its class's clustering and maps: what
    :meth:`ClusterChecker.check_cluster` reads of a :class:`~captum_gmar.heads.cluster.Cluster`."""

    @property
    def method(self) -> str: ...
    @property
    def target(self) -> int: ...
    @property
    def rank(self) -> int: ...
    @property
    def strategies(self) -> Strategies: ...
    @property
    def maps(self) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)  # compared by identity: it holds arrays
class _Draws:
    """One cluster's draws (:meth:`ClusterChecker._draws`)."""

    cluster: Cluster
    #: its images pasted (donors), and the rest of its class's (the control): rows of the maps folder
    inside: np.ndarray
    outside: np.ndarray
    #: the null's donors, as places among the class's rows (``None``: no null)
    null_at: np.ndarray | None


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class _Paste:
    """A group's transplant, applied cluster by cluster (:meth:`ClusterChecker._paste`)."""

    score: Callable[[Tensor], Tensor]
    grid: tuple[int, int]
    #: the images pasted on ``(K, C, H, W)`` and their scores as they are (``None``: no other class)
    others: Tensor | None
    plain: Tensor | None
    #: the class's rows, and its maps' mass ``(N, h, w)`` in their order (the null's donors are moved by it)
    members: np.ndarray
    masses: np.ndarray
    pixels: Callable[[np.ndarray], Tensor]
    seed: int

    def images(self, draws: _Draws) -> tuple[Tensor, Tensor | None]:
        """The cluster's donors and the rest of its class's images drawn (``None``: no rest)."""
        return self.pixels(draws.inside), self.pixels(draws.outside) if len(draws.outside) else None

    def __call__(self, draws: _Draws, donors: Tensor, rest: Tensor | None) -> Transplant:
        """The cluster's region pasted from ``donors`` and its null in one batch; the
        control (``rest``) and the class's own images too where it may confirm."""
        null = None
        if self.others is not None and draws.null_at is not None:
            # each null donor moved by whole patches so that the most of its own map lies on the region
            shifts = best_shifts(torch.from_numpy(self.masses[draws.null_at]), draws.cluster.region)
            patch = torch.tensor([donors.shape[-2] / self.masses.shape[1], donors.shape[-1] / self.masses.shape[2]])
            null = moved(self.pixels(self.members[draws.null_at]), (shifts * patch).round().long())
        check_with = partial(
            transplant_check,
            self.score,
            donors,
            region=draws.cluster.region,
            grid=self.grid,
            seed=self.seed,
            null_donors=null,
            plain=self.plain,
        )
        transplant = check_with(None, self.others, screen=True)
        if not transplant.pasted or transplant.confirms:
            transplant = check_with(rest, self.others)
        return transplant


class ClusterChecker:
    """The checks of every cluster, with a model and the images its maps folder's job read
    (see :func:`~captum_gmar.exploration.explore`). Every cluster of every group: its region
    pasted on up to :data:`CAUSAL_IMAGES` images of other classes, and its null beside it,
    in one batch (:mod:`~captum_gmar.exploration.transplant`, ``screen``). Where the rise
    stands beyond the null as far as a confirmation needs: the control and the class's own
    images too. Where the
    transplant confirms: the masking check (:func:`causal_check`). Each image is read once
    per class, and the images pasted on, and their scores, are the same for every cluster of
    a class.

    Its cost does not grow with the maps: ``2 K`` forward passes a cluster (``K`` the images
    pasted on, at most :data:`CAUSAL_IMAGES`), about ``5 K`` more for each candidate and
    ``7 K`` for the masking check of each confirmed one (docs/explore.md gives the seconds).

    The draws (the images pasted on, drawn by class; the donors and the null's, by class
    and method) are seeded by ``seed``, the class and the method, not by the order the
    groups come in: a group's figures do not depend on the groups checked before it, and
    :meth:`check_cluster` (which ``repair`` runs) gives one cluster the figures it gets
    among all the others."""

    def __init__(self, model: Any, processor: Any | None, images: str | os.PathLike[str] | None, seed: int) -> None:
        from ..imagedata.processing import processor_options
        from ..vit.model import VisionTransformer
        from ..vit.outputs import logit_scores

        if images is None:
            raise ValueError(
                "the causal check (model=, --model) masks the clusters' images: name the image folder the job read (images=, --images)"
            )
        vit = model if isinstance(model, VisionTransformer) else VisionTransformer(model.eval())
        if processor is None:
            from ..reference.inputs import load_image_processor

            try:
                processor = load_image_processor(vit.model)
            except ValueError as error:
                raise ValueError(f"give the model's image processor (processor=): {error}") from None
        self.vit, self.processor, self.root, self.seed = vit, processor, Path(images), seed
        self.options = processor_options(processor, vit.image_size or (224, 224))
        self.scores = logit_scores(vit)

    def run(
        self,
        found: dict[tuple[str, int], Strategies],
        groups: dict[int, np.ndarray],
        images: dict[str, list[str]],
        maps: dict[str, np.ndarray],
        part: Part,
        progress: bool,
    ) -> dict[tuple[str, int, int], CausalCheck]:
        """Every cluster's transplant; the masking check of the confirmed ones (the others'
        :class:`CausalCheck` has ``members=0`` and NaN masking figures; where nothing can be
        pasted, the first-ranked and suspected ones are masked instead).

        Args:
            found: each (method, class) group's strategies.
            groups: each class's rows of the maps folder (the same rows for every method).
            images: each method's image names, row by row.
            maps: each method's maps ``(rows, h, w)``, row by row (the null moves each image
                by its own map); read only at the rows of the classes in ``found``.
            part: the maps' part that counts as their mass (as they were clustered).
            progress: whether to show a progress bar.
        """
        checks: dict[tuple[str, int, int], CausalCheck] = {}
        order = sorted(found, key=lambda group: (group[1], group[0]))  # by class: its images are read once
        bar = tqdm(total=sum(len(found[g].ranking) for g in order), unit="cluster", desc="transplant", disable=not progress)
        cache: dict[int, Tensor] = {}  # row -> its pixel values, for the class at hand
        current, pasted_on = None, np.zeros(0, dtype=np.int64)
        for key, target in order:
            strategies = found[key, target]
            pixels = partial(self._cached, names=images[key], cache=cache)
            if target != current:  # a new class: new images to paste on, the same for all its groups
                current = target
                cache.clear()
                pasted_on = self._pasted_on(groups, target)
            masses = distributions(maps[key][groups[target]], part)[0].reshape(len(groups[target]), *maps[key].shape[1:])
            paste = self._paste(strategies, target, groups[target], masses, pasted_on, pixels)
            for draws in self._draws(strategies, groups[target], len(pasted_on), key, target):
                donors, rest = paste.images(draws)
                transplant = paste(draws, donors, rest)
                cluster, first = draws.cluster, draws.cluster is strategies.ranking[0]
                if transplant.confirms or (not transplant.pasted and (first or cluster.suspected)):  # nothing to paste on: as before
                    check = causal_check(paste.score, donors, rest, cluster.region, paste.grid, seed=self.seed)
                else:  # not masked
                    nan = math.nan
                    check = CausalCheck(members=0, score=nan, region=nan, random=nan, others=0, others_score=nan, others_region=nan)
                checks[key, target, cluster.label] = replace(check, transplant=transplant)
                bar.update()
        bar.close()
        return checks

    def check_cluster(
        self,
        cluster: RankedCluster,
        groups: dict[int, np.ndarray],
        images: Sequence[str],
        part: Part = DEFAULT_CLUSTERING["part"],
    ) -> Transplant:
        """The transplant check of one cluster of a maps folder
        (:func:`~captum_gmar.heads.cluster.find_cluster`'s, clustered with
        :data:`~captum_gmar.exploration.strategies.DEFAULT_CLUSTERING`), with the figures
        :meth:`run` gives it in an ``explore --model`` of the whole folder with those
        settings and this checker's seed (every class explored): its region pasted on
        images explained for the folder's other classes, beside its null and, where it may
        confirm, its control. The clusters ranked before it are drawn for, not scored; no
        masking check. Its ``pasted`` is 0 where the folder explains no other class.

        Args:
            cluster: the cluster, with its class's clustering and maps.
            groups, images: its method's rows of every class and their image names, as
                explore reads them (:func:`~captum_gmar.exploration.reading.method_rows`).
            part: the maps' part its class was clustered by, as :meth:`run`'s.
        """
        pixels = partial(self._cached, names=images, cache={})
        target, strategies = cluster.target, cluster.strategies
        pasted_on = self._pasted_on(groups, target)
        masses = distributions(cluster.maps, part)[0].reshape(cluster.maps.shape)
        paste = self._paste(strategies, target, groups[target], masses, pasted_on, pixels)
        label = strategies.ranking[cluster.rank - 1].label
        ranked = self._draws(strategies, groups[target], len(pasted_on), cluster.method, target)
        draws = next(d for d in ranked if d.cluster.label == label)
        return paste(draws, *paste.images(draws))

    def _pasted_on(self, groups: dict[int, np.ndarray], target: int) -> np.ndarray:
        """The rows of up to :data:`CAUSAL_IMAGES` images explained for classes other than
        ``target``, drawn by the seed and the class: every group of the class pastes on them."""
        elsewhere = [rows for other, rows in groups.items() if other != target]
        if not elsewhere:
            return np.zeros(0, dtype=np.int64)
        return np.random.default_rng([self.seed, target]).permutation(np.concatenate(elsewhere))[:CAUSAL_IMAGES]

    def _draws(self, strategies: Strategies, members: np.ndarray, count: int, method: str, target: int) -> Iterator[_Draws]:
        """Each of ``strategies``' clusters, ranked, with its draws (``members``: the class's
        rows; ``count``: how many images are pasted on). The group's own stream, seeded by
        the seed, the class and the method: its figures do not depend on the groups checked
        before it, and a cluster's draws only on the clusters ranked before it."""
        rng = np.random.default_rng([self.seed, target, _GROUP_DRAWS, zlib.crc32(method.encode())])
        labels = strategies.labels
        for cluster in strategies.ranking:
            inside = rng.permutation(members[labels == cluster.label])[:CAUSAL_IMAGES]
            outside = rng.permutation(members[(labels != cluster.label) & (labels >= 0)])[:CAUSAL_IMAGES]
            clusters = [c.label for c in strategies.ranking if c.label != cluster.label]
            null = None  # the null's donors: the class's other clusters in turn, each as often as the next
            if count and clusters:
                null = np.array([rng.choice(np.flatnonzero(labels == clusters[j % len(clusters)])) for j in range(count)])
            yield _Draws(cluster, inside, outside, null)

    def _paste(
        self,
        strategies: Strategies,
        target: int,
        members: np.ndarray,
        masses: np.ndarray,
        pasted_on: np.ndarray,
        pixels: Callable[[np.ndarray], Tensor],
    ) -> _Paste:
        """The transplant of ``strategies``' clusters of class ``target`` onto the images of
        ``pasted_on`` (scored once, as they are); ``members``: the class's rows, and
        ``masses`` its maps' mass in their order, by which the null's donors are moved."""
        score = partial(self.class_scores, target=target)
        others = pixels(pasted_on) if len(pasted_on) else None
        with torch.no_grad():
            plain = None if others is None else score(others)
        grid = (int(strategies.mean_maps.shape[1]), int(strategies.mean_maps.shape[2]))
        return _Paste(score, grid, others, plain, members, masses, pixels, self.seed)

    def _cached(self, rows: np.ndarray, names: Sequence[str], cache: dict[int, Tensor]) -> Tensor:
        """The pixel values ``(len(rows), C, H, W)`` of the images of ``rows``, each read once into ``cache``."""
        missing = [row for row in dict.fromkeys(int(row) for row in rows) if row not in cache]
        if missing:
            cache.update(zip(missing, self.pixels_of([names[row] for row in missing]), strict=True))
        return torch.stack([cache[int(row)] for row in rows])

    def class_scores(self, pixel_values: torch.Tensor, target: int) -> torch.Tensor:
        """The class ``target``'s score ``(B,)``, as the maps folder stores it."""
        return self.scores(self.vit.logits(pixel_values))[:, target]

    def pixels_of(self, names: Sequence[str]) -> torch.Tensor:
        """The pixel values ``(len(names), C, H, W)`` of the named images of the folder, as the model reads them."""
        from ..imagedata.images import read_image
        from ..imagedata.processing import processed_pixels

        pixels = processed_pixels(self.processor, self.options, [read_image(self.root, name) for name in names])
        return torch.stack(pixels).to(next(self.vit.model.parameters()).device)


def decided_by_transplant(
    found: dict[tuple[str, int], Strategies], checks: dict[tuple[str, int, int], CausalCheck]
) -> dict[tuple[str, int], Strategies]:
    """``found`` with each cluster whose transplant ran (something was pasted) flagged by
    it: flagged where :attr:`~captum_gmar.exploration.transplant.Transplant.confirms`, not
    flagged where not, whatever its suspicion, and its ``reason`` led by the transplant's
    figures. The ranking stays the suspicion's."""
    decided = {}
    for (key, target), strategies in found.items():
        ranking = []
        for cluster in strategies.ranking:
            check = checks.get((key, target, cluster.label))
            transplant = None if check is None else check.transplant
            if transplant is None or not transplant.pasted:
                ranking.append(cluster)
                continue
            verdict = transplant.confirms
            reason = (
                f"{'flagged' if verdict else 'not flagged'} by the transplant ({transplant.summary()}); its maps alone: {cluster.reason}"
            )
            ranking.append(replace(cluster, transplant_confirms=verdict, reason=reason))
        decided[key, target] = replace(strategies, ranking=tuple(ranking))
    return decided
