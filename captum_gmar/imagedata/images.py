"""Reading one image file or mask as a folder's images are read: upright (the EXIF
orientation applied), as 8-bit RGB, with a file that is no image named in words; a mask's
values checked to hold one object. Used by :mod:`captum_gmar.imagedata.folder` (which
re-exports these names) and the data sets of :mod:`captum_gmar.evaluation.data`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnreadableImageError

if TYPE_CHECKING:  # imported where used: importing the package needs no PIL
    from PIL import Image

__all__ = ["file_digest", "not_a_file", "object_pixels", "read_image", "to_rgb"]


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


def file_digest(path: str | os.PathLike[str]) -> str:
    """What identifies a file's content: ``sha256:`` and the SHA-256 of its bytes (as
    ``sha256sum`` prints it; hashing an image costs a small part of decoding it); ``""``
    for an entry that is no file that can be read (:func:`not_a_file`)."""
    if not_a_file(path):
        return ""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(2**20):
                digest.update(chunk)
    except OSError:
        return ""
    return f"sha256:{digest.hexdigest()}"


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
