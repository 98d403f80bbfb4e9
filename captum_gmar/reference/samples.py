"""Bundled evaluation scenes (``samples.npz``), so demos and tests need no data package.

The file holds 4 one-item and 4 two-item test-split scenes chosen by a fixed rule:
generate candidates from seed :data:`SAMPLES_SEED` and keep, in generation order, the
first scenes of each kind that the reference model gets right (one-item: top-1 is the
class; two-item: the top 2 are the two classes). Rebuild it with
``python -m captum_gmar.reference.samples``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import ViTForImageClassification

from ..datasets import Scenes, make_scenes, to_pixel_values

__all__ = ["SAMPLES_PATH", "SAMPLES_SEED", "load_sample_scenes", "make_sample_scenes"]

#: The bundled file.
SAMPLES_PATH = Path(__file__).resolve().parent / "samples.npz"

#: Seed of the candidate scenes.
SAMPLES_SEED = 7

_CANDIDATES = 64  # per kind; far more than needed at the model's accuracy


def load_sample_scenes() -> Scenes:
    """The bundled scenes: 4 one-item then 4 two-item, ``images uint8 (8, 64, 64, 3)``,
    ``labels int64 (8, 2)``, ``masks bool (8, 2, 64, 64)``, ``num_items int64 (8,)``."""
    with np.load(SAMPLES_PATH) as f:
        return Scenes(
            images=f["images"], labels=f["labels"], masks=f["masks"], num_items=f["num_items"]
        )


@torch.no_grad()
def make_sample_scenes(
    model: ViTForImageClassification,
    per_kind: int = 4,
    seed: int = SAMPLES_SEED,
    data_dir: str | os.PathLike[str] | None = None,
) -> Scenes:
    """Apply the selection rule of the module docstring; returns ``2 * per_kind`` scenes."""
    chosen = []
    for k, rule in ((1, _top1_right), (2, _top2_right)):
        candidates = make_scenes(_CANDIDATES, "test", seed + k, num_items=k, data_dir=data_dir)
        logits = model(pixel_values=to_pixel_values(candidates.images)).logits
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


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild ``samples.npz`` from a model directory (default: the shipped model)."""
    from . import REFERENCE_MODEL_DIR  # not at the top: the package imports this module

    p = argparse.ArgumentParser(prog="python -m captum_gmar.reference.samples")
    p.add_argument("--model", type=Path, default=REFERENCE_MODEL_DIR)
    p.add_argument("--out", type=Path, default=SAMPLES_PATH)
    p.add_argument("--data-dir", type=Path, default=None)
    args = p.parse_args(argv)
    model = ViTForImageClassification.from_pretrained(args.model, local_files_only=True).eval()
    s = make_sample_scenes(model, data_dir=args.data_dir)
    np.savez_compressed(
        args.out, images=s.images, labels=s.labels, masks=s.masks, num_items=s.num_items
    )
    print(f"wrote {len(s)} scenes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
