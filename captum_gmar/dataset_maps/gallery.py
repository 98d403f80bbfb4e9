"""Pictures of a maps folder: ``report.html``, a gallery of its first images, and overlays,
each stored map drawn over its image as a PNG. Both read the stored maps (nothing is
explained again) and the images from the data set the job read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..files import write_atomic
from ..pages.images import colour, own_scale
from ..pages.report import comparison_report, gallery_card
from ..visualization import MAP_CMAP, to_display_image
from .storage import MapRecord, text_name

__all__ = ["overlay", "write_gallery", "write_overlays"]

#: how much of an overlay's colour is the map's (the rest, the image's)
OVERLAY_ALPHA = 0.55


def _images(data: Any, records: Sequence[MapRecord], limit: int | None = None) -> Any:
    """``(the records of one image and target, the image (H, W, 3) in [0, 1])``, in the
    records' order, for the first ``limit`` images (all their targets)."""
    seen: set[int] = set()
    for (item, _), group in groupby(records, key=lambda r: (r.item, r.target)):
        if item not in seen and limit is not None and len(seen) >= limit:
            return
        seen.add(item)
        pixels = data[item]["pixel_values"]
        yield list(group), to_display_image(pixels, getattr(data, "image_mean", None), getattr(data, "image_std", None))


def _at_image(values: Tensor, size: tuple[int, int]) -> Tensor:
    """A stored map ``(h, w)`` at the image's size (bilinear, as ``attribute`` upsamples)."""
    if tuple(values.shape) == size:
        return values
    return torch.nn.functional.interpolate(values[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def write_gallery(
    path: str | os.PathLike[str], data: Any, records: Sequence[MapRecord], images: int, header: Sequence[str], class_names: Sequence[str]
) -> None:
    """``report.html``: the first ``images`` explained images (each target on a card of its
    own) with every method's map, filterable by the explained class.

    Args:
        path: the page's file.
        data: the data set the job read (its items' ``pixel_values`` are drawn).
        records: the job's records (:func:`~captum_gmar.dataset_maps.storage.load_maps`).
        images: how many images to show.
        header: lines naming the model, the data, the device and the command.
        class_names: the model's classes (references, prompts), to name the predicted one.
    """
    methods: list[str] = []
    cards = []
    for together, image in _images(data, records, images):
        methods = methods or [record.method for record in together]  # every image and target has every method
        first = together[0]
        size = image.shape[:2]
        label = f"; label {class_names[first.label]}" if first.label >= 0 else ""
        cards.append(
            gallery_card(
                image,
                {record.method: _at_image(record.map, size) for record in together},
                f"{text_name(first.image)}: {first.target_name} (score {first.score:.3g}; predicted {class_names[first.predicted]}{label})",
                first.target_name,
                {},
            )
        )
    explained = len(records) // max(len(methods), 1)  # (image, target) pairs: one record per method each
    page = comparison_report([], {}, header, methods, cards, left_out=explained - len(cards), title="Maps", left_out_where="index.csv")
    page.save(Path(path))


def overlay(image: np.ndarray, values: Tensor) -> np.ndarray:
    """``values`` ``(h, w)`` on its own colour scale over ``image`` ``(H, W, 3)`` in ``[0, 1]``:
    uint8 ``(H, W, 3)``."""
    heat = colour(own_scale(_at_image(values.float(), image.shape[:2])), MAP_CMAP).astype(np.float32) / 255
    return ((OVERLAY_ALPHA * heat + (1 - OVERLAY_ALPHA) * image) * 255).round().astype(np.uint8)


def write_overlays(folder: str | os.PathLike[str], data: Any, records: Sequence[MapRecord]) -> int:
    """Every stored map over its image, ``<folder>/<item>-<target>-<method>.png`` (the item
    and target as in ``index.csv``). Returns the number of files written."""
    import io

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for together, image in _images(data, records):
        for record in together:
            buffer = io.BytesIO()
            Image.fromarray(overlay(image, record.map)).save(buffer, format="PNG")
            write_atomic(folder / f"{record.item:06d}-{record.target}-{record.method}.png", buffer.getvalue())
            written += 1
    return written
