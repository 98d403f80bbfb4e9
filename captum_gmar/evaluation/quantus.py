"""The package's methods as Quantus explanation functions, to score them with Quantus' metrics.

`Quantus <https://github.com/understandable-machine-intelligence-lab/Quantus>`_ (PyPI
``quantus``; ``pip install "captum-gmar[quantus]"``) calls a metric as
``metric(model=..., x_batch=..., y_batch=..., explain_func=..., explain_func_kwargs=...)``
and explains with ``explain_func(model, inputs, targets, **explain_func_kwargs)``, which
must return a numpy array. Two things stand between it and a Hugging Face classifier:

- Quantus takes every ``transformers`` ``PreTrainedModel`` for a text model (it wants
  tokenizer output), so the classifier is wrapped in :class:`QuantusModel`, a plain
  ``nn.Module`` from images to logits;
- metrics that randomise the model (MPRT) call ``explain_func`` with copies of that
  wrapper, so :func:`explain_func` builds the method on whatever model it is given.

The methods are those of ``compare`` (:func:`~captum_gmar.evaluation.methods.build_methods`),
with the same maps: one per image, Captum's IG and Saliency reduced by the sum of
absolute values over channels, AttnLRP's and CP-LRP's signed relevance as
``relevance_map`` says. This module does not import Quantus.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..names import METHOD_KEYS
from ..vit.model import VisionTransformer
from .methods import build_methods

__all__ = ["QuantusModel", "explain_func"]


class QuantusModel(nn.Module):
    """A supported image classifier as Quantus calls it: ``(B, C, H, W)`` images to
    ``(B, K)`` logits.

    Args:
        model: a classifier this package explains (e.g. ``ViTForImageClassification``),
            in eval mode (Quantus refuses a model in training mode).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tensor:
        """``(B, K)`` logits of ``pixel_values`` ``(B, C, H, W)``."""
        return VisionTransformer(self.model).logits(pixel_values)


def explain_func(
    model: nn.Module,
    inputs: np.ndarray | Tensor,
    targets: np.ndarray | Tensor | Sequence[int] | int,
    method: str = "gmar-l1",
    normalise: bool = True,
    ig_steps: int = 50,
    ig_internal_batch_size: int | None = None,
    device: str | torch.device | None = None,
    relevance_map: str = "positive",
) -> np.ndarray:
    """Maps of ``method`` for Quantus: ``float32 (N, 1, H, W)``.

    Pass it as a metric's ``explain_func`` and the options as ``explain_func_kwargs``,
    e.g. ``{"method": "rollout"}``.

    Args:
        model: a :class:`QuantusModel` (what Quantus passes, also its randomised copies)
            or the classifier itself.
        inputs: ``(N, C, H, W)`` images, channel first, numpy or torch, in the model's
            input normalisation; explained on the model's device.
        targets: ``(N,)`` classes to explain (or one for all).
        method: a key of :data:`~captum_gmar.names.METHOD_KEYS`.
        normalise: divide each map by its own maximum, so that a map's values do not
            depend on the other maps of its batch (see the docs' Quantus page: Quantus'
            default ``normalise`` divides a batch by one maximum, and metrics explain
            batches of different sizes). ``False``: the method's own scale.
        ig_steps, ig_internal_batch_size: IntegratedGradients' steps, and how many of
            them run at once (``"ig"`` only).
        device: the device Quantus passes (``metric(..., device=...)``); it must be the
            model's, which is where the maps are computed.
        relevance_map: how AttnLRP's and CP-LRP's signed relevance becomes their map:
            ``"positive"`` (default), ``"signed"`` or ``"abs"`` (see
            :mod:`~captum_gmar.evaluation.methods`). With ``"signed"`` and
            ``normalise``, a map is divided by its largest absolute value.

    Raises:
        ValueError: an unknown method, inputs that are not ``(N, C, H, W)``, targets of
            another length or that are not whole numbers (fractional, bool), or a
            ``device`` other than the model's.
    """
    classifier = model.model if isinstance(model, QuantusModel) else model
    if method not in METHOD_KEYS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHOD_KEYS)}")
    where = next(classifier.parameters()).device
    if device is not None and not _same_device(torch.device(device), where):
        raise ValueError(
            f"device {str(device)!r} was given but the model is on {where}: move the model there (model.to(device)) or pass its device"
        )
    x = torch.as_tensor(inputs, dtype=torch.float32, device=where)
    if x.dim() != 4:
        raise ValueError(f"inputs must be images (N, C, H, W), channel first; got shape {tuple(x.shape)}")
    t = _class_indices(targets, where)
    t = t.expand(len(x)) if t.dim() == 0 else t
    if t.shape != (len(x),):
        raise ValueError(f"targets must hold one class per image: {len(x)} images, targets of shape {tuple(t.shape)}")
    (built,) = build_methods(
        classifier, [method], ig_steps=ig_steps, ig_internal_batch_size=ig_internal_batch_size, relevance_map=relevance_map
    )
    maps = built(x, t)
    if normalise:  # each map by its own maximum (of absolute values: a signed map); an all-zero map stays zero
        peak = maps.flatten(1).abs().amax(1).clamp_min(torch.finfo(maps.dtype).tiny)
        maps = maps / peak.view(-1, 1, 1)
    return maps.unsqueeze(1).cpu().numpy()


def _class_indices(targets: np.ndarray | Tensor | Sequence[int] | int, device: torch.device) -> Tensor:
    """``targets`` as int64 class indices; a cast would truncate ``3.7`` to class 3 and read
    ``True`` as class 1, so fractional, non-finite and bool targets are refused."""
    t = torch.as_tensor(targets, device=device)
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise ValueError(f"targets are {t.dtype}; they must be class indices (integers)")
    if t.dtype.is_floating_point:  # whole floats (2.0) are classes, as numpy arrays of labels often hold them
        fractional = ~torch.isfinite(t) | (t != t.round())
        if fractional.any():
            raise ValueError(f"targets must be class indices (integers); got {float(t[fractional][0])}")
    return t.long()


def _same_device(given: torch.device, model: torch.device) -> bool:
    """``cuda`` names the model's ``cuda:N``; ``cuda:M`` must be it."""
    return given.type == model.type and (given.index is None or given.index == model.index)
