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
a dangling link) is an image that cannot be read, as a truncated file is.

:func:`export_scenes` writes evaluation scenes in this layout.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnreadableImageError

if TYPE_CHECKING:  # imported where used: reading a folder needs neither
    from PIL import Image

    from .scenes import Scenes

__all__ = [
    "IMAGE_SUFFIXES",
    "ClassNames",
    "FolderItem",
    "Region",
    "export_scenes",
    "not_a_file",
    "object_pixels",
    "read_image",
    "read_region",
    "scan_folder",
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
        files += [
            _inside(root, path.relative_to(root).as_posix(), "image", follow_links) for path in sorted(folder.rglob("*")) if _is_image(path)
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


def read_image(root: str | os.PathLike[str], file: str) -> Image.Image:
    """The image as an RGB PIL image, upright (its EXIF orientation applied, as viewers
    and the masks drawn on what they show have it); :func:`to_rgb` says which pixel
    formats are read.

    Raises:
        UnreadableImageError: (a ``ValueError``) naming the file, for one that cannot be
            decoded (scanning does not open images, so this is where a broken file
            shows), one over PIL's decompression-bomb limit, one of 32-bit or
            floating-point pixels, or one that is no file (a folder, a symbolic link
            loop: :func:`not_a_file`).
    """
    from PIL import Image, ImageOps

    why = not_a_file(Path(root) / file)
    if why:
        raise UnreadableImageError(f"cannot read image {file!r}: it {why}")
    try:
        with Image.open(Path(root) / file) as image:
            ImageOps.exif_transpose(image, in_place=True)  # in place: keeps image.format, which to_rgb reads
    except Image.DecompressionBombError as error:  # not an OSError
        raise UnreadableImageError(
            f"cannot read image {file!r}: {error} (raise PIL.Image.MAX_IMAGE_PIXELS to read it if you trust it)"
        ) from error
    except (OSError, ValueError) as error:  # UnidentifiedImageError is an OSError
        raise UnreadableImageError(f"cannot read image {file!r}: {error}") from error
    return to_rgb(image, f"image {file!r}")


def to_rgb(image: Image.Image, name: str) -> Image.Image:
    """A decoded image as 8-bit RGB.

    16-bit images (grey PNGs and TIFFs, PIL mode ``I;16``; 16-bit PGMs, mode ``I`` of
    format PPM) are scaled from 0..65535 to 0..255 (PIL reads 16-bit colour PNGs by
    their high byte, which differs by at most 1). 32-bit integer (mode ``I``) and floating-point (mode ``F``) images are
    refused: no format fixes their range (0..1, 0..255, 0..65535 or a measured
    quantity), so any scale would be a guess that reads some images as black or white.

    Raises:
        UnreadableImageError: naming the image (``name``), for 32-bit or floating-point
            pixels.
    """
    from PIL import Image

    if image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PPM"):  # PPM scales any maxval to 0..65535
        # / 257 = * 255 / 65535: an 8-bit value v widened to 16 bits (v * 257) reads back as v
        grey = np.rint(np.asarray(image, dtype=np.float64) / 257)
        return Image.fromarray(grey.astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):
        kind = "32-bit integers" if image.mode == "I" else "floating-point numbers"
        raise UnreadableImageError(
            f"cannot read {name}: its pixels are {kind} (PIL mode {image.mode}), whose range is unknown; convert it to an 8- or 16-bit image"
        )
    return image.convert("RGB")


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a file that can be read, in words (``"is a folder, not an image
    file"``, ``"is a symbolic link loop"``, ``"does not exist"``, ...); ``None`` for a file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link loop, which cannot be resolved"
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"is a symbolic link to {os.readlink(path)!r}, which does not exist" if os.path.islink(path) else "does not exist"
        return f"cannot be read ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(mode):  # a FIFO would block the reader
        return "is not a regular file"
    return None


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


def object_pixels(values: np.ndarray, name: str) -> np.ndarray:
    """A mask's non-zero values, the object's pixels (``values != 0``).

    Raises:
        ValueError: naming the mask (``name``), for one that holds more than 0 and one
            other value.
    """
    levels = np.unique(values)
    if np.count_nonzero(levels) > 1:  # anti-aliased edges or a class-index map: "non-zero" would merge them into one object
        shown = ", ".join(str(level) for level in levels[:6]) + (", ..." if len(levels) > 6 else "")
        raise ValueError(
            f"{name} holds {len(levels)} values ({shown}); a mask holds 0 for the background and one value for the object "
            "(1 or 255): save it without anti-aliasing, one object per mask"
        )
    return values != 0


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
