"""How a supported model is recognised and called: the transformers classes it is an
instance of, whether it is a timm ViT, and its logits (``interpolate_pos_encoding=True``
where the input size differs from the training size and the model can be told)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..names import TIMM_MODEL_CLASSES
from .blocks import ForeignModule


def hf_logits(model: nn.Module, vision: ForeignModule, read: Callable[..., Tensor] | None = None) -> Callable[[Tensor], Tensor]:
    """Logits of a transformers classifier (or ``read(pixel_values, **kwargs)`` of
    ``model``), passing ``interpolate_pos_encoding=True`` when the input size differs from
    the training size and the model can be told (by name, or through ``**kwargs`` to a
    vision transformer that takes it)."""
    params = inspect.signature(model.forward).parameters
    takes = "interpolate_pos_encoding" in params or (
        any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        and "interpolate_pos_encoding" in inspect.signature(vision.forward).parameters
    )
    native = pair(vision.config.image_size)
    read = read or output_logits(model)

    def logits(pixel_values: Tensor) -> Tensor:
        if takes and tuple(pixel_values.shape[-2:]) != native:
            return read(pixel_values, interpolate_pos_encoding=True)
        return read(pixel_values)

    return logits


def output_logits(model: nn.Module) -> Callable[..., Tensor]:
    def read(pixel_values: Tensor, **kwargs: Any) -> Tensor:
        output = model(pixel_values=pixel_values, **kwargs)
        return output.logits if hasattr(output, "logits") else output[0]

    return read


def transformers_names(model: nn.Module) -> set[str]:
    """Names of the transformers classes ``model`` is an instance of."""
    return {cls.__name__ for cls in type(model).__mro__ if cls.__module__.startswith("transformers.")}


def is_timm(model: nn.Module) -> bool:
    return any(cls.__module__.startswith("timm.") and cls.__name__ in TIMM_MODEL_CLASSES for cls in type(model).__mro__)


def head_logits(model: nn.Module, num_labels: int) -> Callable[[Tensor], Tensor]:
    """The logits of a user's module, checked to be ``(B, num_labels)``."""
    name = type(model).__name__

    def logits(pixel_values: Tensor) -> Tensor:
        output = model(pixel_values)
        output = output.logits if hasattr(output, "logits") else output
        if not isinstance(output, torch.Tensor) or tuple(output.shape) != (pixel_values.shape[0], num_labels):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise TypeError(
                f"{name}.forward(pixel_values) must return logits (B, num_labels) = ({pixel_values.shape[0]}, {num_labels}) "
                f"or an output with .logits; got {shape}"
            )
        return output

    return logits


def pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)
