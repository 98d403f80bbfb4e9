"""The reference model: a small ViT trained on cluttered Fashion-MNIST scenes.

Its weights ship inside the package (``REFERENCE_MODEL_DIR``), so it loads offline.
How it was trained and how well it does: ``REFERENCE_MODEL_DIR / "README.md"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from transformers import ViTForImageClassification

from ..datasets import make_scenes, to_pixel_values
from ..names import REFERENCE_MODELS
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
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
    *,
    name: str = "vit-tiny",
) -> ViTForImageClassification:
    """Load a shipped reference model, offline, in eval mode.

    Args:
        name: which one, of :data:`captum_gmar.names.REFERENCE_MODELS`.
        device: where to put it (default: CPU).
        dtype: parameter dtype (default: float32, as stored).
        attn_implementation: e.g. ``"eager"`` to get attention weights from
            ``output_attentions=True``; ``None`` keeps the transformers default.
    """
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown reference model {name!r}; choose from {', '.join(REFERENCE_MODELS)}")
    kwargs = {"local_files_only": True}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = ViTForImageClassification.from_pretrained(REFERENCE_MODEL_DIR, **kwargs)
    model.to(device=device, dtype=dtype)
    return model.eval()


@torch.no_grad()
def evaluate_accuracy(
    model: ViTForImageClassification,
    n: int = 2000,
    seed: int = EVAL_SEED,
    batch_size: int = 200,
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, float]:
    """Accuracy on ``n`` one-item and ``n`` two-item test-split scenes.

    Returns a dict with ``n``; ``top1_one_item`` (the top logit is the item's class);
    ``both_top2_two_items`` (the two top logits are exactly the two items' classes);
    ``item_top2_two_items`` (fraction of items of two-item scenes whose class is in the
    top 2).
    """
    param = next(model.parameters())
    was_training = model.training
    model.eval()

    def top2(images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            x = to_pixel_values(images[i : i + batch_size]).to(param.device, param.dtype)
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
