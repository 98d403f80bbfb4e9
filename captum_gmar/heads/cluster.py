"""A cluster of a maps folder as two sets of images, for :func:`~captum_gmar.heads.locate_heads`:
its images, and the other images of its class.

A cluster is named ``METHOD:CLASS:RANK``: the maps of ``METHOD`` explaining ``CLASS`` (an
index or a name), clustered as :func:`~captum_gmar.explore` clusters them with its
defaults (:func:`~captum_gmar.find_strategies`, the images' margins as confidence), and
the cluster ranked ``RANK`` by suspicion (1 the most suspicious).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..dataset_maps import MapRecord, load_maps, read_maps
from ..exploration import find_strategies
from ..exploration.normalise import pool
from ..exploration.strategies import DEFAULT_CLUSTERING, Strategies

__all__ = [
    "Cluster",
    "ClusterImages",
    "class_strategies",
    "cluster_images",
    "find_cluster",
    "parse_cluster",
    "region_words",
]

#: the largest grid side the maps are clustered on, as explore's ``max_side``
MAX_SIDE = 32


@dataclass(frozen=True)
class Cluster:
    """A cluster of a maps folder, and the other clustered maps of its class (their
    records, of the maps folder's ``image`` names)."""

    method: str
    target: int
    target_name: str
    rank: int
    suspicion: float
    flagged: bool
    #: the image names (relative to the job's image folder) of its maps, and of the rest's
    members: tuple[str, ...]
    others: tuple[str, ...]
    #: its region, ``(row, column)`` patches of the :attr:`grid` it was clustered on
    region: tuple[tuple[int, int], ...]
    #: the clustering of its class it is one cluster of, and the maps ``(N, h, w)`` clustered
    #: (:func:`class_strategies`): what its transplant check reads
    #: (:meth:`~captum_gmar.exploration.checker.ClusterChecker.check_cluster`)
    strategies: Strategies = field(compare=False, repr=False)
    maps: np.ndarray = field(compare=False, repr=False)

    @property
    def grid(self) -> tuple[int, int]:
        """The grid ``(h, w)`` its maps were clustered on."""
        return int(self.maps.shape[1]), int(self.maps.shape[2])


def region_words(region: tuple[tuple[int, int], ...] | list[list[int]]) -> str:
    """A region of patches in words, as the explorer page says it: ``"2 patches in rows
    0–2, column 0"`` (the rows and columns it spans)."""

    def span(word: str, values: list[int]) -> str:
        low, high = min(values), max(values)
        return f"{word} {low}" if low == high else f"{word}s {low}–{high}"

    count = f"{len(region)} patch{'' if len(region) == 1 else 'es'}"
    if not region:
        return count
    return f"{count} in {span('row', [p[0] for p in region])}, {span('column', [p[1] for p in region])}"


@dataclass(frozen=True)
class ClusterImages:
    """A cluster's images and its class's other clustered images, as pixel values."""

    cluster: Cluster
    #: ``(N, C, H, W)``: the cluster's images (up to the limit asked for)
    members: Tensor
    #: ``(M, C, H, W)``: the class's other clustered images (up to the limit)
    others: Tensor


def parse_cluster(spec: str) -> tuple[str, str, int]:
    """``"gae:Shirt:1"`` -> ``("gae", "Shirt", 1)``.

    Raises:
        ValueError: not ``METHOD:CLASS:RANK`` with a rank of at least 1.
    """
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit() or int(parts[2]) < 1:
        raise ValueError(f"a cluster is METHOD:CLASS:RANK (e.g. gae:Shirt:1, rank 1 the most suspicious), got {spec!r}")
    return parts[0], parts[1], int(parts[2])


def class_strategies(maps_folder: str | os.PathLike[str], method: str, given: str) -> tuple[list[MapRecord], Strategies, np.ndarray]:
    """The maps of ``method`` explaining class ``given`` (an index or a name) in
    ``maps_folder``, clustered as :func:`~captum_gmar.explore` clusters them with its
    defaults: their records, the strategies, and the maps ``(N, h, w)`` as they were
    clustered (on the grid ``(h, w)``).

    Raises:
        ValueError: a method or class the folder does not hold, or a class with too few maps.
        FileNotFoundError: ``maps_folder`` holds no maps.
    """
    records = load_maps(maps_folder, method)
    names = {record.target: record.target_name for record in records}
    target = next((t for t, n in names.items() if n == given), None) if not given.isdigit() else int(given)
    if target not in names:
        raise ValueError(
            f"{str(maps_folder)!r} holds no maps of {method!r} explaining class {given!r}; it explains "
            + ", ".join(f"{t} ({n})" for t, n in sorted(names.items()))
        )
    chosen = [record for record in records if record.target == target]
    maps = read_maps(chosen).numpy()
    scale = min(1.0, MAX_SIDE / max(maps.shape[1:]))
    maps = pool(maps, (max(1, round(maps.shape[1] * scale)), max(1, round(maps.shape[2] * scale))))
    margins = np.array([record.margin for record in chosen])
    found = find_strategies(
        maps, **DEFAULT_CLUSTERING, confidence=margins if np.isfinite(margins).any() else np.array([r.score for r in chosen])
    )
    return chosen, found, maps


def find_cluster(maps_folder: str | os.PathLike[str], spec: str) -> Cluster:
    """The cluster ``spec`` of ``maps_folder``'s maps (no model needed).

    Raises:
        ValueError: a bad spec, a method or class the folder does not hold, a rank beyond
            the class's clusters, or a class with too few maps to cluster.
        FileNotFoundError: ``maps_folder`` holds no maps.
    """
    method, given, rank = parse_cluster(spec)
    chosen, found, maps = class_strategies(maps_folder, method, given)
    target, name = chosen[0].target, chosen[0].target_name
    if rank > len(found.ranking):
        raise ValueError(f"{method}'s maps of class {name!r} form {len(found.ranking)} clusters: the rank must be at most that")
    cluster = found.ranking[rank - 1]
    inside = found.labels == cluster.label
    outside = ~inside & (found.labels >= 0)
    return Cluster(
        method=method,
        target=int(target),
        target_name=name,
        rank=rank,
        suspicion=cluster.suspicion,
        flagged=cluster.flagged,
        members=tuple(chosen[i].image for i in np.flatnonzero(inside)),
        others=tuple(chosen[i].image for i in np.flatnonzero(outside)),
        region=cluster.region,
        strategies=found,
        maps=maps,
    )


def cluster_images(
    cluster: Cluster, images: str | os.PathLike[str], processor: Any, image_size: tuple[int, int], limit: int = 256, seed: int = 0
) -> ClusterImages:
    """``cluster``'s images and the rest's, read from the image folder ``images`` (the one
    the job read) through the model's ``processor``: up to ``limit`` of each, drawn by
    ``seed`` where there are more (``image_size``: the model's input size, for a
    processor that does not resize).

    Raises:
        FileNotFoundError, UnreadableImageError: an image is missing or cannot be read.
    """
    from ..imagedata.images import read_image
    from ..imagedata.processing import processed_pixels, processor_options

    rng = np.random.default_rng(seed)
    options = processor_options(processor, image_size)

    def pixels(names: tuple[str, ...]) -> Tensor:
        picked = sorted(rng.permutation(len(names))[:limit].tolist())
        return torch.stack(processed_pixels(processor, options, [read_image(Path(images), names[i]) for i in picked]))

    return ClusterImages(cluster, pixels(cluster.members), pixels(cluster.others))
