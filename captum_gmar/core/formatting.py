"""Checks and formatting of what users pass to ``attribute``: pixel values and targets.

Every problem is reported as a ``TypeError`` or ``ValueError`` that names it and says
what to do, before any model computation starts.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

#: A scalar of the model's output per example, in pytorch-grad-cam's style: called with
#: the logits ``(B, K)`` of a batch (or chunk), returns ``(B,)`` (a margin between two
#: classes, a probability, a regression output, ...); each example's value must depend
#: on its own row only.
TargetFunction = Callable[[Tensor], Tensor]
#: Captum-style target: ``None`` (the predicted class), one class for every example
#: (an int or a one-element tensor), one class per example (a list or 1-D tensor), or a
#: :data:`TargetFunction`.
TargetType = None | int | Sequence[int] | Tensor | TargetFunction
#: What :func:`format_targets` returns: ``(B,)`` class indices, a function, or ``None``.
Targets = Tensor | TargetFunction | None


def check_pixel_values(pixel_values: object, num_channels: int, patch_size: tuple[int, int]) -> Tensor:
    """Validate a batch of images for a vision transformer.

    Args:
        pixel_values: ``(B, C, H, W)`` floating-point tensor, as an image processor makes.
        num_channels: ``C`` the model expects.
        patch_size: ``(ph, pw)``; the image must hold at least one patch.

    Returns:
        ``pixel_values`` itself.
    """
    if not isinstance(pixel_values, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor of shape (B, C, H, W), got {type(pixel_values).__name__}")
    if pixel_values.is_meta:
        raise ValueError("inputs are on the meta device (shapes without values); pass real pixel values")
    if not pixel_values.is_floating_point():
        raise TypeError(
            f"inputs must be floating point (normalised pixel values), got {pixel_values.dtype}; "
            "convert images with the model's image processor"
        )
    if pixel_values.dim() != 4:
        raise ValueError(f"inputs must be 4-D (B, C, H, W), got shape {tuple(pixel_values.shape)}")
    batch, channels, height, width = pixel_values.shape
    if batch == 0:
        raise ValueError("inputs is an empty batch (B = 0); pass at least one image")
    if channels != num_channels:
        raise ValueError(
            f"inputs have {channels} channels but the model expects {num_channels}; inputs must be channels-first (B, C, H, W)"
        )
    if height < patch_size[0] or width < patch_size[1]:
        raise ValueError(f"images of {height}x{width} pixels are smaller than one {patch_size[0]}x{patch_size[1]} patch")
    if not torch.isfinite(pixel_values).all():
        raise ValueError("inputs contain NaN or infinite pixel values")
    return pixel_values


def format_targets(target: TargetType, batch_size: int, num_labels: int) -> Targets:
    """Turn a Captum-style ``target`` into one class index per example.

    Args:
        target: ``None``, an int or one-element tensor (same class for all examples), a
            list / 1-D integer tensor of length ``batch_size``, or a
            :data:`TargetFunction`.
        batch_size: ``B``.
        num_labels: number of classes ``K``; every index must lie in ``[0, K)``.

    Returns:
        ``(B,)`` int64 tensor on the CPU; the function itself, checked on zero logits to
        return ``(B,)``; or ``None`` when ``target`` is ``None`` (the predicted class is
        used, known only after the forward pass).
    """
    if target is None:
        return None
    if callable(target) and not isinstance(target, Tensor):
        target_scores(torch.zeros(batch_size, num_labels), target)  # its shape checked before any model work
        return target
    if isinstance(target, tuple):
        raise TypeError(
            f"target must not be a tuple, got {target!r}: in Captum a tuple indexes one multi-dimensional output, "
            "but a classifier's logits are (B, K); pass a list for one class per example"
        )
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target tensor must hold integer class indices, got {target.dtype}")
        if target.dim() > 1:
            raise ValueError(f"target tensor must be 0-D or 1-D, got shape {tuple(target.shape)}")
        targets = target.detach().cpu().long().reshape(-1)
        if targets.numel() == 1:
            targets = targets.expand(batch_size)
    elif isinstance(target, numbers.Integral) and not isinstance(target, bool):
        targets = torch.full((batch_size,), _class_index(int(target), num_labels), dtype=torch.long)
    elif isinstance(target, Sequence) and not isinstance(target, str):
        if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in target):
            raise TypeError("a target list must hold one integer class index per example")
        targets = torch.tensor([_class_index(int(t), num_labels) for t in target], dtype=torch.long)
    else:
        raise TypeError(f"target must be None, an int, a list of ints or an integer tensor, got {type(target).__name__}")
    if targets.numel() != batch_size:
        raise ValueError(f"target has {targets.numel()} entries but the batch has {batch_size} examples")
    bad = (targets < 0) | (targets >= num_labels)
    if bad.any():
        _class_index(int(targets[bad][0].item()), num_labels)
    return targets.contiguous()


def target_scores(logits: Tensor, targets: Targets) -> Tensor:
    """``(B,)`` the scores explained: ``logits[b, targets[b]]``, ``targets(logits)`` for a
    :data:`TargetFunction`, or each example's largest logit for ``None``.

    Raises:
        TypeError: a function that does not return a floating-point ``(B,)`` tensor.
    """
    if targets is None:
        return logits.max(-1).values
    if isinstance(targets, Tensor):
        return logits.gather(1, targets.view(-1, 1).clone()).squeeze(1)  # clone: a normal tensor even under inference_mode
    scores = targets(logits)
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (logits.shape[0],) or not scores.is_floating_point():
        got = f"{tuple(scores.shape)} {scores.dtype}" if isinstance(scores, Tensor) else type(scores).__name__
        raise TypeError(
            f"a target function must map the logits ({logits.shape[0]}, {logits.shape[1]}) to one floating-point "
            f"score per example ({logits.shape[0]},); got {got}"
        )
    return scores


def _class_index(target: int, num_labels: int) -> int:
    """``target`` checked against ``[0, num_labels)`` before it meets int64."""
    if not 0 <= target < num_labels:
        raise ValueError(f"target {target} is out of range: the model has {num_labels} classes (0..{num_labels - 1})")
    return target


def chunk_targets(targets: Targets, part: slice, device: torch.device) -> Targets:
    """The targets of the examples ``part`` of a batch, on ``device`` (a function or
    ``None`` as they are)."""
    return targets[part].to(device) if isinstance(targets, Tensor) else targets


def batch_slices(batch_size: int, internal_batch_size: int | None) -> list[slice]:
    """Slices that split a batch of ``batch_size`` into chunks of ``internal_batch_size``."""
    if internal_batch_size is None:
        return [slice(0, batch_size)]
    if isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, numbers.Integral):
        raise TypeError(f"internal_batch_size must be an int or None, got {type(internal_batch_size).__name__}")
    if internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be at least 1, got {internal_batch_size}")
    step = int(internal_batch_size)
    return [slice(start, min(start + step, batch_size)) for start in range(0, batch_size, step)]


def check_batch_size(batch_size: object) -> int:
    """Validate a chunk size: a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return int(batch_size)
