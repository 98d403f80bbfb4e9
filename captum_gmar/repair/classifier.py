"""Repair by retraining the classifier alone, on the backbone's features as they are: the
counterfactual fine-tune's objective (:mod:`~captum_gmar.repair.finetune`) on the last
layer only, as last-layer retraining does (Kirichenko et al., "Last Layer Re-Training is
Sufficient for Robustness to Spurious Correlations", ICLR 2023).

This is the repair for a model whose backbone was frozen and whose classifier was trained
on its features (a linear probe): it changes only what its owner trained, the backbone and
so its attention maps stay as they were, and the backbone runs once per image, without a
gradient. The classifier's inputs are computed once, for ``passes`` draws of each training
image (flipped, shifted and, on a share of them, with the shortcut put on, as the
fine-tune draws its batches), with the original model's outputs on the clean images as
targets; the classifier then trains on those inputs.
"""

from __future__ import annotations

import copy
import math
import os
import weakref
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import UnsupportedModelError
from ..vit.model import VisionTransformer
from .finetune import distance, draw_batch, is_multi_label
from .shortcut import Labelled, Shortcut

__all__ = ["classifier_name", "drawn_inputs", "repair_classifier"]

#: the last inputs computed for each model (while it lives), with what they were drawn for
#: (the shortcut and the images, by identity, the draws' settings and the weights' versions), so that a gentler
#: retry (``repair``: fewer steps) trains on them without running the backbone again
_POOLS: weakref.WeakKeyDictionary[nn.Module, tuple[Any, Any, tuple[Any, ...], tuple[Tensor, Tensor, Tensor]]] = weakref.WeakKeyDictionary()


def classifier_name(model: nn.Module) -> str:
    """The name (as ``model.get_submodule`` takes it) of the one module that holds every
    parameter of ``model`` outside its vision transformer: its classifier.

    Raises:
        UnsupportedModelError: no parameter lies outside the vision transformer, or they lie
            in several modules.
    """
    inside = {id(p) for p in VisionTransformer(model).architecture.vision.parameters()}
    outside = [name.split(".")[:-1] for name, p in model.named_parameters() if id(p) not in inside]
    if not outside:
        raise UnsupportedModelError(f"{type(model).__name__} has no parameters outside its vision transformer: no classifier to retrain")
    common = os.path.commonprefix(outside)
    if not common:
        modules = sorted({path[0] if path else "the model itself" for path in outside})
        raise UnsupportedModelError(
            f"{type(model).__name__}'s parameters outside its vision transformer lie in several modules ({', '.join(modules)}); "
            "retraining the classifier alone needs them in one"
        )
    return ".".join(common)


def repair_classifier(
    model: nn.Module,
    shortcut: Shortcut,
    train: Labelled,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    pasted_share: float = 0.25,
    passes: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """A copy of ``model`` whose classifier (:func:`classifier_name`) alone is trained
    ``steps`` steps of ``batch_size`` on its inputs for ``passes`` draws of each of
    ``train``'s images, a share ``pasted_share`` with the shortcut put on (a graded one at a
    strength drawn per image), each pulled to the original model's output on the image
    without it (:func:`~captum_gmar.repair.finetune.distance`). AdamW at ``lr`` without
    weight decay; seeded; on the model's device.

    Raises:
        ValueError: no training images.
        UnsupportedModelError: the model has no single classifier module, or that module's
            output is not the model's logits.
    """
    if not len(train):
        raise ValueError("retraining the classifier needs images (train)")
    name = classifier_name(model)
    original = VisionTransformer(model)
    device = original.parameter.device
    generator = torch.Generator().manual_seed(seed)
    # the weights' in-place versions too: a model trained further since is drawn for again
    drawn = (batch_size, pasted_share, passes, seed, tuple(p._version for p in model.parameters()))
    kept = _POOLS.get(model)
    if kept is not None and kept[0]() is shortcut and kept[1]() is train and kept[2] == drawn:
        inputs, targets, state = kept[3]  # the same draws as before (a gentler retry): not computed again
        generator.set_state(state)
    else:
        inputs, targets = drawn_inputs(
            original, model.get_submodule(name), shortcut, train, batch_size, pasted_share, passes, generator, progress
        )
        _POOLS[model] = (weakref.ref(shortcut), weakref.ref(train), drawn, (inputs, targets, generator.get_state()))

    repaired = copy.deepcopy(model)
    classifier = repaired.get_submodule(name)
    classifier.train()
    classifier.requires_grad_(True)
    # no weight decay: an input without the shortcut is already at its target, and stays there
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=0.0)
    multi_label = is_multi_label(model)
    for _ in tqdm(range(steps), desc="classifier", unit="step", disable=not progress):
        rows = torch.randint(len(inputs), (batch_size,), generator=generator).to(device)
        loss = distance(classifier(inputs[rows]).float(), targets[rows], multi_label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return repaired.eval()


@torch.no_grad()
def drawn_inputs(
    original: VisionTransformer,
    classifier: nn.Module,
    shortcut: Shortcut,
    train: Labelled,
    batch_size: int,
    pasted_share: float,
    passes: int,
    generator: torch.Generator,
    progress: bool,
) -> tuple[Tensor, Tensor]:
    """The classifier's inputs ``(N, ...)`` for ``passes`` draws of each training image, with
    the shortcut on where drawn, and the original's logits ``(N, K)`` on each without it."""
    captured: list[Tensor] = []
    hook = classifier.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    inputs, targets = [], []
    device = original.parameter.device
    try:
        for draw in tqdm(range(math.ceil(passes * len(train) / batch_size)), desc="classifier's inputs", disable=not progress):
            x, applied = draw_batch(train, batch_size, pasted_share, shortcut.intervention.graded, generator)
            x = x.to(device)
            captured.clear()
            target = original.logits(x).float()
            if len(captured) != 1:
                raise UnsupportedModelError(f"the classifier ran {len(captured)} times in one forward pass; retraining it alone needs one")
            clean = captured[0].clone()
            if draw == 0 and not torch.allclose(classifier(clean).float(), target, atol=1e-4, rtol=1e-4):
                raise UnsupportedModelError("the classifier's output is not the model's logits: retraining it alone is not supported")
            on = (applied > 0).nonzero().squeeze(1)  # on the host: no device sync
            if len(on):
                captured.clear()
                shortcut.intervention.logits(original, x.index_select(0, on.to(device)), applied[on].to(device), generator)
                clean.index_copy_(0, on.to(device), captured[0])
            inputs.append(clean)
            targets.append(target)
    finally:
        hook.remove()
    return torch.cat(inputs), torch.cat(targets)
