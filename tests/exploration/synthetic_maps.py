"""Synthetic patch maps of one class: objects, and a planted shortcut on a share of them;
and a maps folder that holds given maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from captum_gmar.dataset_maps.checks import FORMAT, JOB_FILE
from captum_gmar.dataset_maps.storage import Record, ShardWriter

#: the shortcut's patches: a 2 x 2 tag in the top-left corner
TAG = (slice(0, 2), slice(0, 2))


def planted_maps(count: int, tagged_share: float = 0.1, size: int = 14, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` maps ``float32 (count, size, size)`` and which are tagged ``bool (count,)``.

    Every map has an object: an elongated Gaussian blob at a random place in the middle
    half of the grid (each side's spread 1.2 to 3 patches), on noise (the absolute value
    of Gaussian noise, a tenth of the blob's peak). A random ``tagged_share`` of the maps
    also put most of their mass (60 to 80 %) on :data:`TAG`.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = rng.uniform(0.25 * size, 0.75 * size, (count, 2)).astype(np.float32)
    spread = rng.uniform(1.2, 3.0, (count, 2)).astype(np.float32)
    blob = np.exp(
        -0.5
        * (
            ((rows - centre[:, 0, None, None]) / spread[:, 0, None, None]) ** 2
            + ((cols - centre[:, 1, None, None]) / spread[:, 1, None, None]) ** 2
        )
    )
    maps = blob + 0.1 * np.abs(rng.standard_normal((count, size, size), dtype=np.float32))
    maps /= maps.sum(axis=(1, 2), keepdims=True)
    tagged = np.zeros(count, dtype=bool)
    tagged[rng.choice(count, round(tagged_share * count), replace=False)] = True
    share = rng.uniform(0.6, 0.8, int(tagged.sum())).astype(np.float32)
    tag = np.zeros((len(share), size, size), dtype=np.float32)
    tag[:, TAG[0], TAG[1]] = rng.uniform(0.7, 1.0, (len(share), 2, 2))  # each tag's patches differ a little
    tag /= tag.sum(axis=(1, 2), keepdims=True)
    maps[tagged] = (1 - share[:, None, None]) * maps[tagged] + share[:, None, None] * tag
    return maps.astype(np.float32), tagged


def write_folder(folder: Path, maps: dict[str, np.ndarray], targets: np.ndarray, scores: np.ndarray | None = None) -> Path:
    """A maps folder holding ``maps`` (method -> ``(N, h, w)``), image ``i`` (``img/i.png``)
    explained for ``targets[i]``, labelled ``i % 3``, predicted ``targets[i]``, its score
    ``scores[i]`` (default 0.5)."""
    methods = {key: key.upper() for key in maps}
    folder.mkdir()
    (folder / JOB_FILE).write_text(json.dumps({"format": FORMAT, "methods": methods, "items": len(targets), "dtype": "float32"}))
    writer = ShardWriter(folder, 0, methods, torch.float32, 2**16)
    for start in range(0, len(targets), 32):
        writer.add(
            [
                Record(
                    i,
                    f"img/{i}.png",
                    int(targets[i]),
                    f"class {targets[i]}",
                    i % 3,
                    int(targets[i]),
                    0.5 if scores is None else float(scores[i]),
                    0.5 - i / len(targets),
                    {k: torch.from_numpy(v[i]) for k, v in maps.items()},
                )
                for i in range(start, min(start + 32, len(targets)))
            ]
        )
    writer.flush()
    return folder
