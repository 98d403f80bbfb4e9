"""Faithfulness: does removing what a map calls relevant change the model's output?

Deletion and insertion curves (Petsiuk et al., RISE, BMVC 2018) and the positive and
negative perturbation tests of Chefer et al. (CVPR 2021). Every metric takes a
``score_fn`` mapping images ``(B, C, H, W)`` to per-class scores ``(B, K)`` (e.g. the
softmax of the logits), maps ``(B, H, W)`` at pixel resolution and targets ``(B,)``,
and returns one value per example; the caller averages. Perturbed images are scored in
chunks of at most ``batch_size`` under ``torch.no_grad()``, on the images' device.

The argument checks at the top are shared by the other evaluation modules.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.formatting import check_batch_size
from ..checks import check_images, check_maps, check_targets
from .base import Column, MetricGroup, MetricInputs

ScoreFn = Callable[[Tensor], Tensor]
Mode = Literal["deletion", "insertion"]
Unit = Literal["pixel", "patch"]
Baseline = Literal["blur", "zero"] | Tensor | None
PatchSize = int | tuple[int, int] | None

#: Chefer et al.'s fractions of pixels removed: 0%, 10%, ..., 90%.
CHEFER_FRACTIONS: tuple[float, ...] = tuple(i / 10 for i in range(10))


def blur(images: Tensor, sigma: float = 5.0) -> Tensor:
    """Gaussian blur, separable, with reflect padding.

    The kernel reaches ``ceil(2 * sigma)`` pixels each side (about ``4 * sigma + 1``
    wide, RISE's blur for ``sigma = 5``), cut at ``size - 1`` on images too small for
    reflect padding; it is normalised to sum to 1, so constant images stay constant.

    Args:
        images: ``(B, C, H, W)`` floating point.
        sigma: standard deviation in pixels, positive.

    Returns:
        ``(B, C, H, W)``, same dtype and device.
    """
    check_images(images)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    batch, channels, height, width = images.shape
    radius = min(math.ceil(2 * sigma), height - 1, width - 1)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    x = F.pad(images.reshape(batch * channels, 1, height, width), (radius,) * 4, mode="reflect")
    x = F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    return x.view(batch, channels, height, width)


def deletion_insertion_curves(
    score_fn: ScoreFn,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    mode: Mode = "deletion",
    baseline: Baseline = None,
    steps: int = 16,
    unit: Unit = "pixel",
    patch_size: PatchSize = None,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Target score as the most relevant pixels (or patches) are deleted or inserted.

    Units are ordered by the map, most relevant first (a stable sort: ties go in
    row-major order). At fraction ``f`` the ``round(f * N)`` most relevant of the ``N``
    units are replaced by the baseline (deletion, starting from the image) or revealed
    from the image (insertion, starting from the baseline).

    Args:
        score_fn: images ``(n, C, H, W)`` -> scores ``(n, K)``.
        images: ``(B, C, H, W)``.
        maps: ``(B, H, W)`` relevance; only its order matters.
        targets: ``(B,)`` class indices into the scores.
        mode: ``"deletion"`` or ``"insertion"``.
        baseline: ``"blur"`` (:func:`blur` with its default sigma), ``"zero"`` (the
            dataset mean for normalised pixels), or a tensor broadcastable to
            ``images``; ``None`` picks RISE's choice, zero for deletion and blur for
            insertion.
        steps: number of steps; the fractions are ``linspace(0, 1, steps + 1)``.
        unit: ``"pixel"``, or ``"patch"`` to move whole patches ranked by their mean
            relevance (needs ``patch_size``, which must divide the image size).
        patch_size: ``p`` or ``(ph, pw)``, only with ``unit="patch"``.
        batch_size: most perturbed images per ``score_fn`` call.

    Returns:
        ``(fractions, scores)``: ``(S,)`` and ``(B, S)`` float32 with ``S = steps + 1``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    images, maps, targets = _check_inputs(images, maps, targets)
    fill = _baseline(images, baseline if baseline is not None else ("zero" if mode == "deletion" else "blur"))
    fractions = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    start, end = (images, fill) if mode == "deletion" else (fill, images)
    scores = _path_scores(score_fn, start, end, maps, fractions, targets, unit, patch_size, batch_size, _target_score)
    return fractions.to(device=images.device, dtype=torch.float32), scores


def deletion_auc(
    score_fn: ScoreFn,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    baseline: Baseline = "zero",
    steps: int = 16,
    unit: Unit = "pixel",
    patch_size: PatchSize = None,
    batch_size: int = 64,
) -> Tensor:
    """Area under the deletion curve, ``(B,)``; lower is better.

    Trapezoidal over the fractions, so in ``[0, 1]`` for probabilities. Arguments as in
    :func:`deletion_insertion_curves`.
    """
    fractions, scores = deletion_insertion_curves(
        score_fn, images, maps, targets, "deletion", baseline, steps, unit, patch_size, batch_size
    )
    return torch.trapezoid(scores, fractions, dim=-1)


def insertion_auc(
    score_fn: ScoreFn,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    baseline: Baseline = "blur",
    steps: int = 16,
    unit: Unit = "pixel",
    patch_size: PatchSize = None,
    batch_size: int = 64,
) -> Tensor:
    """Area under the insertion curve, ``(B,)``; higher is better.

    Trapezoidal over the fractions, so in ``[0, 1]`` for probabilities. Arguments as in
    :func:`deletion_insertion_curves`.
    """
    fractions, scores = deletion_insertion_curves(
        score_fn, images, maps, targets, "insertion", baseline, steps, unit, patch_size, batch_size
    )
    return torch.trapezoid(scores, fractions, dim=-1)


def perturbation_curve(
    score_fn: ScoreFn,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    positive: bool,
    fractions: Sequence[float] | Tensor = CHEFER_FRACTIONS,
    unit: Unit = "pixel",
    patch_size: PatchSize = None,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Whether the prediction stays on target as pixels are removed (Chefer et al. 2021).

    At each fraction ``f`` the ``round(f * N)`` units with the highest relevance
    (``positive=True``) or the lowest (``positive=False``) are set to 0, the mean of
    normalised pixel values; ties go in row-major order.

    Args:
        score_fn: images ``(n, C, H, W)`` -> scores ``(n, K)``; only the argmax is used.
        images: ``(B, C, H, W)``.
        maps: ``(B, H, W)`` relevance.
        targets: ``(B,)`` the class that counts as correct (label or original prediction).
        positive: remove the most relevant units first, else the least relevant.
        fractions: increasing fractions in ``[0, 1]``, at least two; Chefer's
            0, 0.1, ..., 0.9 by default.
        unit, patch_size, batch_size: as in :func:`deletion_insertion_curves`.

    Returns:
        ``(fractions, correct)``: ``(S,)`` float32 and ``(B, S)`` bool,
        ``argmax(score_fn(x_perturbed)) == target``.
    """
    if not isinstance(positive, bool):
        raise TypeError(f"positive must be a bool, got {type(positive).__name__}")
    images, maps, targets = _check_inputs(images, maps, targets)
    fractions = _check_fractions(fractions)
    zero = images.new_zeros(()).expand_as(images)
    ranked = maps if positive else -maps
    correct = _path_scores(score_fn, images, zero, ranked, fractions, targets, unit, patch_size, batch_size, _is_correct)
    return fractions.to(device=images.device, dtype=torch.float32), correct


def perturbation_auc(
    score_fn: ScoreFn,
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    positive: bool,
    fractions: Sequence[float] | Tensor = CHEFER_FRACTIONS,
    unit: Unit = "pixel",
    patch_size: PatchSize = None,
    batch_size: int = 64,
) -> Tensor:
    """Chefer et al.'s positive / negative perturbation AUC per example, ``(B,)``.

    ``trapz(correct_b, fractions) * 100`` over :func:`perturbation_curve`, unperturbed
    point included; the mean over examples is exactly Chefer's
    ``trapz(accuracy, fraction_removed) * 100``. Positive perturbation (removing the
    most relevant first): lower is better. Negative (least relevant first): higher is
    better.
    """
    fractions, correct = perturbation_curve(score_fn, images, maps, targets, positive, fractions, unit, patch_size, batch_size)
    return torch.trapezoid(correct.float(), fractions, dim=-1) * 100


def _check_inputs(images: Tensor, maps: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    check_images(images)
    batch, _, height, width = images.shape
    maps = check_maps(maps, (batch, height, width)).to(images.device)
    return images, maps, check_targets(targets, batch, images.device)


def _check_fractions(fractions: Sequence[float] | Tensor) -> Tensor:
    """``(S,)`` float64 on the CPU: at least two, strictly increasing, in ``[0, 1]``."""
    values = torch.as_tensor(fractions, dtype=torch.float64).cpu()
    if values.dim() != 1 or values.numel() < 2:
        raise ValueError(f"fractions must be a 1-D sequence of at least two values, got shape {tuple(values.shape)}")
    if not ((values >= 0) & (values <= 1)).all() or not (values.diff() > 0).all():
        raise ValueError(f"fractions must increase strictly within [0, 1], got {values.tolist()}")
    return values


def _baseline(images: Tensor, baseline: Baseline) -> Tensor:
    """The image every removed pixel is taken from, ``(B, C, H, W)`` (possibly a broadcast view)."""
    if isinstance(baseline, Tensor):
        try:
            return torch.broadcast_to(baseline.to(device=images.device, dtype=images.dtype), images.shape)
        except RuntimeError:
            raise ValueError(
                f"a baseline tensor must broadcast to the images' shape {tuple(images.shape)}, got {tuple(baseline.shape)}"
            ) from None
    if baseline == "zero":
        return images.new_zeros(()).expand_as(images)
    if baseline == "blur":
        return blur(images)
    raise ValueError(f"baseline must be 'blur', 'zero' or a tensor, got {baseline!r}")


def _unit_ranks(maps: Tensor, unit: Unit, patch_size: PatchSize) -> tuple[Tensor, int]:
    """Rank of every pixel's unit, 0 for the most relevant, and the number of units.

    Returns:
        ``(B, H, W)`` int64 ranks (all pixels of a patch share its rank) and ``N``.
    """
    batch, height, width = maps.shape
    if unit == "pixel":
        if patch_size is not None:
            raise ValueError("patch_size is only used with unit='patch'")
        scores = maps
    elif unit == "patch":
        if patch_size is None:
            raise ValueError("unit='patch' needs patch_size")
        ph, pw = _patch_pair(patch_size)
        if height % ph or width % pw:
            raise ValueError(f"patch_size {(ph, pw)} must divide the {height}x{width} maps")
        scores = F.avg_pool2d(maps.unsqueeze(1), (ph, pw)).squeeze(1)
    else:
        raise ValueError(f"unit must be 'pixel' or 'patch', got {unit!r}")
    flat = scores.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    positions = torch.arange(flat.shape[1], device=maps.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions).view(scores.shape)
    if unit == "patch":
        ranks = ranks.repeat_interleave(ph, dim=1).repeat_interleave(pw, dim=2)
    return ranks, flat.shape[1]


def _patch_pair(patch_size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (patch_size, patch_size) if isinstance(patch_size, numbers.Integral) else tuple(cast(Iterable[int], patch_size))
    if len(pair) != 2 or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) and p > 0 for p in pair):
        raise ValueError(f"patch_size must be a positive int or a pair of them, got {patch_size!r}")
    return int(pair[0]), int(pair[1])


def _path_scores(
    score_fn: ScoreFn,
    start: Tensor,
    end: Tensor,
    maps: Tensor,
    fractions: Tensor,
    targets: Tensor,
    unit: Unit,
    patch_size: PatchSize,
    batch_size: int,
    readout: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Read out ``score_fn`` along the path from ``start`` to ``end``.

    At fraction ``f`` the ``round(f * N)`` most relevant units of ``maps`` take their
    pixels from ``end``, the rest from ``start``. The ``B * S`` perturbed images are
    built and scored chunk by chunk.

    Args:
        start, end: ``(B, C, H, W)``.
        fractions: ``(S,)`` float64 on the CPU.
        readout: ``(scores (n, K), targets (n,)) -> (n,)``.

    Returns:
        ``(B, S)``, the readout per example and fraction.
    """
    batch_size = check_batch_size(batch_size)
    ranks, units = _unit_ranks(maps, unit, patch_size)
    # Rounded in float64 so that e.g. 0.3 * N does not fall one unit short.
    counts = torch.round(fractions * units).long().to(start.device)
    batch, steps = start.shape[0], counts.numel()
    results = []
    with torch.no_grad():
        for first in range(0, batch * steps, batch_size):
            pair = torch.arange(first, min(first + batch_size, batch * steps), device=start.device)
            step, example = pair // batch, pair % batch
            moved = (ranks[example] < counts[step].view(-1, 1, 1)).unsqueeze(1)
            scores = score_fn(torch.where(moved, end[example], start[example]))
            results.append(readout(_check_scores(scores, pair.numel(), targets), targets[example]))
    return torch.cat(results).view(steps, batch).T


def _check_scores(scores: object, rows: int, targets: Tensor) -> Tensor:
    if not isinstance(scores, Tensor) or scores.dim() != 2 or scores.shape[0] != rows:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"score_fn must map {rows} images to scores of shape ({rows}, K), got {shape}")
    if (targets >= scores.shape[1]).any():
        raise ValueError(f"targets must be below the number of classes K = {scores.shape[1]} that score_fn returns")
    return scores


def _target_score(scores: Tensor, targets: Tensor) -> Tensor:
    return scores.gather(1, targets.view(-1, 1)).squeeze(1).float()


def _is_correct(scores: Tensor, targets: Tensor) -> Tensor:
    return scores.argmax(1) == targets


class Faithfulness(MetricGroup):
    """Deletion and insertion AUCs, and Chefer's perturbation AUCs (which count correct top
    classes, so a similarity has none)."""

    key = "faithfulness"
    columns = (
        Column("deletion_auc", "Deletion AUC (lower is better; the baseline: blur, the mean image for similarities)", "lower"),
        Column("insertion_auc", "Insertion AUC (higher is better; the baseline: blur, the mean image for similarities)", "higher"),
        Column("positive_perturbation_auc", "Chefer positive perturbation AUC (lower is better)", "lower", ("classes",)),
        Column("negative_perturbation_auc", "Chefer negative perturbation AUC (higher is better)", "higher", ("classes",)),
    )

    def compute(self, inputs: MetricInputs) -> dict[str, Tensor]:
        x, maps, t, score_fn = inputs.x, inputs.maps, inputs.t, inputs.score_fn
        baseline = cast("Literal['blur', 'zero']", self.settings.baseline)  # checked by Settings
        steps = self.settings.deletion_steps
        columns = {
            "deletion_auc": deletion_auc(score_fn, x, maps, t, baseline=baseline, steps=steps),
            "insertion_auc": insertion_auc(score_fn, x, maps, t, baseline=baseline, steps=steps),
        }
        if "positive_perturbation_auc" in self.wanted:
            columns["positive_perturbation_auc"] = perturbation_auc(score_fn, x, maps, t, positive=True)
            columns["negative_perturbation_auc"] = perturbation_auc(score_fn, x, maps, t, positive=False)
        return columns
