"""Images into a model's image processor: the one place where the package's images meet
a transformers image processor.

Every image is handed over as an ``uint8 (H, W, 3)`` array with its layout named
(``input_data_format="channels_last"``), never as a PIL image and never left to be
guessed. Both shortcuts fail on some transformers release: 4.57 guesses the layout from
the shape and takes a 1 or 3 px high image for channels first, and the torchvision
backend of 5.0 to 5.22 turns a PIL image channels first before it applies the named
layout, so a PIL image named channels last comes out with its axes mixed (an error in
``normalize``). An array named channels last is read right by every release.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # imported where used: importing the package needs no PIL
    from PIL import Image

__all__ = ["image_array", "load_processor", "process_images", "processed_pixels", "processor_options", "transform_mask"]

_NEAREST = 0  # PIL's (and transformers' PILImageResampling) nearest-neighbour code


def load_processor(folder: str | os.PathLike[str]) -> Any:
    """The image processor saved in ``folder`` (``preprocessor_config.json``), from the disk only.

    Raises:
        ImportError: in one line, where this transformers release loads image processors
            only with torchvision installed (some 5.x releases do) and it is not.
    """
    import transformers

    try:
        return transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except ImportError as error:
        if "torchvision" not in str(error).lower():
            raise
        raise ImportError(
            f"transformers {transformers.__version__} loads image processors only with torchvision installed: "
            "pip install torchvision (the release that matches your torch), or another transformers release"
        ) from None


def image_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An image as the processors are given it: ``uint8 (H, W, 3)``.

    Args:
        image: a PIL image of any mode (converted to RGB), or an ``uint8`` array
            ``(H, W, 3)`` or ``(H, W)`` (grey, repeated on three channels).

    Raises:
        ValueError: an array of another dtype or shape.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"an image array must be uint8 (H, W, 3) or (H, W), got {image.dtype} {image.shape}")
        return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    return np.array(image.convert("RGB"))  # a copy: torch warns on the read-only view of a PIL image


def process_images(processor: Any, images: Image.Image | np.ndarray | Sequence[Image.Image | np.ndarray], **options: Any) -> Tensor:
    """The pixel values ``float (N, 3, h, w)`` of ``images`` as ``processor`` prepares them
    with ``options``, in one call (so the outputs must have one size: a processor that
    resizes, or images of one size).

    Args:
        processor: a transformers image processor.
        images: one image or several (see :func:`image_array`); a ``uint8 (N, H, W, 3)``
            array is ``N`` images.
        options: passed on to the processor (``do_resize``, ``size``, ...).
    """
    if isinstance(images, np.ndarray):
        arrays = [image_array(image) for image in images] if images.ndim == 4 else [image_array(images)]
    elif isinstance(images, Sequence):
        arrays = [image_array(image) for image in images]
    else:
        arrays = [image_array(images)]
    return processor(images=arrays, return_tensors="pt", input_data_format="channels_last", **options)["pixel_values"]


def processed_pixels(processor: Any, options: Mapping[str, Any], images: Sequence[Image.Image | np.ndarray]) -> list[Tensor]:
    """The pixel values ``(3, h, w)`` of each image as ``processor`` prepares it with
    ``options``: in one call where the outputs have one size (a processor that resizes,
    or images of one size; the call's own cost is most of a small image's), else one by
    one. The same values either way."""
    if not images:
        return []
    resizes = options.get("do_resize", getattr(processor, "do_resize", False))
    arrays = [image_array(image) for image in images]
    if resizes or len({array.shape for array in arrays}) == 1:
        return list(process_images(processor, arrays, **options))
    return [process_images(processor, array, **options)[0] for array in arrays]


def processor_options(processor: Any, image_size: int | Sequence[int]) -> dict[str, Any]:
    """Options for ``processor`` so that every image comes out at one size: none when it
    resizes by itself; else a resize to the model's ``image_size`` (the bundled reference
    model's processor does not resize, as its scenes are made at its size)."""
    if getattr(processor, "do_resize", False):
        return {}
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return {"do_resize": True, "size": {"height": height, "width": width}}


def transform_mask(processor: Any, mask: np.ndarray, options: Mapping[str, Any]) -> Tensor:
    """Carry a mask through the image processor's geometry: ``bool (H, W)`` at the stored
    image's size -> ``bool (h, w)`` at the model input's.

    The mask goes through the processor itself, as a black-and-white image, with the same
    ``options`` as its image but nearest-neighbour resampling and neither rescaling nor
    normalisation, so that whatever the processor does to the geometry (resize to a size,
    resize the shortest edge, center-crop) it does to the mask too, and no resampling
    blends object and background.
    """
    image = mask.astype(np.uint8) * np.uint8(255)
    out = process_images(processor, image, do_rescale=False, do_normalize=False, resample=_NEAREST, **options)
    return torch.as_tensor(out[0, 0] > 127)
