"""Synthetic patch maps of one class: objects, and a planted shortcut on a share of them;
and a maps folder that holds given maps."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from captum_gmar.dataset_maps.checks import FORMAT, JOB_FILE
from captum_gmar.dataset_maps.storage import Record, ShardWriter
from tools.shortcut.synthetic import Setting, synthetic_class, tag_patches

#: the class of :func:`planted_maps`: a 2 x 2 tag in the top-left corner carrying 60 to 80%
#: of the mass of 10% of the maps, on moving objects (``tools/shortcut/synthetic.py``)
PLANTED = Setting(mass=0.7, mass_spread=1 / 7, tag=2, place="corner", tagged=0.1, objects="moving")
#: the shortcut's patches
TAG = tag_patches(PLANTED)


def planted_maps(count: int, tagged_share: float = 0.1, size: int = 14, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` maps ``float32 (count, size, size)`` of :data:`PLANTED`'s class (with
    ``tagged_share`` of them tagged) and which are tagged ``bool (count,)``."""
    return synthetic_class(replace(PLANTED, count=count, tagged=tagged_share, size=size), seed)


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
