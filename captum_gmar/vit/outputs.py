"""What a wrapped model outputs for a class, in the forms the rest of the package reads:
its class scores (probabilities where the model has them, :func:`logit_scores`,
:func:`score_function`), the target's logit with heads replaced (:func:`masked_target_outputs`,
for head ablations), and a fingerprint of its weights (:func:`model_fingerprint`, to tell
checkpoints apart). Used by the evaluation, the data set's job, the strategy finder's
checks, the head analysis and the repairs alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..core.formatting import check_batch_size
from .embedding import EmbeddingHead
from .model import VisionTransformer

__all__ = ["logit_scores", "masked_target_outputs", "model_fingerprint", "score_function"]


def score_function(vit: VisionTransformer) -> Callable[[Tensor], Tensor]:
    """Class scores the metrics perturb, ``pixel_values -> (B, K)``: the model's logits
    through :func:`logit_scores`."""
    scores = logit_scores(vit)
    return lambda x: scores(vit.logits(x))


def logit_scores(vit: VisionTransformer) -> Callable[[Tensor], Tensor]:
    """The class scores of logits ``(B, K)``: the outputs themselves for a head on an
    embedding (the cosine similarities of a :class:`~captum_gmar.vit.similarity.SimilarityModel`),
    sigmoid for multi-label models, else softmax; float32."""
    if isinstance(vit.model, EmbeddingHead):
        return lambda logits: logits.float()
    if getattr(getattr(vit.model, "config", None), "problem_type", None) == "multi_label_classification":
        return lambda logits: torch.sigmoid(logits.float())
    return lambda logits: torch.softmax(logits.float(), dim=-1)


def masked_target_outputs(
    vit: VisionTransformer,
    images: Tensor,
    targets: Tensor,
    masks: Tensor,
    batch_size: int,
    values: Tensor | None = None,
    scores: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The target's logit, and its score, for every (mask, example) pair, the masked heads
    replaced (zeroed, or by ``values``; see
    :meth:`~captum_gmar.vit.model.VisionTransformer.heads_replaced`), many pairs per
    forward pass.

    Args:
        masks: ``(M, B, L, H)`` bool, one head mask per pair (may be an expanded view).
        values: ``(L, H, d)``: a replaced head's output; ``None``: zero.
        scores: logits ``(n, K)`` -> scores ``(n, K)`` (e.g. the sigmoid), or ``None``.

    Returns:
        ``(M, B)`` float32 logits on the images' device, and the scores alike (``None``
        without ``scores``).
    """
    batch_size = check_batch_size(batch_size)
    param = vit.parameter
    count, batch = masks.shape[:2]
    logits_out, scores_out = [], []
    with torch.no_grad():
        for first in range(0, count * batch, batch_size):
            pair = torch.arange(first, min(first + batch_size, count * batch), device=images.device)
            which, example = pair // batch, pair % batch
            x = images[example].to(device=param.device, dtype=param.dtype)
            with vit.heads_replaced(masks[which, example].to(param.device), values):
                logits = vit.logits(x).float()
            chosen = targets[example].to(param.device).view(-1, 1)
            logits_out.append(logits.gather(1, chosen).squeeze(1))
            if scores is not None:
                scores_out.append(scores(logits).gather(1, chosen).squeeze(1))
    logit = torch.cat(logits_out).to(images.device).view(count, batch)
    return logit, (torch.cat(scores_out).to(images.device).view(count, batch) if scores is not None else None)


def model_fingerprint(model: nn.Module) -> str:
    """A short digest of the model's parameters and buffers (names, shapes and sums), to
    tell checkpoints apart without copying the weights (9 digits: the same weights sum
    alike on any device)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(f"{name}{tuple(tensor.shape)}{float(tensor.double().sum()):.9e}".encode())
    return digest.hexdigest()[:16]
