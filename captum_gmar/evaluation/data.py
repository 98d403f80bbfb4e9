"""Evaluation data: map-style datasets of explanation tasks, and their batches.

The runner takes any map-style dataset (``len(dataset)`` and ``dataset[i]``) whose items
are dicts of

- ``"pixel_values"``: ``float (C, H, W)``, the model input;
- ``"label"``: int, the class to explain;
- ``"mask"`` (optional, may be ``None``): ``bool (H, W)``, the explained object's pixels,
  at the geometry of ``pixel_values``;
- ``"other_mask"`` (optional, may be ``None``): ``bool (H, W)``, the pixels of the
  image's other labelled objects, for class sensitivity;
- any other entries: scalars (str, int, float, bool) naming the item (``"scene"``,
  ``"file"``), copied into the result rows.

An item that could not be read and is to be skipped is a dict of ``"unreadable"`` (the
error message) and its naming entries: :func:`collate` leaves it out of the batch and
lists it in ``Batch.unreadable`` (``skip_unreadable=True`` of :class:`ImageFolderTasks`
and :class:`HubDatasetTasks`).

A dataset may have a ``fingerprint`` attribute, a str that names its items in order;
resuming a run checks it. It may also have a ``source(index)`` method, item ``index``'s
:class:`Source` (what identifies its image's content, and its label) found without
decoding the image, which a resumed explanation of the data set compares with what it
recorded, to explain again the images changed since. Items are read one batch at a
time, never all at once.

Four such datasets: :class:`SceneTasks` (the evaluation scenes, one task per item),
:class:`CompositeTasks` (composites of real photos, one task per photo, its reference's
index as the class, for a :class:`~captum_gmar.vit.similarity.SimilarityModel`),
:class:`ImageFolderTasks` (a folder in the layout of :mod:`captum_gmar.imagedata.folder`)
and :class:`HubDatasetTasks` (a Hugging Face ``datasets.Dataset``, e.g. one saved with
``save_to_disk``); all but the scenes for ``vit-tiny`` preprocess each image with the
model's image processor and carry masks through the same geometry (see
:func:`~captum_gmar.imagedata.processing.transform_mask`). Batches, and the preparation
of an item with an image processor, are in :mod:`captum_gmar.evaluation.batches`
(imported here too).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import UnreadableImageError
from ..imagedata.folder import ClassNames, FolderItem, file_digest, object_pixels, read_image, read_region, scan_folder, scan_images, to_rgb
from ..imagedata.photos import Composites
from ..imagedata.processing import processed_pixels, processor_options
from ..imagedata.scenes import PIXEL_MEAN, PIXEL_STD, Scenes, to_pixel_values
from .batches import Batch, collate, processed_item, select, with_masks

__all__ = [
    "Batch",
    "CompositeTasks",
    "HubDatasetTasks",
    "ImageFolderTasks",
    "SceneTasks",
    "Source",
    "collate",
    "open_dataset",
    "select",
]


class _SlotTasks(Dataset):
    """One task per filled slot of a stack of images: a scene's items, a composite's photos.

    Args:
        kind: names the data in the fingerprint (``"scenes"``, ``"composites"``).
        images: ``(N, H, W, 3)`` uint8, the stack.
        slots: ``(N, S)`` int, each slot's class (or photo), ``-1`` where it is empty.
    """

    def __init__(self, kind: str, images: np.ndarray, slots: np.ndarray) -> None:
        #: ``(n,)`` the image and the slot of each of the ``n`` tasks, image by image
        self.image_of, self.slot = np.nonzero(slots >= 0)
        digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
        digest.update(np.ascontiguousarray(slots).tobytes())
        self.fingerprint = f"{kind}:{len(images)}:{digest.hexdigest()[:16]}"

    def __len__(self) -> int:
        return len(self.image_of)

    def place(self, index: int) -> tuple[int, int]:
        """Task ``index``'s image and slot."""
        return int(self.image_of[index]), int(self.slot[index])


class SceneTasks(_SlotTasks):
    """The explanation tasks of evaluation scenes: one per item, scene by scene.

    Item ``k`` of scene ``i`` is explained with its class; its mask is the item's, and
    in a two-item scene the other item's mask is ``other_mask``. Naming entries:
    ``scene`` (index) and ``two_items``.

    Args:
        scenes: the scenes (64 x 64 px).
        processor: the model's image processor, for a model whose input is not the
            scenes as they are (``dinov2-small``'s resizes them to 112 px and normalises
            with ImageNet's statistics); masks then follow the same geometry (see
            :func:`~captum_gmar.imagedata.processing.transform_mask`). ``None``: :func:`~captum_gmar.imagedata.scenes.to_pixel_values`,
            the ``vit-tiny`` model's input.
    """

    #: whether every item has a mask
    has_masks = True

    def __init__(self, scenes: Scenes, processor: Any | None = None) -> None:
        super().__init__("scenes", scenes.images, scenes.labels)
        self.scenes = scenes
        #: the scene of each task
        self.scene = self.image_of
        self.processor = processor
        self.options = {} if processor is None else processor_options(processor, scenes.images.shape[1])
        #: the input's normalisation, to draw the images
        self.image_mean = (PIXEL_MEAN,) * 3 if processor is None else tuple(processor.image_mean)
        self.image_std = (PIXEL_STD,) * 3 if processor is None else tuple(processor.image_std)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene, slot = self.place(index)
        two_items = bool(self.scenes.num_items[scene] == 2)
        label, info = int(self.scenes.labels[scene, slot]), {"scene": scene, "two_items": two_items}
        mask, other = self.scenes.masks[scene, slot], (self.scenes.masks[scene, 1 - slot] if two_items else None)
        if self.processor is not None:
            return processed_item(self.processor, self.options, self.scenes.images[scene], label, mask, other, info)
        return {
            "pixel_values": to_pixel_values(self.scenes.images[scene : scene + 1])[0],
            "label": label,
            "mask": torch.from_numpy(mask.copy()),
            "other_mask": None if other is None else torch.from_numpy(other.copy()),
            **info,
        }


class CompositeTasks(_SlotTasks):
    """The explanation tasks of composites of photos: one per photo, composite by composite.

    Photo ``k`` of a composite is explained with its index in the list of photos (the
    index of its reference embedding, the class of a
    :class:`~captum_gmar.vit.similarity.SimilarityModel`); its mask is its cell, and
    ``other_mask`` the cells of the composite's other photos. Naming entries:
    ``composite`` (index), ``photos`` (2 or 4) and ``photo`` (its name).

    Args:
        composites: from :func:`~captum_gmar.imagedata.photos.make_composites`.
        names: the photos' names, in the order ``composites.photos`` indexes them.
        processor: the model's image processor; masks follow its geometry.
    """

    has_masks = True

    def __init__(self, composites: Composites, names: Sequence[str], processor: Any) -> None:
        super().__init__("composites", composites.images, composites.photos)
        self.composites = composites
        self.names = list(names)
        #: the composite of each task
        self.composite = self.image_of
        self.processor = processor
        self.options = processor_options(processor, composites.images.shape[1:3])
        self.image_mean, self.image_std = tuple(processor.image_mean), tuple(processor.image_std)

    def __getitem__(self, index: int) -> dict[str, Any]:
        composite, slot = self.place(index)
        photos, masks = self.composites.photos[composite], self.composites.masks[composite]
        label = int(photos[slot])
        other = masks[[s for s in range(len(photos)) if s != slot and photos[s] >= 0]].any(0)
        info = {"composite": composite, "photos": int((photos >= 0).sum()), "photo": self.names[label]}
        return processed_item(self.processor, self.options, self.composites.images[composite], label, masks[slot], other, info)


class _Processed(Dataset, ABC):
    """Images preprocessed by a model's image processor, masks through the same geometry."""

    def __init__(
        self, processor: Any, image_size: int | Sequence[int], order: np.ndarray, names: Sequence[str], skip_unreadable: bool
    ) -> None:
        self.processor = processor
        self.skip_unreadable = skip_unreadable
        self.options = processor_options(processor, image_size)
        self.order = order
        #: the processor's normalisation, to draw the images
        self.image_mean = getattr(processor, "image_mean", None)
        self.image_std = getattr(processor, "image_std", None)
        # surrogateescape: a file name that is not UTF-8 as the bytes it is
        self.fingerprint = hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Items ``indices`` (a ``DataLoader`` asks for a batch's at once): the images
        through one call of the image processor (:func:`~captum_gmar.imagedata.processing.processed_pixels`)."""
        read: list[_Read | dict[str, Any]] = []
        for index in indices:
            try:
                read.append(self._read(index))
            except UnreadableImageError as error:
                if not self.skip_unreadable:
                    raise
                read.append({"unreadable": str(error), **self._naming(index)})
        found = [entry for entry in read if isinstance(entry, _Read)]
        pixels = iter(processed_pixels(self.processor, self.options, [entry.image for entry in found]))
        return [
            with_masks(self.processor, self.options, next(pixels), entry.label, entry.mask, entry.other, entry.info)
            if isinstance(entry, _Read)
            else entry
            for entry in read
        ]

    @abstractmethod
    def source(self, index: int) -> Source:
        """Item ``index``'s :class:`Source`, found without decoding its image."""

    @abstractmethod
    def _read(self, index: int) -> _Read:
        """Item ``index``'s image, label, masks and naming entries, as read (see the module docstring)."""

    @abstractmethod
    def _naming(self, index: int) -> dict[str, Any]:
        """Item ``index``'s naming entries, without reading it."""


class Source(NamedTuple):
    """An item's image as the data holds it now, found without decoding it."""

    #: what identifies the image's content: ``sha256:`` and the file's digest (``""`` for
    #: an entry that is no file), or ``dataset:`` and a saved data set's fingerprint
    content: str
    #: its label, as the item has it
    label: int


class _Read(NamedTuple):
    """An item as read, before the image processor."""

    image: Image.Image
    label: int
    mask: np.ndarray | None
    other: np.ndarray | None
    info: dict[str, Any]


class ImageFolderTasks(_Processed):
    """An image folder (layout: :mod:`captum_gmar.imagedata.folder`), shuffled by ``seed``
    and cut to ``limit`` items (see :func:`select`). Naming entry: ``file``.

    Args:
        root: the folder.
        processor: the model's image processor (``AutoImageProcessor``).
        id2label: the model's class names (``config.id2label``); ``None`` reads every
            image of the folder (:func:`~captum_gmar.imagedata.folder.scan_images`),
            unlabelled: each item's ``label`` is then ``-1``.
        image_size: the model's input size (``config.image_size``), used when the
            processor does not resize (:func:`~captum_gmar.imagedata.processing.processor_options`).
        skip_unreadable: an image that cannot be read (truncated, empty, not an image,
            over PIL's decompression-bomb limit) becomes an ``"unreadable"`` item that
            :func:`collate` leaves out, instead of an
            :class:`~captum_gmar.errors.UnreadableImageError` naming it.
        follow_links: read files that symbolic links in the folder lead to outside it
            (by default such a link is refused when the folder is scanned, as a ``..``
            path is; see :func:`~captum_gmar.imagedata.folder.scan_folder`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        processor: Any,
        id2label: Mapping[int | str, str] | None,
        image_size: int | Sequence[int],
        limit: int | None = None,
        seed: int = 0,
        skip_unreadable: bool = False,
        follow_links: bool = False,
    ) -> None:
        self.root = Path(root)
        if id2label is None:
            items = [FolderItem(file, -1, None) for file in scan_images(self.root, follow_links)]
        else:
            items = scan_folder(self.root, id2label, follow_links)
        order = select(len(items), limit, seed)
        self.items: list[FolderItem] = [items[i] for i in order]
        super().__init__(
            processor, image_size, np.arange(len(self.items)), [f"{item.file}\t{item.label}" for item in self.items], skip_unreadable
        )
        #: whether any item has a mask (or boxes)
        self.has_masks = any(item.region is not None for item in self.items)
        #: whether the items carry labels (``id2label`` was given)
        self.labelled = id2label is not None

    def _naming(self, index: int) -> dict[str, Any]:
        return {"file": self.items[index].file}

    def source(self, index: int) -> Source:
        """The file's SHA-256 (reading a file is much cheaper than decoding it), and the item's label."""
        item = self.items[index]
        return Source(file_digest(self.root / item.file), item.label)

    def _read(self, index: int) -> _Read:
        item = self.items[index]
        image = read_image(self.root, item.file)
        mask = None if item.region is None else read_region(self.root, item.region, image.size)
        other = None
        if item.others:
            other = np.logical_or.reduce([read_region(self.root, region, image.size) for region in item.others])
        return _Read(image, item.label, mask, other, self._naming(index))


class HubDatasetTasks(_Processed):
    """A Hugging Face ``datasets.Dataset`` with an ``image`` (or ``img``) column, a
    ``label`` (or ``labels``) column and optionally a ``mask`` column (an image or array,
    non-zero = object, the image's size, holding 0 and one other value), shuffled by
    ``seed`` and cut to ``limit`` items.
    Class labels (``ClassLabel`` names) are matched to the model's class names, plain
    integers taken as the model's class indices. Naming entry: ``index``, the row.

    Args as for :class:`ImageFolderTasks`, with ``dataset`` for ``root`` (and no
    ``follow_links``: the data set is not a folder of files); with ``id2label=None`` the
    label column is not read (and need not exist): every ``label`` is ``-1``.
    """

    def __init__(
        self,
        dataset: Any,
        processor: Any,
        id2label: Mapping[int | str, str] | None,
        image_size: int | Sequence[int],
        limit: int | None = None,
        seed: int = 0,
        skip_unreadable: bool = False,
    ) -> None:
        columns = list(dataset.column_names)
        self.image_column = _column(columns, ("image", "img"), "an image")
        kind = getattr(dataset.features[self.image_column], "_type", None)  # datasets' feature types name themselves
        if kind != "Image":
            raise ValueError(
                f"the data set's {self.image_column!r} column holds {kind or 'values'}, not images: cast it to images first, "
                f"e.g. dataset.cast_column({self.image_column!r}, datasets.Image())"
            )
        self.mask_column = "mask" if "mask" in columns else None
        labels = self._labels(dataset, columns, id2label)
        self.dataset, self.labels = dataset, labels
        #: whether the data set has a mask column
        self.has_masks = self.mask_column is not None
        #: whether the items carry labels (``id2label`` was given)
        self.labelled = id2label is not None
        order = select(len(dataset), limit, seed)
        super().__init__(processor, image_size, order, [f"{i}\t{labels[i]}" for i in order], skip_unreadable)

    def _labels(self, dataset: Any, columns: list[str], id2label: Mapping[int | str, str] | None) -> list[int]:
        """Each row's class index of the model (``-1`` each without ``id2label``)."""
        if id2label is None:
            return [-1] * len(dataset)
        column = _column(columns, ("label", "labels"), "a label")
        classes = ClassNames(id2label)
        names = getattr(dataset.features[column], "names", None)
        labels = list(dataset[column])
        if names is not None:  # ClassLabel: its names must be classes of the model
            to_model = [classes.index(name, f"class {name!r} of the data set") for name in names]
            labels = [to_model[label] if label >= 0 else -1 for label in labels]  # -1: an unlabelled row (a test split's)
        elif any(not isinstance(label, int) or not 0 <= label < classes.count for label in labels):
            raise ValueError(f"the {column!r} column must hold class indices 0..{classes.count - 1} of the model (or be a ClassLabel)")
        return labels

    def _naming(self, index: int) -> dict[str, Any]:
        return {"index": int(self.order[index])}

    def source(self, index: int) -> Source:
        """The data set's fingerprint (``datasets`` makes a new one for any change, and
        ``save_to_disk`` keeps it), so a changed data set is explained again whole; the row's label."""
        return Source(f"dataset:{getattr(self.dataset, '_fingerprint', '')}", self.labels[int(self.order[index])])

    def _read(self, index: int) -> _Read:
        row = int(self.order[index])
        try:  # datasets decodes the image when the row is read
            record = self.dataset[row]
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise UnreadableImageError(f"cannot read the image of row {row}: {error}") from error
        if record[self.image_column] is None:
            raise UnreadableImageError(f"row {row} has no image (its {self.image_column!r} is None)")
        image = to_rgb(record[self.image_column], f"the image of row {row}")
        mask = None
        if self.mask_column is not None and record[self.mask_column] is not None:
            mask = object_pixels(np.asarray(record[self.mask_column]), f"the mask of row {row}")
            mask = np.asarray(mask.any(-1)) if mask.ndim == 3 else mask
            if mask.shape != (image.height, image.width):
                raise ValueError(
                    f"row {row}: the mask is {mask.shape[1]}x{mask.shape[0]} px but its image is {image.width}x{image.height} px"
                )
        return _Read(image, self.labels[row], mask, None, self._naming(index))


def _column(columns: list[str], names: tuple[str, ...], what: str) -> str:
    for name in names:
        if name in columns:
            return name
    raise ValueError(f"the data set needs {what} column ({' or '.join(names)}); it has {', '.join(columns)}")


def open_dataset(
    path: str | os.PathLike[str],
    processor: Any,
    id2label: Mapping[int | str, str] | None,
    image_size: int | Sequence[int],
    limit: int | None = None,
    seed: int = 0,
    skip_unreadable: bool = False,
    follow_links: bool = False,
) -> ImageFolderTasks | HubDatasetTasks:
    """``--data``: a folder saved by ``datasets.Dataset.save_to_disk`` (it holds
    ``dataset_info.json`` and ``state.json``), else an image folder. Everything is
    checked here, before a model is needed; images are read later, item by item (and,
    with ``skip_unreadable``, those that cannot be read are skipped; with
    ``follow_links``, an image folder's symbolic links out of it are followed: see
    :class:`ImageFolderTasks`). With ``id2label=None`` no labels are read: every image
    is an item, labelled ``-1``.

    Raises:
        FileNotFoundError, ValueError: with what to change (also for a saved data set
        without the ``datasets`` package, an optional dependency).
    """
    path = Path(path)
    if (path / "dataset_dict.json").is_file():
        raise ValueError(
            f"{str(path)!r} holds a DatasetDict; save the split to evaluate alone, e.g. dataset['validation'].save_to_disk(DIR)"
        )
    if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        try:
            from datasets import load_from_disk
        except ImportError:
            raise ValueError(
                f"{str(path)!r} is a saved Hugging Face data set, which needs the datasets package: pip install 'captum-gmar[datasets]'"
            ) from None
        return HubDatasetTasks(load_from_disk(str(path)), processor, id2label, image_size, limit, seed, skip_unreadable)
    return ImageFolderTasks(path, processor, id2label, image_size, limit, seed, skip_unreadable, follow_links)
