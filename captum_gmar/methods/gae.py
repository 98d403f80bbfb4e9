"""Generic attention explainability, "GAE" (Chefer, Gur & Wolf, ICCV 2021)."""

from __future__ import annotations

from ..core.formatting import Targets
from ..core.heads import attention_grad, gradient_weighted_heads
from ..core.rollout import add_identity, rollout_row
from ..vit.capture import AttentionTrace
from .base import AttentionAttribution, Explanation


class GenericAttentionExplainability(AttentionAttribution):
    """Chefer et al.'s gradient-weighted attention relevance for a ViT.

    Per layer ``Abar = mean_h relu(dy_c/dA * A)``; starting from ``R = I`` each layer adds
    ``Abar @ R``, and the read-out row of ``R`` (the class token's, or ``p^T R`` for the
    model's own pooling ``p``) over the patches is the map. One forward and one backward
    pass (the attention gradient is ``dy/dC_h @ V_h^T``, so no eager attention is needed).

    Args as :class:`~captum_gmar.methods.base.AttentionAttribution`: ``model``,
    ``start_layer`` (first layer, 0-based, that takes part), ``readout``, ``text``,
    ``references`` and ``center`` (``model`` may be one already wrapped in a
    :class:`~captum_gmar.vit.model.VisionTransformer`).
    """

    needs_value = True
    maps_alive = 4.26  # maps, their gradient and the product, fitted on the measured peak (benchmarks/fit_memory.py)

    @classmethod
    def get_name(cls) -> str:
        return "GAE"

    def _explain(self, trace: AttentionTrace, targets: Targets) -> Explanation:
        layers = self.layers
        grads = trace.context_grads(targets, layers)
        relevance = rollout_row(
            (
                add_identity(gradient_weighted_heads(trace.attention_probs(layer), attention_grad(grad, trace.value(layer))))
                for layer, grad in zip(reversed(layers), reversed(grads))
            ),
            self._readout(trace),
        )
        return Explanation(relevance)
