"""Bundled evaluation scenes, one file per reference model, so demos and tests need no
data package: ``samples.npz`` for ``"vit-tiny"``, ``dinov2_small/samples.npz`` for
``"dinov2-small"``.

Each file holds 4 one-item and 4 two-item test-split scenes chosen by a fixed rule:
generate candidates from seed :data:`SAMPLES_SEED` and keep, in generation order, the
first scenes of each kind that the model gets right (one-item: top-1 is the class;
two-item: the top 2 are the two classes). Rebuild one with
``python -m tools.reference.rebuild_samples --name NAME``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from transformers import BaseImageProcessor, PreTrainedModel

from ..imagedata import Scenes, make_scenes
from .dinov2_classifier import HEAD_DIR
from .inputs import load_image_processor, scene_pixel_values

__all__ = ["SAMPLES_PATH", "SAMPLES_PATHS", "SAMPLES_SEED", "load_sample_scenes", "make_sample_scenes"]

#: The bundled file of the default model, ``"vit-tiny"``.
SAMPLES_PATH = Path(__file__).resolve().parent / "samples.npz"

#: The bundled file of each reference model, by name.
SAMPLES_PATHS = {"vit-tiny": SAMPLES_PATH, "dinov2-small": HEAD_DIR / "samples.npz"}

#: Seed of the candidate scenes.
SAMPLES_SEED = 7

_CANDIDATES = 64  # per kind; far more than needed at the model's accuracy


def load_sample_scenes(name: str = "vit-tiny") -> Scenes:
    """The scenes bundled for reference model ``name``: 4 one-item then 4 two-item,
    ``images uint8 (8, 64, 64, 3)``, ``labels int64 (8, 2)``, ``masks bool (8, 2, 64, 64)``,
    ``num_items int64 (8,)``.

    Raises:
        ValueError: ``name`` is not a reference model's name.
    """
    if name not in SAMPLES_PATHS:
        raise ValueError(f"unknown reference model {name!r}; the names are {', '.join(SAMPLES_PATHS)}")
    with np.load(SAMPLES_PATHS[name]) as f:
        return Scenes(images=f["images"], labels=f["labels"], masks=f["masks"], num_items=f["num_items"])


@torch.no_grad()
def make_sample_scenes(
    model: PreTrainedModel,
    per_kind: int = 4,
    seed: int = SAMPLES_SEED,
    data_dir: str | os.PathLike[str] | None = None,
    processor: BaseImageProcessor | None = None,
) -> Scenes:
    """Apply the selection rule of the module docstring to ``model``, whose input
    ``processor`` prepares (default: the image processor saved with the model); returns
    ``2 * per_kind`` scenes."""
    processor = processor or load_image_processor(model)
    chosen = []
    for k, rule in ((1, _top1_right), (2, _top2_right)):
        candidates = make_scenes(_CANDIDATES, "test", seed + k, num_items=k, data_dir=data_dir)
        logits = model(pixel_values=scene_pixel_values(processor, candidates.images)).logits
        keep = np.flatnonzero(rule(logits.topk(2, dim=-1).indices.numpy(), candidates.labels))
        if len(keep) < per_kind:
            raise RuntimeError(f"only {len(keep)} of {_CANDIDATES} {k}-item candidates are right")
        chosen.append(candidates[keep[:per_kind]])
    fields = ("images", "labels", "masks", "num_items")
    return Scenes(*(np.concatenate([getattr(c, f) for c in chosen]) for f in fields))


def _top1_right(top2: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return top2[:, 0] == labels[:, 0]


def _top2_right(top2: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (np.sort(top2, axis=1) == np.sort(labels, axis=1)).all(axis=1)
