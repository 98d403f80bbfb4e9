"""The check before an attribution call: refuse, before any work, a call that cannot fit
in the memory of the model's device or whose attention alone would take longer than
:data:`~captum_gmar.core.memory.SLOW_CALL_SECONDS` (estimated from a lower bound, or timed
on this device where the bound is high; see :mod:`captum_gmar.core.memory`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..core.memory import (
    EXTRAPOLATION_MARGIN,
    MEASURE_ABOVE_SECONDS,
    SLOW_CALL_SECONDS,
    attention_seconds,
    available_bytes,
    fitted_seconds,
    gib,
    probe_tokens,
)
from ..errors import InsufficientMemoryError, TooSlowError
from ..vit.model import VisionTransformer

__all__ = ["check_call", "timed_estimate"]


def check_call(
    vit: VisionTransformer,
    method: str,
    input_shape: Sequence[int],
    internal_batch_size: int | None,
    estimate_bytes: Callable[[Sequence[int]], int],
    backward: bool,
    allow_slow: bool,
    run: Callable[[Tensor], object],
) -> None:
    """Refuse a call of ``method`` on inputs of ``input_shape`` ``(B, C, H, W)`` that cannot
    fit, or (unless ``allow_slow``) would be too slow (see
    :meth:`~captum_gmar.methods.base.ViTAttribution.check_memory`).

    Args:
        estimate_bytes: the method's peak memory for an input shape (one chunk).
        backward: whether the method runs a backward pass (for the time).
        run: the method without checks, on ``(1, C, H', W')`` pixel values, for timing it
            on smaller inputs where the lower bound on the time is high
            (:func:`~captum_gmar.core.memory.fitted_seconds`).
    """
    param = vit.parameter
    batch, channels, height, width = input_shape
    chunk = min(batch, internal_batch_size or batch)
    tokens = vit.num_tokens(height, width)
    size = f"{height}x{width} px ({tokens:,} tokens, {vit.num_heads} heads)"
    native = f"the model was trained at {'x'.join(map(str, vit.image_size))} px; " if vit.image_size else ""

    def need(batch: int) -> int:
        return estimate_bytes((batch, channels, height, width))

    available = available_bytes(param.device)
    if available is not None and need(chunk) > available:
        # a chunk that fits, searched, not divided: on a CPU the estimate is not in proportion
        # to the batch (its fixed part; a term whose blocks cross glibc's mmap threshold
        # counts once above it, so it may even fall), and each size tried is one that fits
        fits, above = 0, chunk
        while above - fits > 1:
            middle = (fits + above) // 2
            fits, above = (middle, above) if need(middle) <= available else (fits, middle)
        if fits >= 1:
            advice = f"pass internal_batch_size={fits} (or less) to explain the batch in chunks"
        else:
            advice = f"resize the images ({native}memory grows with the side to the 4th power)"
        raise InsufficientMemoryError(
            f"{method} on {chunk} image(s) of {size} would need about {gib(need(chunk))}, "
            f"but only {gib(available)} are available on {param.device}: {advice}"
        )
    if allow_slow:
        return
    bound = attention_seconds(batch, tokens, vit.num_layers, vit.hidden_size, backward, param.device)
    how = "at least"
    seconds = bound
    if MEASURE_ABOVE_SECONDS < bound <= SLOW_CALL_SECONDS:
        seconds, how = timed_estimate(vit, input_shape, run)
        how = f"about ({how})"
    if seconds > SLOW_CALL_SECONDS:
        raise TooSlowError(
            f"{method} on {batch} image(s) of {size} would take {how} {seconds / 60:,.0f} minutes on {param.device}: "
            f"resize the images ({native}time grows with the side to the 4th power), or pass allow_slow=True to run it anyway"
        )


def timed_estimate(vit: VisionTransformer, input_shape: Sequence[int], run: Callable[[Tensor], object]) -> tuple[float, str]:
    """Seconds a call of ``run`` on inputs of ``input_shape`` ``(B, C, H, W)`` will take, from
    this device's measured throughput, and how it was measured: one image of that size
    timed where the batch has 4 or more (at most a quarter of the call), otherwise one
    image of each of two smaller sizes (:func:`~captum_gmar.core.memory.probe_tokens`) and the
    fit of ``a T^2 + b T`` (:func:`~captum_gmar.core.memory.fitted_seconds`)."""
    batch, channels, height, width = input_shape
    if batch >= 4:
        return batch * _timed(run, vit, channels, (height, width)), "one image timed on this device"
    probes = []
    for probe in probe_tokens(vit.num_tokens(height, width)):
        side = max(1, round((probe - vit.num_prefix_tokens) ** 0.5))  # a square grid of about that many tokens
        size = (side * vit.patch_size[0], side * vit.patch_size[1])
        probes.append((vit.num_tokens(*size), _timed(run, vit, channels, size)))
    seconds = EXTRAPOLATION_MARGIN * batch * fitted_seconds(probes, vit.num_tokens(height, width))
    return (
        seconds,
        f"timed on this device at {probes[0][0]:,} and {probes[1][0]:,} tokens, times {EXTRAPOLATION_MARGIN:g} for the extrapolation",
    )


def _timed(run: Callable[[Tensor], object], vit: VisionTransformer, channels: int, size: tuple[int, int]) -> float:
    """Seconds ``run`` takes on one image of ``size`` ``(H, W)`` pixels."""
    param = vit.parameter
    x = torch.zeros(1, channels, *size, device=param.device, dtype=param.dtype)
    if param.device.type == "cuda":
        torch.cuda.synchronize(param.device)
    start = time.perf_counter()
    run(x)  # its maps come back on the device: the sync below waits for them
    if param.device.type == "cuda":
        torch.cuda.synchronize(param.device)
    return time.perf_counter() - start
