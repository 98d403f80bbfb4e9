"""Attention rollout (Abnar & Zuidema, 2020), the class-agnostic baseline GMAR extends."""

from __future__ import annotations

import numbers

from torch import Tensor, nn

from ..core.formatting import Targets
from ..core.heads import HeadFusion, reduce_heads
from ..core.rollout import add_residual, discard_lowest, rollout_row
from ..vit.blocks import Readout
from ..vit.capture import AttentionTrace
from ..vit.model import VisionTransformer
from ..vit.zero_shot import Prompts
from .base import AttentionAttribution, Explanation, check_alpha, check_head_fusion


class AttentionRollout(AttentionAttribution):
    """Attention rollout: fuse heads (mean, max or min), optionally discard the weakest
    attentions, add the residual ``(1 - alpha) * Abar + alpha * I`` with rows
    renormalised, and read the read-out row (the class token's, or the model's own
    pooling, see ``readout``) of the product over layers.

    Class-agnostic: ``target`` is checked but does not change the map. One forward pass,
    no backward pass, any attention implementation.

    Args:
        model: a supported model (see ``docs/models.md``).
        head_fusion: ``"mean"`` (default), ``"max"`` or ``"min"``.
        discard_ratio: fraction of each layer's lowest fused attentions set to 0 before
            the residual, in ``[0, 1)``; default 0. Exactly ``int(T * T * ratio)``
            entries are zeroed per example, never the class token's attention to itself
            (see :func:`~captum_gmar.core.rollout.discard_lowest`). vit-explain's option differs
            in two ways: it drops the (CLS, CLS) entry from the set it zeroes, so it
            zeroes one entry fewer when that entry is among the lowest, and it applies
            the discard to the first example of a batch only.
        alpha: weight of the identity (residual) term, in ``[0, 1]``; default 0.5.
        start_layer, readout, text, references, center: as
            :class:`~captum_gmar.methods.base.AttentionAttribution`; ``model`` may be one
            already wrapped in a :class:`~captum_gmar.vit.model.VisionTransformer`.
    """

    needs_gradients = False
    #: a layer's softmaxed scores and the fused map with its residual (the scale is applied
    #: inside the scores' product, the residual in one operation), fitted on the measured
    #: peak (benchmarks/fit_memory.py)
    maps_alive = 2.25
    head_fusion: HeadFusion
    discard_ratio: float
    alpha: float

    def __init__(
        self,
        model: nn.Module | VisionTransformer,
        head_fusion: HeadFusion = "mean",
        discard_ratio: float = 0.0,
        alpha: float = 0.5,
        start_layer: int = 0,
        readout: Readout = "auto",
        text: Prompts | None = None,
        references: Tensor | None = None,
        center: Tensor | None = None,
    ) -> None:
        check_head_fusion(head_fusion)
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, numbers.Real):
            raise TypeError(f"discard_ratio must be a number in [0, 1), got {type(discard_ratio).__name__}")
        if not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must lie in [0, 1), got {discard_ratio}")
        self.head_fusion = head_fusion
        self.discard_ratio = float(discard_ratio)
        self.alpha = check_alpha(alpha)
        super().__init__(model, start_layer=start_layer, readout=readout, text=text, references=references, center=center)

    @classmethod
    def get_name(cls) -> str:
        return "Attention Rollout"

    def _explain(self, trace: AttentionTrace, targets: Targets) -> Explanation:
        relevance = rollout_row(
            (
                add_residual(discard_lowest(reduce_heads(trace.attention_probs(layer), self.head_fusion), self.discard_ratio), self.alpha)
                for layer in reversed(self.layers)
            ),
            self._readout(trace),
        )
        return Explanation(relevance)
