"""Scenes to model input, through the image processor saved with each reference model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import BaseImageProcessor

from ..imagedata.processing import load_processor, process_images

__all__ = ["load_image_processor", "scene_pixel_values"]


def load_image_processor(model: nn.Module) -> BaseImageProcessor:
    """The image processor in the folder ``model`` was loaded from (``model.name_or_path``).

    Raises:
        ValueError: that folder holds no ``preprocessor_config.json`` (or the model was not
            loaded with ``from_pretrained``).
    """
    folder = Path(getattr(model, "name_or_path", None) or ".")
    if not (folder / "preprocessor_config.json").is_file():
        raise ValueError(
            f"{type(model).__name__} was loaded from {str(folder)!r}, which holds no preprocessor_config.json; "
            "load the model with from_pretrained from a folder that has its image processor"
        )
    return load_processor(folder)


def scene_pixel_values(processor: BaseImageProcessor, images: np.ndarray) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` RGB images -> the model's ``float32 (N, 3, S, S)`` input,
    as ``processor`` (from :func:`load_image_processor`) prepares them."""
    return process_images(processor, images)
