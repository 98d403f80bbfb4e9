"""Checks of the tensors the metrics and the diagnostics take: images, maps, targets and
chunk sizes, each raising an error that says what was expected."""

from __future__ import annotations

import torch
from torch import Tensor


def check_images(images: object) -> Tensor:
    """Validate a non-empty floating-point batch ``(B, C, H, W)``; returns it."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point (normalised pixel values), got {images.dtype}")
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (B, C, H, W) batch, got shape {tuple(images.shape)}")
    return images


def check_maps(maps: object, shape: tuple[int, int, int], name: str = "maps") -> Tensor:
    """Validate finite float maps of ``shape`` ``(B, H, W)``; returns them as float32."""
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor of shape (B, H, W)")
    if tuple(maps.shape) != tuple(shape):
        hint = "; reduce the channels first (e.g. maps.mean(1))" if maps.dim() == 4 else ""
        raise ValueError(f"{name} must have shape (B, H, W) = {tuple(shape)}, got {tuple(maps.shape)}{hint}")
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return maps.float()


def check_targets(targets: object, batch: int, device: torch.device) -> Tensor:
    """Validate ``(B,)`` integer class indices; returns them as int64 on ``device``."""
    if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError("targets must be an integer torch.Tensor of shape (B,)")
    if tuple(targets.shape) != (batch,):
        raise ValueError(f"targets must have shape (B,) = ({batch},), got {tuple(targets.shape)}")
    if (targets < 0).any():
        raise ValueError("targets must be non-negative class indices")
    return targets.to(device=device, dtype=torch.long)
