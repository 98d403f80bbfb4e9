"""Raw attention: the last layer's attention from the read-out token, the baseline every
paper on transformer explanations reports."""

from __future__ import annotations

from torch import Tensor, nn

from ..core.formatting import Targets
from ..core.heads import HeadFusion, reduce_heads
from ..core.rollout import rollout_row
from ..vit.blocks import Readout
from ..vit.capture import AttentionTrace
from ..vit.model import VisionTransformer
from ..vit.zero_shot import Prompts
from .base import AttentionAttribution, Explanation, check_head_fusion


class RawAttention(AttentionAttribution):
    """The last layer's attention, heads fused (mean by default), read from the read-out
    row: ``p^T Abar[L]`` (the class token's row for ``readout="cls"``).

    Class-agnostic, one forward pass, no backward pass; rollout restricted to the last
    layer and without the residual term.

    Args:
        model: a supported model (see ``docs/models.md``).
        head_fusion: ``"mean"`` (default), ``"max"`` or ``"min"``.
        readout, text, references, center: as
            :class:`~captum_gmar.methods.base.AttentionAttribution`; ``model`` may be one
            already wrapped in a :class:`~captum_gmar.vit.model.VisionTransformer`.
    """

    needs_gradients = False
    #: a layer's scores and their softmax, fitted on the measured peak (benchmarks/fit_memory.py)
    maps_alive = 2.0

    def __init__(
        self,
        model: nn.Module | VisionTransformer,
        head_fusion: HeadFusion = "mean",
        readout: Readout = "auto",
        text: Prompts | None = None,
        references: Tensor | None = None,
        center: Tensor | None = None,
    ) -> None:
        self.head_fusion = check_head_fusion(head_fusion)
        super().__init__(model, readout=readout, text=text, references=references, center=center)

    @classmethod
    def get_name(cls) -> str:
        return "Raw attention"

    def _explain(self, trace: AttentionTrace, targets: Targets) -> Explanation:
        last = reduce_heads(trace.attention_probs(self.vit.num_layers - 1), self.head_fusion)
        return Explanation(rollout_row([last], self._readout(trace)))
