"""Robustness: Captum's infidelity and max-sensitivity, wrapped for maps and made reproducible.

Both metrics draw random perturbations. Here they come from a seeded generator (or a
forked, seeded global RNG), so the same seed gives the same scores without touching
the caller's random state. The batch is processed in chunks of at most ``batch_size``
examples, each with its perturbed copies in calls of at most ``batch_size`` images;
the noise drawn depends on the seed and on the chunking, so compare scores computed
with the same ``batch_size``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from captum.metrics import infidelity, sensitivity_max
from torch import Tensor

from ...core.formatting import check_batch_size
from ..checks import check_images, check_targets
from .base import Column, MetricGroup, MetricInputs


def infidelity_score(
    forward_func: Callable[[Tensor], Tensor],
    images: Tensor,
    attributions: Tensor,
    targets: Tensor,
    noise_std: float = 0.1,
    n_perturb_samples: int = 8,
    seed: int = 0,
    batch_size: int = 64,
) -> Tensor:
    """Infidelity (Yeh et al., NeurIPS 2019) under Gaussian noise; lower is better.

    The expected squared difference between ``attributions . noise`` and the change of
    the target output when ``noise`` is subtracted from the image, with Captum's
    ``normalize=True`` (the attributions are rescaled by the best factor first), so the
    scale of a map does not matter.

    Args:
        forward_func: images ``(n, C, H, W)`` -> outputs ``(n, K)`` (e.g. logits, or
            ``attribution.forward_func``).
        images: ``(B, C, H, W)``.
        attributions: ``(B, C, H, W)``, or ``(B, H, W)`` maps broadcast over channels.
        targets: ``(B,)`` class indices.
        noise_std: standard deviation of the noise, in pixel-value units.
        n_perturb_samples: noisy copies per example.
        seed: seeds the noise.
        batch_size: most images per ``forward_func`` call, at least the chunk's examples.

    Returns:
        ``(B,)`` non-negative.
    """
    batch, targets, n_perturb_samples, batch_size = _checked(images, targets, n_perturb_samples, batch_size)
    attributions = _broadcast_attributions(attributions, images)
    _check_positive(noise_std, "noise_std")
    generator = torch.Generator(device=images.device).manual_seed(int(seed))

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype) * noise_std
        return noise, inputs - noise

    scores = [
        infidelity(
            forward_func,
            perturb,
            images[part],
            attributions[part],
            target=targets[part],
            n_perturb_samples=n_perturb_samples,
            max_examples_per_batch=_samples_per_call(part, batch_size, n_perturb_samples),
            normalize=True,
        )
        for part in _chunks(batch, batch_size)
    ]
    return torch.cat(scores)


def sensitivity_score(
    explain_fn: Callable[..., Tensor],
    images: Tensor,
    targets: Tensor,
    radius: float = 0.02,
    n_perturb_samples: int = 4,
    seed: int = 0,
    batch_size: int = 64,
) -> Tensor:
    """Max-sensitivity (Yeh et al., NeurIPS 2019) of an explanation; lower is better.

    The largest change of the explanation, relative to its Frobenius norm, over
    ``n_perturb_samples`` images drawn uniformly from the L-infinity ball of ``radius``
    around each image (Captum's ``sensitivity_max``, with the distribution of its default
    perturbation but drawn on the images' device and dtype). Torch's global RNG is forked and seeded inside, so the
    result is reproducible (also for a random ``explain_fn``) and the caller's random
    state is left as it was.

    Args:
        explain_fn: ``explain_fn(images, target=targets)`` -> ``(n, C, H, W)`` or
            ``(n, H, W)``, e.g. ``GMARAttribution(model).attribute``.
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` class indices.
        radius: half-width of the uniform noise, in pixel-value units.
        n_perturb_samples, seed, batch_size: as in :func:`infidelity_score` (``explain_fn``
            in place of ``forward_func``).

    Returns:
        ``(B,)`` non-negative.
    """
    batch, targets, n_perturb_samples, batch_size = _checked(images, targets, n_perturb_samples, batch_size)
    _check_positive(radius, "radius")

    def explain(inputs: Tensor | tuple[Tensor], target: Tensor) -> tuple[Tensor]:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        maps = explain_fn(x, target=target)
        if not isinstance(maps, Tensor) or maps.dim() not in (3, 4) or maps.shape[0] != x.shape[0]:
            shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            n = x.shape[0]
            raise ValueError(f"explain_fn must return ({n}, C, H, W) or ({n}, H, W) maps for {n} images, got {shape}")
        # Captum iterates over a tuple and flattens with .view(): gradients w.r.t. a conv
        # input can come back channels-last, so make them contiguous.
        return (maps.contiguous(),)

    def perturb(inputs: Tensor) -> Tensor:
        return inputs + torch.empty_like(inputs).uniform_(-radius, radius)

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        scores = [
            sensitivity_max(
                explain,
                images[part],
                perturb_func=perturb,
                n_perturb_samples=n_perturb_samples,
                max_examples_per_batch=_samples_per_call(part, batch_size, n_perturb_samples),
                target=targets[part],
            )
            for part in _chunks(batch, batch_size)
        ]
    return torch.cat(scores)


def _checked(images: Tensor, targets: Tensor, n_perturb_samples: int, batch_size: int) -> tuple[int, Tensor, int, int]:
    """The arguments both metrics take, checked: the batch's size ``B``, the targets
    ``(B,)`` on the images' device, the copies per example and the images per call."""
    check_images(images)
    batch = images.shape[0]
    targets = check_targets(targets, batch, images.device)
    return batch, targets, _check_count(n_perturb_samples, "n_perturb_samples"), check_batch_size(batch_size)


def _broadcast_attributions(attributions: object, images: Tensor) -> Tensor:
    """``(B, C, H, W)`` attributions on the images' device; ``(B, H, W)`` maps are repeated over channels."""
    if not isinstance(attributions, Tensor) or not attributions.is_floating_point():
        raise TypeError("attributions must be a floating-point torch.Tensor of shape (B, C, H, W) or (B, H, W)")
    batch, channels, height, width = images.shape
    if tuple(attributions.shape) == (batch, height, width):
        attributions = attributions.unsqueeze(1).expand(batch, channels, height, width)
    if attributions.shape != images.shape:
        raise ValueError(
            f"attributions must have the images' shape {tuple(images.shape)} or (B, H, W) = {(batch, height, width)}, "
            f"got {tuple(attributions.shape)}"
        )
    return attributions.to(device=images.device, dtype=images.dtype)


def _chunks(batch: int, batch_size: int) -> list[slice]:
    return [slice(start, min(start + batch_size, batch)) for start in range(0, batch, batch_size)]


def _samples_per_call(part: slice, batch_size: int, n_perturb_samples: int) -> int:
    """Captum's ``max_examples_per_batch``: whole copies of the chunk, within Captum's bounds."""
    examples = part.stop - part.start
    return min(batch_size // examples, n_perturb_samples) * examples


def _check_positive(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Robustness(MetricGroup):
    """Captum's infidelity and sensitivity_max, which re-run the method: on the first
    ``robustness_limit`` items only (NaN for the others)."""

    key = "robustness"
    columns = (
        Column("infidelity", "Captum infidelity (lower is better)", "lower"),
        Column("sensitivity", "Captum sensitivity_max (lower is better)", "lower"),
    )

    def compute(self, inputs: MetricInputs) -> dict[str, Tensor]:
        x, t, maps, keep, seed = inputs.x, inputs.t, inputs.maps, inputs.keep, self.settings.seed
        columns = {name: torch.full((len(t),), math.nan) for name in ("infidelity", "sensitivity")}
        if keep.stop:
            columns["infidelity"][keep] = infidelity_score(self.vit.logits, x[keep], maps[keep], t[keep], seed=seed).cpu()
            columns["sensitivity"][keep] = sensitivity_score(inputs.method.explain, x[keep], t[keep], seed=seed).cpu()
        return columns
