"""Which heads make a class's score differ between two sets of images (a strategy's
cluster and the class's other images, or any two sets): every head score the package
has, contrasted between the sets, against the exact effect of ablating each head.

For head ``(l, h)`` and class ``c``:

- **Ablation effect** (the truth): with the head's output replaced (by zero, or by its
  mean output over ``reference_images``, at every token), how far the class's logit (or
  its score: the sigmoid for a multi-label model, else the softmax) falls on each image;
  the mean fall over ``images`` less the mean fall over ``reference_images``. Positive:
  the head carries more of the score on ``images`` than on the reference.
- **Head scores**: GMAR's head weights for class ``c`` (L1 and L2 norms of the gradient
  of the head's output, the norm of the gradient of its attention, the gate gradient's
  absolute value and positive part: :data:`HEAD_SCORES`), each layer's weights summing
  to 1, averaged over ``images`` less averaged over ``reference_images``.
- **Agreement** of each score with the zero-ablation effect on the logit, over the
  ablated heads: Spearman's correlation and the overlap of their top ``k`` heads.

Cost: one forward and one backward pass per chunk of each set for every score at once;
for the ablation, one masked forward pass per ablated head and image, twice (zero and
mean), batched ``batch_size`` (head, image) pairs a pass, plus one pass of the reference
images for the heads' mean outputs. Every head is ablated up to :data:`BUDGET` heads
(ViT-B's 144); above it, or below with ``budget=``, the ``budget`` heads with the
largest gate-score contrast.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.correlation import average_ranks, pearson
from ..core.formatting import check_pixel_values
from ..methods.gmar import GMARAttribution, shared_head_weights
from ..vit.model import VisionTransformer, as_vision_transformer
from ..vit.outputs import logit_scores, masked_target_outputs

__all__ = ["BUDGET", "EFFECTS", "HEAD_SCORES", "HeadLocation", "locate_heads"]

#: the head scores compared, as :class:`~captum_gmar.GMARAttribution`'s settings
HEAD_SCORES: dict[str, dict[str, Any]] = {
    "gmar-l1": {"norm": "l1"},
    "gmar-l2": {"norm": "l2"},
    "gmar-attention": {"head_gradient": "attention"},
    "gmar-gate": {"head_gradient": "gate"},
    "gmar-gate-positive": {"head_gradient": "gate", "gate": "positive"},
}
#: the ablation effects: ``{zero, mean}-{logit, score}``
EFFECTS = ("zero-logit", "zero-score", "mean-logit", "mean-score")
#: every head is ablated up to this many heads (ViT-B's 12 x 12)
BUDGET = 144


@dataclass(frozen=True)
class HeadLocation:
    """What :func:`locate_heads` found, for an ``L x H`` model (defined in
    :mod:`captum_gmar.heads.locate`)."""

    #: the class explained
    target: int
    #: effect name (:data:`EFFECTS`) -> ``(L, H)`` float32, NaN for a head not ablated
    effects: dict[str, Tensor]
    #: score name (:data:`HEAD_SCORES`) -> ``(L, H)`` float32, the contrast of its head weights
    scores: dict[str, Tensor]
    #: score name -> ``{"spearman": ..., "top_k": ...}`` against the zero-ablation logit effect
    agreement: dict[str, dict[str, float]]
    #: every head as ``(layer, head)``, most responsible first (by ``order``)
    ranking: tuple[tuple[int, int], ...]
    #: what orders the ranking: an effect or a score name
    order: str
    #: ``bool (L, H)``: the heads ablated
    ablated: Tensor
    #: how many images each set held
    images: int
    reference_images: int
    #: the ``k`` of the top-k overlap
    top_k: int

    @property
    def masking_effect(self) -> Tensor:
        """``(L, H)``: the zero-ablation effect on the target's logit (``effects["zero-logit"]``)."""
        return self.effects["zero-logit"]

    def rows(self) -> list[dict[str, Any]]:
        """One row per head, in the ranking's order: ``rank``, ``layer``, ``head``, each effect
        and each score (``heads.csv``'s columns)."""
        return [
            {
                "rank": rank,
                "layer": layer,
                "head": head,
                **{name: float(values[layer, head]) for name, values in {**self.effects, **self.scores}.items()},
            }
            for rank, (layer, head) in enumerate(self.ranking, start=1)
        ]


def locate_heads(
    model: nn.Module | VisionTransformer,
    images: Tensor,
    reference_images: Tensor,
    target: int,
    *,
    order: str = "zero-logit",
    budget: int | None = None,
    top_k: int = 3,
    batch_size: int = 64,
) -> HeadLocation:
    """Which heads make class ``target``'s score differ between ``images`` and
    ``reference_images`` (every figure: :mod:`captum_gmar.heads.locate`).

    Args:
        model: a supported model in eval mode (or its
            :class:`~captum_gmar.vit.model.VisionTransformer`).
        images: pixel values ``(N, C, H, W)``, as :meth:`~captum_gmar.GMARAttribution.attribute`
            takes them: a strategy's cluster, say.
        reference_images: ``(M, C, H, W)`` of the same pixel size: the class's other images, say.
        target: the class.
        order: what orders ``ranking``: an effect of :data:`EFFECTS` (the ablated heads by
            it, then the others by the gate score's contrast) or a score of :data:`HEAD_SCORES`.
        budget: how many heads to ablate, those with the largest gate-score contrast
            (default: all up to :data:`BUDGET` heads, else :data:`BUDGET`).
        top_k: the heads the agreement's overlap compares.
        batch_size: images (or head-image pairs) per forward pass.

    Returns:
        :class:`HeadLocation`.

    Raises:
        ValueError: one line, before any work: a set empty, not ``(N, C, H, W)``, of a pixel
            size the model cannot take, or the two sets of different sizes; a target out of
            range; a bad ``order``, ``budget`` or ``top_k``; a model in training mode.
    """
    vit = as_vision_transformer(model)
    if vit.model.training:
        raise ValueError("the model is in training mode (dropout would make the effects random): call model.eval() first")
    _check_sets(vit, images, reference_images)
    layers, heads = vit.num_layers, vit.num_heads
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or not 0 <= target < vit.num_labels:
        raise ValueError(f"target must be a class index in [0, {vit.num_labels - 1}], got {target!r}")
    if order not in (*EFFECTS, *HEAD_SCORES):
        raise ValueError(f"order must be one of {', '.join((*EFFECTS, *HEAD_SCORES))}, got {order!r}")
    count = min(layers * heads, BUDGET) if budget is None else budget
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 1 <= count <= layers * heads:
        raise ValueError(f"budget must be a number of heads in [1, {layers * heads}], got {budget!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or not 1 <= top_k <= count:
        raise ValueError(f"top_k must be in [1, {count}] (the heads ablated), got {top_k!r}")
    target = int(target)

    variants = {name: GMARAttribution(vit, **settings) for name, settings in HEAD_SCORES.items()}
    weights = [shared_head_weights(variants, x, target, batch_size) for x in (images, reference_images)]
    scores = {name: (weights[0][name].mean(0) - weights[1][name].mean(0)).float().cpu() for name in HEAD_SCORES}

    flat_gate = scores["gmar-gate"].flatten()
    chosen = torch.sort(flat_gate, descending=True, stable=True).indices[:count]
    ablated = torch.zeros(layers * heads, dtype=torch.bool)
    ablated[chosen] = True
    effects = _effects(vit, images, reference_images, target, chosen, batch_size)
    effects = {name: _placed(values, chosen, layers, heads) for name, values in effects.items()}

    truth = effects["zero-logit"].flatten()[ablated]
    agreement = {name: _agreement(values.flatten()[ablated], truth, top_k) for name, values in scores.items()}
    return HeadLocation(
        target=target,
        effects=effects,
        scores=scores,
        agreement=agreement,
        ranking=_ranking(effects, scores, ablated, order, heads),
        order=order,
        ablated=ablated.view(layers, heads),
        images=len(images),
        reference_images=len(reference_images),
        top_k=int(top_k),
    )


def _check_sets(vit: VisionTransformer, images: Tensor, reference: Tensor) -> None:
    for name, x in (("images", images), ("reference_images", reference)):
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(
                f"{name} must be pixel values (N, C, H, W), got {tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        if not len(x):
            raise ValueError(f"{name} holds no image: give at least one")
        check_pixel_values(x, vit.num_channels, vit.patch_size)
    if images.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"images {tuple(images.shape[1:])} and reference_images {tuple(reference.shape[1:])} must be of one size (C, H, W): "
            "process both sets with the same image processor"
        )


def _effects(vit: VisionTransformer, images: Tensor, reference: Tensor, target: int, chosen: Tensor, batch_size: int) -> dict[str, Tensor]:
    """Each chosen head's ablation effect ``(M,)`` per :data:`EFFECTS`."""
    both = torch.cat([images, reference.to(images.device)])
    batch, layers, heads = len(both), vit.num_layers, vit.num_heads
    targets = torch.full((batch,), target, device=both.device)
    scores = logit_scores(vit)
    none = torch.zeros(1, batch, layers, heads, dtype=torch.bool, device=both.device)
    one_head = torch.zeros(len(chosen), layers * heads, dtype=torch.bool, device=both.device)
    one_head[torch.arange(len(chosen)), chosen.to(both.device)] = True
    masks = one_head.view(-1, 1, layers, heads).expand(-1, batch, -1, -1)
    clean_logit, clean_score = masked_target_outputs(vit, both, targets, none, batch_size, scores=scores)
    means = vit.head_means(reference, batch_size).to(vit.parameter.device)
    out = {}
    for mode, values in (("zero", None), ("mean", means)):
        logit, score = masked_target_outputs(vit, both, targets, masks, batch_size, values, scores)
        for kind, clean, masked in (("logit", clean_logit, logit), ("score", clean_score, score)):
            assert clean is not None and masked is not None  # scores were asked for
            drop = (clean - masked).float()  # (M, N + R)
            out[f"{mode}-{kind}"] = (drop[:, : len(images)].mean(1) - drop[:, len(images) :].mean(1)).cpu()
    return out


def _placed(values: Tensor, chosen: Tensor, layers: int, heads: int) -> Tensor:
    grid = torch.full((layers * heads,), float("nan"))
    grid[chosen] = values
    return grid.view(layers, heads)


def _agreement(score: Tensor, truth: Tensor, k: int) -> dict[str, float]:
    """Spearman's correlation of ``score`` with ``truth`` (0 where either is constant),
    and the share of ``truth``'s top ``k`` among ``score``'s top ``k``."""
    spearman = float(pearson(average_ranks(score.double()), average_ranks(truth.double()), undefined=0.0))
    top = set(torch.sort(score, descending=True, stable=True).indices[:k].tolist())
    best = set(torch.sort(truth, descending=True, stable=True).indices[:k].tolist())
    return {"spearman": spearman, "top_k": len(top & best) / k}


def _ranking(effects: dict[str, Tensor], scores: dict[str, Tensor], ablated: Tensor, order: str, heads: int) -> tuple[tuple[int, int], ...]:
    gate = scores["gmar-gate"].flatten()
    if order in scores:
        flat = torch.sort(scores[order].flatten(), descending=True, stable=True).indices.tolist()
    else:
        values = effects[order].flatten()
        first = sorted(torch.nonzero(ablated).flatten().tolist(), key=lambda i: (-float(values[i]), i))
        rest = sorted(torch.nonzero(~ablated).flatten().tolist(), key=lambda i: (-float(gate[i]), i))
        flat = first + rest
    return tuple(divmod(int(i), heads) for i in flat)
