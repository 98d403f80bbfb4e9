"""The image files a command is given (``explain``'s image and references), read as RGB with
errors that name the file and what to change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .options import CommandError

if TYPE_CHECKING:
    from PIL import Image


def read_image(path: str, patch_size: int | None = None) -> Image.Image:
    """The image file as RGB (a PIL image); with ``patch_size`` (an image explained at its
    own size, ``--native-resolution``) at least one patch in each direction."""
    from ..imagedata.folder import not_a_file
    from ..imagedata.folder import read_image as read_rgb

    why = not_a_file(path)
    if why:
        raise CommandError(f"image {path!r} {why}")
    rgb = read_rgb(".", path)
    if patch_size is not None and min(rgb.size) < patch_size:
        raise CommandError(
            f"image {path!r} is {rgb.width}x{rgb.height} px, smaller than one {patch_size}x{patch_size} patch of the model: "
            "drop --native-resolution to explain it at the model's size"
        )
    return rgb
