"""Image folders as users keep them: one subfolder per class, or a ``labels.csv``; masks in a
mirrored ``masks/`` tree or bounding boxes in a ``boxes.csv``.

Layout (all paths relative to the folder, ``/``-separated)::

    DIR/<class>/<name>.<ext>          one explanation per image, of its folder's class
    DIR/masks/<class>/<name>.png      optional: the object's pixels (non-zero = object)
    DIR/labels.csv                    optional, replaces the class folders: columns
                                      file,label[,mask]; a file on several rows is
                                      explained once per row (class sensitivity then
                                      compares each row's mask with the others')
    DIR/boxes.csv                     optional, instead of masks: file,x_min,y_min,x_max,y_max[,label]

Only files inside the folder are read: a ``..`` or absolute path is refused, and so is a
symbolic link that leads out of the folder, unless ``follow_links=True`` (``--follow-links``).

A class is a folder name or ``label`` value matched to the model's ``id2label``: a class
name (case-insensitive) or a class index. Images and masks are read upright, as viewers
show them: a photo's EXIF orientation is applied. Box corners are finite pixel
coordinates of the upright image, ``x_min <= x < x_max`` (fractions are widened to whole pixels, a box
partly outside the image is cut to it); several boxes of one object are united. A mask
holds 0 and one value for the object. Scanning reads names and CSV files only, never
image data, so that a large folder is checked in seconds before a model loads; what needs
the image (a box wholly outside it, a mask's size and values) is checked when it is read.
An entry named like an image that is no file (a folder ``x.png/``, a symbolic link loop or
a dangling link) is an image that cannot be read, as a truncated file is. A folder that
this package wrote results to (it holds their manifest: a maps folder given as ``--out``
inside the data folder, say) is left out of the scan.

:func:`export_scenes` writes evaluation scenes in this layout. Reading one image or mask
file (:func:`read_image`, :func:`to_rgb`, :func:`object_pixels`, :func:`not_a_file`,
:func:`file_digest`) is :mod:`captum_gmar.imagedata.images`'s, imported here too.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from ..files import MANIFEST
from .images import file_digest, not_a_file, object_pixels, read_image, to_rgb

if TYPE_CHECKING:  # imported where used: reading a folder needs neither
    from .scenes import Scenes

__all__ = [
    "IMAGE_SUFFIXES",
    "ClassNames",
    "FolderItem",
    "Region",
    "export_scenes",
    "file_digest",
    "not_a_file",
    "object_pixels",
    "read_image",
    "read_region",
    "scan_folder",
    "scan_images",
    "to_rgb",
]

#: image files the scan picks up (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")

Box = tuple[float, float, float, float]
_CORNERS = ("x_min", "y_min", "x_max", "y_max")


@dataclass(frozen=True)
class Region:
    """Where an object is in an image: a mask file, or boxes (exactly one of the two)."""

    #: mask PNG, relative to the folder
    mask: str | None = None
    #: ``(x_min, y_min, x_max, y_max)`` boxes in the upright image's pixels
    boxes: tuple[Box, ...] = ()
    #: the ``boxes.csv`` row of each box, to name it in errors
    rows: tuple[int, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class FolderItem:
    """One explanation task of a folder: explain ``label`` on the image ``file``."""

    #: image, relative to the folder
    file: str
    #: class index of the model
    label: int
    #: the explained object's region, if known
    region: Region | None
    #: regions of the other labelled objects of the same image (``labels.csv`` rows)
    others: tuple[Region, ...] = ()


def scan_folder(root: str | os.PathLike[str], id2label: Mapping[int | str, str], follow_links: bool = False) -> list[FolderItem]:
    """The explanation tasks of an image folder, in a fixed order (sorted by file, then label).

    Args:
        root: the folder (layout in the module docstring).
        id2label: the model's class names, by index (``config.id2label``).
        follow_links: read files that symbolic links in the folder lead to outside it
            (by default such a file is refused, as a ``..`` path always is).

    Raises:
        FileNotFoundError: a missing folder, or a file that a CSV names.
        ValueError: a layout problem (unknown class, empty folder, bad CSV, a mask and
            boxes for one object, a path out of the folder), with what to change.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    classes = ClassNames(id2label)
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        _inside(root, labels_csv.name, "CSV file", follow_links)
        rows = _read_csv(labels_csv, required=("file", "label"), optional=("mask",))
        tasks = [
            (
                _existing(root, row["file"], labels_csv, follow_links, image=True),
                classes.index(row["label"], f"{labels_csv.name} row {n}"),
                row.get("mask") or None,
            )
            for n, row in rows
        ]
        explicit_masks = "mask" in rows[0][1] if rows else False
    else:
        tasks = [
            (file, classes.index(file.split("/")[0], f"folder {file.split('/')[0]!r}"), None)
            for file in _class_folder_images(root, follow_links)
        ]
        explicit_masks = False
    if not tasks:
        raise ValueError(f"data folder {str(root)!r} holds no images: put them in one subfolder per class, or list them in a labels.csv")
    seen: set[tuple[str, int]] = set()
    for file, label, _ in tasks:
        if (file, label) in seen:
            raise ValueError(f"{file!r} is listed twice with class {classes.names[label]!r}")
        seen.add((file, label))

    regions: dict[tuple[str, int], Region] = {}
    if explicit_masks:
        regions = {(file, label): Region(mask=_existing(root, mask, labels_csv, follow_links)) for file, label, mask in tasks if mask}
    elif (root / "masks").is_dir():
        regions = _mirrored_masks(root, tasks, follow_links)
    boxes_csv = root / "boxes.csv"
    if boxes_csv.is_file():
        _inside(root, boxes_csv.name, "CSV file", follow_links)
        for key, region in _read_boxes(boxes_csv, tasks, classes).items():
            if key in regions:
                raise ValueError(f"{key[0]!r} has both a mask and boxes: give one of the two")
            regions[key] = region

    labels_of: dict[str, list[int]] = {}
    for file, label, _ in tasks:
        labels_of.setdefault(file, []).append(label)
    items = []
    for file, label, _ in sorted(tasks, key=lambda task: (task[0], task[1])):
        others = [regions.get((file, other)) for other in labels_of[file] if other != label]
        found = tuple(region for region in others if region is not None)
        # class sensitivity weighs the mass on every other object: all their regions or none
        items.append(FolderItem(file, label, regions.get((file, label)), found if len(found) == len(others) else ()))
    return items


def scan_images(root: str | os.PathLike[str], follow_links: bool = False) -> list[str]:
    """Every image file of a folder, labelled or not, sorted: those at its top level and in
    its subfolders (``masks/`` aside), as ``/``-paths relative to it, for a job that needs no
    labels (explaining each image's predicted class, or its similarity to references).

    Raises:
        FileNotFoundError: a missing folder.
        ValueError: a folder without images, or a path out of it (see :func:`scan_folder`).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    top = sorted(path.relative_to(root).as_posix() for path in root.iterdir() if _is_image(path))
    files = [_inside(root, file, "image", follow_links) for file in top] + _class_folder_images(root, follow_links)
    if not files:
        raise ValueError(f"data folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(files)


class ClassNames:
    """Matches folder names and CSV labels to class indices: a class index, or a name,
    case-insensitive and with ``-`` for a ``/`` (which a folder name cannot hold)."""

    def __init__(self, id2label: Mapping[int | str, str]) -> None:
        self.count = len(id2label)
        self.names = [str(name) for _, name in sorted((int(i), n) for i, n in id2label.items())]
        self.by_name: dict[str, int | None] = {}
        for index, name in enumerate(self.names):
            key = _folder_key(name)
            self.by_name[key] = None if key in self.by_name else index  # None: two classes read alike

    def index(self, text: str, where: str) -> int:
        text = text.strip()
        if re.fullmatch(r"\d+", text) and int(text) < self.count:
            return int(text)
        index = self.by_name.get(_folder_key(text), -1)
        if index is None:
            raise ValueError(f"{where}: {text!r} matches two classes of the model; use the class index")
        if index >= 0:
            return index
        shown = ", ".join(self.names[:12]) + (", ..." if self.count > 12 else "")
        raise ValueError(
            f"{where}: {text!r} is not a class of the model (a class name, case-insensitive, or an index 0..{self.count - 1}; "
            f"its classes: {shown}); rename the folder or list the files in a labels.csv"
        )


def _folder_key(name: str) -> str:
    return name.strip().lower().replace("/", "-")


def _class_folder_images(root: Path, follow_links: bool) -> list[str]:
    files = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "masks" and not p.name.startswith(".")):
        entries = sorted(folder.rglob("*"))
        # a folder this package wrote results to (a maps folder's overlays, --out inside the data) holds no data
        results = [entry.parent for entry in entries if entry.name == MANIFEST]
        files += [
            _inside(root, path.relative_to(root).as_posix(), "image", follow_links)
            for path in entries
            if _is_image(path) and not any(path.is_relative_to(result) for result in results)
        ]
    return files


def _is_image(path: Path) -> bool:
    """Named like an image: one that is no file (a folder, a link loop) is read, and fails, as an unreadable image."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _inside(root: Path, relative: str, where: str, follow_links: bool) -> str:
    """``relative`` normalised to a ``/``-path inside ``root``, refused where it leads out
    of the folder: always by an absolute or ``..`` path, and through a symbolic link to a
    place outside unless ``follow_links`` (a link within the folder is fine)."""
    path = PurePosixPath(relative.strip().replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{where}: {relative!r} must be a path relative to the data folder")
    if not follow_links:
        target = Path(os.path.realpath(root / path))  # as far as it resolves: a link loop stays where it is
        if not target.is_relative_to(root.resolve()):
            raise ValueError(
                f"{where}: {relative!r} leads out of the data folder through a symbolic link (to {str(target)!r}); "
                "pass --follow-links (follow_links=True) to read it"
            )
    return path.as_posix()


def _existing(root: Path, relative: str, source: Path, follow_links: bool, image: bool = False) -> str:
    """``relative`` normalised to a ``/``-path inside ``root`` (:func:`_inside`); the file
    must exist, or for an ``image`` an entry of that name (one that is no file is read, and
    fails, as an unreadable image)."""
    path = _inside(root, relative, source.name, follow_links)
    if not (os.path.lexists(root / path) if image else (root / path).is_file()):
        raise FileNotFoundError(f"{source.name} names {relative!r}, which is not a file in {str(root)!r}")
    return path


def _read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV with a header holding ``required`` columns."""
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets save UTF-8 with a byte-order mark
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError(
                f"{path.name} needs the columns {','.join(required)} (optional: {','.join(optional)}); it has {','.join(header) or 'no header'}"
            )
        reader.fieldnames = header
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k in required + optional}) for row in reader]


def _mirrored_masks(root: Path, tasks: list[tuple[str, int, str | None]], follow_links: bool) -> dict[tuple[str, int], Region]:
    """``masks/<file with .png>`` for each task whose mask exists (one task per file, one
    file per mask)."""
    regions = {}
    counts: dict[str, int] = {}
    for file, _, _ in tasks:
        counts[file] = counts.get(file, 0) + 1
    image_of: dict[str, str] = {}
    for file, label, _ in tasks:
        mask = PurePosixPath("masks", file).with_suffix(".png").as_posix()
        if (root / mask).is_file():
            if counts[file] > 1:
                raise ValueError(
                    f"{file!r} has several labels, so masks/ cannot say whose mask {mask!r} is: add a mask column to labels.csv"
                )
            if image_of.setdefault(mask, file) != file:  # x.jpg and x.png: one mask cannot be known to be both objects'
                raise ValueError(
                    f"{mask!r} mirrors two images, {image_of[mask]!r} and {file!r}: rename one of them, or give each its mask in a labels.csv mask column"
                )
            regions[(file, label)] = Region(mask=_inside(root, mask, "mask", follow_links))
    if not regions:
        raise ValueError(
            f"{str(root / 'masks')!r} holds no mask of any image: a mask mirrors its image's path, e.g. masks/{PurePosixPath(tasks[0][0]).with_suffix('.png')}"
        )
    return regions


def _read_boxes(path: Path, tasks: list[tuple[str, int, str | None]], classes: ClassNames) -> dict[tuple[str, int], Region]:
    labels_of: dict[str, list[int]] = {}
    for file, label, _ in tasks:
        labels_of.setdefault(file, []).append(label)
    boxes: dict[tuple[str, int], list[tuple[Box, int]]] = {}
    for n, row in _read_csv(path, required=("file", *_CORNERS), optional=("label",)):
        file = PurePosixPath(row["file"].replace("\\", "/")).as_posix()
        if file not in labels_of:
            raise ValueError(f"{path.name} row {n}: {row['file']!r} is not an image of the data set")
        if row.get("label"):
            label = classes.index(row["label"], f"{path.name} row {n}")
            if label not in labels_of[file]:
                raise ValueError(f"{path.name} row {n}: {row['file']!r} is not labelled {row['label']!r}")
        elif len(labels_of[file]) > 1:
            raise ValueError(f"{path.name} row {n}: {row['file']!r} has several labels; say whose box it is in a label column")
        else:
            label = labels_of[file][0]
        try:
            x_min, y_min, x_max, y_max = (float(row[key]) for key in _CORNERS)
            box = (x_min, y_min, x_max, y_max)
        except ValueError:
            raise ValueError(f"{path.name} row {n}: box corners must be numbers") from None
        for key, value in zip(_CORNERS, box):
            if not math.isfinite(value):  # inf, 1e400 or nan: no pixel to round it to
                raise ValueError(f"{path.name} row {n}: {key} is {row[key]!r}; box corners must be finite numbers, pixels of the image")
        if not (0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
            raise ValueError(f"{path.name} row {n}: a box needs 0 <= x_min < x_max and 0 <= y_min < y_max, got {box}")
        boxes.setdefault((file, label), []).append((box, n))
    return {key: Region(boxes=tuple(box for box, _ in value), rows=tuple(n for _, n in value)) for key, value in boxes.items()}


def read_region(root: str | os.PathLike[str], region: Region, size: tuple[int, int]) -> np.ndarray:
    """The region as a ``bool (H, W)`` mask of an image of ``size = (W, H)`` (PIL's order:
    the upright image's, as :func:`read_image` gives it).

    A box partly outside the image is cut to it. A mask file, read upright as the image
    is (its EXIF orientation applied), must have the image's size and hold 0 and at most
    one other value; its non-zero pixels are the object (palette PNGs: non-zero palette
    index; colour PNGs: non-zero grey level).

    Raises:
        ValueError: a box wholly outside the image, a mask file of another size, one
            with several non-zero values, or one that cannot be read; naming it.
    """
    from PIL import Image, ImageOps

    width, height = size
    if region.mask is None:
        mask = np.zeros((height, width), dtype=bool)
        for k, (x_min, y_min, x_max, y_max) in enumerate(region.boxes):
            if x_min >= width or y_min >= height:  # corners are >= 0 (the scan checks): no pixel of the image is in it
                where = f"boxes.csv row {region.rows[k]}" if region.rows else "boxes.csv"
                raise ValueError(
                    f"{where}: the box {region.boxes[k]} lies wholly outside its {width}x{height} px image; "
                    "box corners are pixels of the image upright, as viewers show it"
                )
            mask[math.floor(y_min) : math.ceil(y_max), math.floor(x_min) : math.ceil(x_max)] = True
        return mask
    try:
        with Image.open(Path(root) / region.mask) as image:
            ImageOps.exif_transpose(image, in_place=True)
            if image.size != (width, height):
                raise ValueError(f"mask {region.mask!r} is {image.width}x{image.height} px but its image is {width}x{height} px")
            labels = image.mode in ("1", "L", "P", "I", "F") or image.mode.startswith("I;16")  # any bit depth: the values as stored
            values = np.asarray(image if labels else image.convert("L"))
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read mask {region.mask!r}: {error}") from error
    return object_pixels(values, f"mask {region.mask!r}")


def export_scenes(scenes: Scenes, root: str | os.PathLike[str], class_names: tuple[str, ...] | list[str]) -> int:
    """Write scenes as an image folder with a mirrored ``masks/`` tree.

    Each explained item is one PNG in its class's folder, ``<class>/scene00012.png``, with
    its mask at ``masks/<class>/scene00012.png``: a two-item scene is written once per
    item (the same image in two class folders, each with its item's mask). ``/`` in a
    class name becomes ``-`` (``T-shirt-top``), which :func:`scan_folder` matches back.

    Args:
        scenes: :class:`~captum_gmar.imagedata.scenes.Scenes`.
        root: an empty or new folder.
        class_names: name of each class index.

    Returns:
        The number of images written.
    """
    from PIL import Image

    root = Path(root)
    written = 0
    for i in range(len(scenes)):
        for slot in range(int(scenes.num_items[i])):
            folder = class_names[int(scenes.labels[i, slot])].replace("/", "-")
            for base, array in ((root, scenes.images[i]), (root / "masks", scenes.masks[i, slot].astype(np.uint8) * 255)):
                (base / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(base / folder / f"scene{i:05d}.png")
            written += 1
    return written
