"""Repair by a counterfactual fine-tune (the idea of A-ClArC, Anders et al. 2022, kept close
to the original as R-ClArC asks, Bareeva et al. 2024): put the shortcut onto images of
every class (its mark pasted, its tone curve, filter, difference or texture over the whole
image, or its direction added in the features:
:class:`~captum_gmar.exploration.intervention.Intervention`) and fine-tune briefly so that
the model says, of each image, what the original model said of it without. The shortcut
stops predicting the class, and the images without it keep the original's outputs, so
clean accuracy moves little.
Any classifier :class:`~captum_gmar.vit.model.VisionTransformer` reads logits from is
repaired so, whatever carries the shortcut: heads, several of them, or the MLPs.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..vit.model import VisionTransformer
from .shortcut import Labelled, Shortcut

__all__ = ["STRENGTHS", "distance", "draw_batch", "is_multi_label", "repair_finetune"]

#: the range a graded shortcut's strength is drawn from, uniformly, per pasted image (1: as
#: the proxy has it). A proxy only estimates the shortcut, so the model is taught to ignore
#: it weaker and stronger too; that this is why the range helps was not tested apart (a
#: fixed strength of 1.5 was not tried). On planted models (docs/repair.md), the effect
#: removed at 1 only and in this range: a contrast change 85-88% and 90-91%, a cast 89-90%
#: and 93%, a noise texture 63-77% and 83-85%, a tint 81-86% and 83-85%.
STRENGTHS = (0.5, 1.5)


def repair_finetune(
    model: nn.Module,
    shortcut: Shortcut,
    train: Labelled,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-4,
    pasted_share: float = 0.25,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """A copy of ``model`` fine-tuned ``steps`` steps on ``train``'s images, a share
    ``pasted_share`` of each batch with the shortcut put on (``shortcut.intervention``:
    its mark pasted from a random donor, its tone curve, filter, difference or texture
    applied, or its direction added at its layer; a graded one at a strength drawn per image, uniformly
    from :data:`STRENGTHS`).
    The target of every image is the original model's output on it without the shortcut:
    its softmax (cross-entropy), or its sigmoids for a multi-label model (binary
    cross-entropy). An image without the paste starts at its target (no gradient), so the
    model moves only where the paste changes what it says, and the images without it hold
    it to the original: a quarter pasted, not a half, removed 94% to 99% of the effect
    instead of 95% to 99% and cost 0.35 points of clean top-1 instead of 0.74 (the mean of
    four shortcut models and two seeds each, docs/results.md). Each image is first flipped
    left to right (half of them) and the batch shifted by up to an eighth of its side
    (circularly; the mark is pasted after, in its place): the target is the original's
    output on that image, so no label needs to survive the change, and the model is held
    to the original's outputs on more images than ``train`` holds (on two shortcut models,
    17% to 22% fewer clean test images turned right or wrong than without it). On the
    model's device; AdamW at ``lr`` without weight decay; seeded.

    Raises:
        ValueError: no training images.
    """
    if not len(train):
        raise ValueError("the fine-tune needs images (train)")
    original = VisionTransformer(model)
    repaired = copy.deepcopy(model)
    student = VisionTransformer(repaired)
    device = original.parameter.device
    repaired.train()
    repaired.requires_grad_(True)
    # no weight decay: an image without the paste is already at its target, and stays there
    optimizer = torch.optim.AdamW(repaired.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    # a region's shortcut pastes its mark alone (Shortcut.of_region): pasting the whole
    # region carries the donors' objects along, and the model would learn to ignore the
    # class's own content there (a line along the bottom edge cut the bottoms of coats too:
    # Coat's clean accuracy fell 14 to 25 points)
    multi_label = is_multi_label(model)
    for _ in tqdm(range(steps), desc="fine-tune", unit="step", disable=not progress):
        x, applied = draw_batch(train, batch_size, pasted_share, shortcut.intervention.graded, generator)
        x = x.to(device)
        with torch.no_grad():
            target = original.logits(x).float()
        loss = distance(shortcut.intervention.logits(student, x, applied.to(device), generator).float(), target, multi_label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return repaired.eval()


def draw_batch(train: Labelled, batch_size: int, pasted_share: float, graded: bool, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A batch as the fine-tune draws it: ``batch_size`` of ``train``'s images (drawn with
    replacement, then :func:`_varied`) ``(B, C, H, W)``, and the shortcut's strength on each
    ``(B,)``: 0 on about ``1 - pasted_share`` of them, else 1, or for a ``graded`` shortcut a
    strength drawn uniformly from :data:`STRENGTHS`."""
    rows = torch.randint(len(train), (batch_size,), generator=generator)
    x = _varied(train.pixels[rows], generator)
    applied = (torch.rand(batch_size, generator=generator) < pasted_share).float()
    if graded:
        low, high = STRENGTHS
        applied = applied * (low + (high - low) * torch.rand(batch_size, generator=generator))
    return x, applied


def _varied(x: Tensor, generator: torch.Generator) -> Tensor:
    """``x`` ``(B, C, H, W)`` with half of its images (drawn) flipped left to right, and
    all shifted circularly by one drawn offset of up to an eighth of each side."""
    flipped = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flipped.to(x.device)[:, None, None, None], x.flip(-1), x)
    height, width = x.shape[-2:]
    dy = int(torch.randint(-(height // 8), height // 8 + 1, (1,), generator=generator))
    dx = int(torch.randint(-(width // 8), width // 8 + 1, (1,), generator=generator))
    return x.roll((dy, dx), dims=(-2, -1))


def is_multi_label(model: nn.Module) -> bool:
    """Whether ``model`` scores each class by its own sigmoid (a transformers config's
    ``problem_type``), so that its outputs are matched by binary cross-entropy."""
    return getattr(getattr(model, "config", None), "problem_type", None) == "multi_label_classification"


def distance(logits: Tensor, target: Tensor, multi_label: bool) -> Tensor:
    """How far ``logits`` ``(B, K)`` are from the original's ``target`` logits: the
    cross-entropy to its softmax, or the binary cross-entropy to its sigmoids."""
    if multi_label:
        return nn.functional.binary_cross_entropy_with_logits(logits, torch.sigmoid(target))
    return nn.functional.cross_entropy(logits, torch.softmax(target, dim=-1))
