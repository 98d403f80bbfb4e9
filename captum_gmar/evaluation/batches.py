"""Items and batches of evaluation data: stacking items into a :class:`Batch`
(:func:`collate`), choosing the items evaluated (:func:`select`), and an item's image
and masks as a model's image processor prepares them (:func:`processed_item`, through
:mod:`captum_gmar.imagedata.processing`). What an item holds is described in
:mod:`captum_gmar.evaluation.data`, whose data sets make them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..imagedata.processing import processed_pixels, transform_mask

__all__ = ["Batch", "collate", "processed_item", "select", "with_masks"]

#: item entries that are not copied into the rows
_DATA_KEYS = ("pixel_values", "label", "mask", "other_mask")


@dataclass(frozen=True)
class Batch:
    """Items stacked for one pass, ``B`` of them (the readable items of those sampled).

    Attributes:
        pixel_values: ``float (B, C, H, W)``.
        targets: ``int64 (B,)`` the classes to explain.
        masks: ``bool (B, H, W)``, all False where ``has_mask`` is False.
        has_mask: ``bool (B,)``.
        other_masks: ``bool (B, H, W)``, all False where ``has_other`` is False.
        has_other: ``bool (B,)``.
        info: ``B`` dicts of the items' naming entries.
        positions: the ``B`` items' positions among the sampled items.
        unreadable: the sampled items left out as unreadable: their ``"position"``,
            naming entries and ``"error"``.
    """

    pixel_values: Tensor
    targets: Tensor
    masks: Tensor
    has_mask: Tensor
    other_masks: Tensor
    has_other: Tensor
    info: list[dict[str, Any]]
    positions: tuple[int, ...] = ()
    unreadable: tuple[dict[str, Any], ...] = ()

    def __len__(self) -> int:
        return len(self.targets)


def collate(items: Sequence[Mapping[str, Any]]) -> Batch:
    """Stack items (see the module docstring) into a :class:`Batch`, leaving out those
    marked unreadable (a batch of none of them is empty: ``B = 0``, images ``(0, 0, 0, 0)``).

    Raises:
        ValueError: images of different sizes, or a mask whose size is not its image's.
    """
    unreadable = tuple(
        {"position": p, **{k: v for k, v in item.items() if k != "unreadable"}, "error": item["unreadable"]}
        for p, item in enumerate(items)
        if "unreadable" in item
    )
    positions = tuple(p for p, item in enumerate(items) if "unreadable" not in item)
    items = [items[p] for p in positions]
    if not items:
        masks, flags = torch.zeros(0, 0, 0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)
        return Batch(torch.zeros(0, 0, 0, 0), torch.zeros(0, dtype=torch.long), masks, flags, masks, flags, [], (), unreadable)
    shapes = {tuple(item["pixel_values"].shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(
            f"the images of a batch have different sizes {sorted(shapes)}: the image processor must bring every image to one size"
        )
    pixel_values = torch.stack([item["pixel_values"] for item in items])
    size = pixel_values.shape[-2:]

    def stacked(key: str) -> tuple[Tensor, Tensor]:
        present = torch.tensor([item.get(key) is not None for item in items])
        masks = torch.zeros(len(items), *size, dtype=torch.bool)
        for i, item in enumerate(items):
            if item.get(key) is not None:
                if tuple(item[key].shape) != tuple(size):
                    raise ValueError(f"{key} of shape {tuple(item[key].shape)} does not match its image's {tuple(size)}")
                masks[i] = item[key]
        return masks, present

    masks, has_mask = stacked("mask")
    other_masks, has_other = stacked("other_mask")
    info = [{key: value for key, value in item.items() if key not in _DATA_KEYS} for item in items]
    targets = torch.tensor([int(item["label"]) for item in items], dtype=torch.long)
    return Batch(pixel_values, targets, masks, has_mask, other_masks, has_other, info, positions, unreadable)


def select(count: int, limit: int | None, seed: int) -> np.ndarray:
    """The items evaluated out of ``count``: all of them in an order shuffled by ``seed``,
    or the first ``limit`` of that order (so a larger limit extends a smaller one)."""
    order = np.random.default_rng(seed).permutation(count)
    return order if limit is None else order[:limit]


def processed_item(
    processor: Any,
    options: Mapping[str, Any],
    image: Any,
    label: int,
    mask: np.ndarray | None,
    other: np.ndarray | None,
    info: dict[str, Any],
) -> dict[str, Any]:
    """An item as ``processor`` prepares it with ``options``: the image, and its masks
    through the same geometry (:func:`transform_mask`)."""
    (pixel_values,) = processed_pixels(processor, options, [image])
    return with_masks(processor, options, pixel_values, label, mask, other, info)


def with_masks(
    processor: Any,
    options: Mapping[str, Any],
    pixel_values: Tensor,
    label: int,
    mask: np.ndarray | None,
    other: np.ndarray | None,
    info: dict[str, Any],
) -> dict[str, Any]:
    """An item of prepared ``pixel_values``, its masks through the processor's geometry."""
    geometry = {
        key: None if value is None else transform_mask(processor, value, options) for key, value in (("mask", mask), ("other_mask", other))
    }
    return {"pixel_values": pixel_values.float(), "label": label, **geometry, **info}
