"""Repair by a counterfactual fine-tune (the idea of A-ClArC, Anders et al. 2022): paste the
shortcut's pixels onto labelled images of every class, labels unchanged, and fine-tune
briefly, so that the mark stops predicting the class. Any model that trains with its
labels (``model(pixel_values=..., labels=...)`` returns a loss) is repaired so, whatever
carries the shortcut: heads, several of them, or the MLPs.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..exploration.transplant import paste_region, region_mask
from .shortcut import Labelled, Shortcut

__all__ = ["repair_finetune"]


def repair_finetune(
    model: nn.Module,
    shortcut: Shortcut,
    train: Labelled,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-4,
    pasted_share: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """A copy of ``model`` fine-tuned ``steps`` steps on ``train``, a share ``pasted_share``
    of each batch with the shortcut's pixels (from a random donor) pasted on, labels as
    they were. On the model's device; AdamW at ``lr``; seeded.

    Raises:
        ValueError: no training images, or a model that returns no loss for its labels.
    """
    if not len(train):
        raise ValueError("the fine-tune needs labelled images (train)")
    repaired = copy.deepcopy(model)
    device = next(repaired.parameters()).device
    repaired.train()
    repaired.requires_grad_(True)
    optimizer = torch.optim.AdamW([p for p in repaired.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    height, width = train.pixels.shape[-2:]
    mask = region_mask(shortcut.region, shortcut.grid, (height, width), train.pixels.device)
    config: Any = repaired.config
    multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
    classes = int(config.num_labels)
    for _ in tqdm(range(steps), desc="fine-tune", unit="step", disable=not progress):
        rows = torch.randint(len(train), (batch_size,), generator=generator)
        x, y = train.pixels[rows], train.labels[rows]
        pasted = torch.rand(batch_size, generator=generator) < pasted_share
        donors = shortcut.donors[torch.randint(len(shortcut.donors), (batch_size,), generator=generator)]
        x = torch.where(pasted[:, None, None, None], paste_region(x, donors, mask), x)
        labels = torch.nn.functional.one_hot(y, classes).float() if multi_label else y
        loss = repaired(pixel_values=x.to(device), labels=labels.to(device)).loss
        if loss is None:
            raise ValueError(f"{type(repaired).__name__} returns no loss for its labels: it cannot be fine-tuned here")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return repaired.eval()
