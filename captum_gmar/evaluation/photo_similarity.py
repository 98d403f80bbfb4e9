"""The real-photo similarity benchmark: which part of a composite makes it similar to a photo.

The bundled photos (:mod:`captum_gmar.imagedata.photos`) are placed two or four to a
composite; the reference of photo ``k`` is the embedding of another view of it (a crop,
flipped), so class ``k`` of a :class:`~captum_gmar.vit.similarity.SimilarityModel` is the
cosine similarity of the composite to that view, and the ground truth of where the
similarity comes from is photo ``k``'s cell. Every photo of a composite is explained
in turn, which gives class specificity (:func:`class_specificity`: does the map move
with the named photo?) its meaning here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..imagedata.photos import Composites, load_photos, make_composites, reference_views
from ..imagedata.processing import process_images
from ..vit.similarity import SimilarityModel, embed_images
from .data import CompositeTasks, collate

__all__ = ["Center", "PhotoSimilarity", "add_class_specificity", "class_specificity", "own_photo_margins", "photo_similarity"]

#: ``"none"``: the plain cosine; ``"references"``: both embeddings less the mean of the
#: references' embeddings (what every photo shares).
Center = Literal["none", "references"]


@dataclass(frozen=True)
class PhotoSimilarity:
    """A similarity benchmark: the model to explain, its tasks and the photos' names."""

    #: the backbone's cosine similarity to each photo's reference view
    model: SimilarityModel
    tasks: CompositeTasks
    #: photo names, in the order of the references (the classes)
    names: list[str]


def photo_similarity(
    backbone: nn.Module,
    processor: Any,
    composites: int,
    seed: int = 0,
    center: Center = "none",
    counts: tuple[int, ...] = (2, 4),
    candidates: int | None = None,
    photos: Sequence[str] | None = None,
) -> PhotoSimilarity:
    """The benchmark on ``backbone`` with ``composites`` composites of the bundled photos.

    Args:
        backbone: a supported embedding model (see :class:`~captum_gmar.vit.embedding.EmbeddingHead`).
        processor: its image processor (each reference view is processed alone, keeping
            its aspect ratio where the processor does).
        composites: how many composites (each gives 2 or 4 tasks).
        seed: the composites' seed; the reference views use ``seed + 1``.
        center: see :data:`Center`.
        counts: photos per composite, drawn among these.
        candidates: draw this many composites (at least ``composites``) and keep the
            ``composites`` of them with the largest :func:`own_photo_margins`, in the order
            drawn: those on which "which part makes it similar to photo ``k``?" is asked
            of a photo the model finds in it. ``None``: the composites drawn, as they come.
        photos: the names of the photos drawn from, each one a class
            (:func:`~captum_gmar.imagedata.photos.load_photos`; default the nine of
            :data:`~captum_gmar.imagedata.photos.PHOTOS`;
            :func:`~captum_gmar.imagedata.photos.available_photos` adds OpenCV's where
            installed).
    """
    if center not in ("none", "references"):
        raise ValueError(f"center must be 'none' or 'references', got {center!r}")
    loaded = load_photos(photos)
    names, images = list(loaded), list(loaded.values())
    views = reference_views(images, seed + 1)
    references = torch.cat([embed_images(backbone, process_images(processor, view)) for view in views])
    model = SimilarityModel(backbone, references, references.mean(0) if center == "references" else None)
    if candidates is not None and candidates < composites:
        raise ValueError(f"candidates must be at least composites ({composites}), got {candidates}")
    drawn = make_composites(images, candidates or composites, seed, counts=counts)
    if candidates is not None:
        margins = own_photo_margins(model, CompositeTasks(drawn, names, processor))
        keep = np.sort(np.argsort(-margins.numpy(), kind="stable")[:composites])
        drawn = Composites(drawn.images[keep], drawn.photos[keep], drawn.masks[keep])
    return PhotoSimilarity(model, CompositeTasks(drawn, names, processor), names)


def own_photo_margins(model: SimilarityModel, tasks: CompositeTasks) -> Tensor:
    """``(N,)`` per composite of ``tasks``: its lowest similarity to its own photos'
    references less its highest to the other photos'; positive where the model ranks
    every photo of the composite above every other photo."""
    first = np.unique(tasks.composite, return_index=True)[1]  # each composite's first task: its image
    x = collate([tasks[int(i)] for i in first]).pixel_values.to(model.references.device)
    with torch.no_grad():
        scores = model(x).cpu()  # (N, K)
    photos = torch.from_numpy(tasks.composites.photos)  # (N, 4), -1 for an unused slot
    own = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, photos.clamp_min(0), photos >= 0)
    return scores.masked_fill(~own, math.inf).amin(1) - scores.masked_fill(own, -math.inf).amax(1)


def class_specificity(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per method, per composite whose every photo was explained: ``S = sum_k m_k - 1``,
    where ``m_k`` is the share of the map for photo ``k``'s reference that lies on photo
    ``k``'s cell (the rows' ``mass_inside``).

    The cells partition the composite and each map's shares sum to 1, so a map that does
    not change with the target (attention rollout, raw attention) gives exactly ``S = 0``
    whatever it looks like; ``S > 0`` when each reference's map moves mass onto that
    reference's photo (at most ``P - 1`` for ``P`` photos). Unlike ``class_sensitivity``
    it does not depend on the cells' areas.

    Args:
        rows: result rows of a comparison on :class:`~.data.CompositeTasks` (``method``,
            ``composite``, ``photos``, ``mass_inside``).

    Returns:
        method -> the ``S`` of each complete composite, in composite order.
    """
    shares: dict[str, dict[int, list[float]]] = {}
    count: dict[int, int] = {}
    for row in rows:
        share, by_composite = float(row["mass_inside"]), shares.setdefault(str(row["method"]), {})
        if not math.isnan(share):
            by_composite.setdefault(int(row["composite"]), []).append(share)
        count[int(row["composite"])] = int(row["photos"])
    return {
        method: [sum(values) - 1.0 for composite, values in sorted(by_composite.items()) if len(values) == count[composite]]
        for method, by_composite in shares.items()
    }


def add_class_specificity(summary: list[dict[str, Any]], rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``summary`` (:func:`~.report.summarize`) with each method's mean
    :func:`class_specificity` and its standard error (``class_specificity_sem``)."""
    per_method = class_specificity(rows)
    for entry in summary:
        values = per_method.get(str(entry["method"]), [])
        if len(values) > 1:
            mean = sum(values) / len(values)
            entry["class_specificity"] = mean
            entry["class_specificity_sem"] = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
    return summary
