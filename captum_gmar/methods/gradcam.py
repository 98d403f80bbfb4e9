"""Grad-CAM on a ViT's tokens (Selvaraju et al. 2017, as applied to ViTs by pytorch-grad-cam)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.formatting import Targets
from ..vit.capture import AttentionTrace
from ..vit.model import VisionTransformer
from ..vit.zero_shot import Prompts
from .base import AttentionAttribution, Explanation


class TokenGradCAM(AttentionAttribution):
    """Grad-CAM on the patch tokens entering the last block's attention.

    The activations are the normalised tokens the last block's attention reads (the
    target layer pytorch-grad-cam recommends for ViTs: the last block's output patch
    tokens do not reach the class token, so their gradient is zero). Channel weights are
    the gradients averaged over patches; the map is ``relu(sum_c w_c * A_c)`` per patch.

    Args:
        model, text, references, center: as
            :class:`~captum_gmar.methods.base.AttentionAttribution` (``model`` may be one
            already wrapped in a :class:`~captum_gmar.vit.model.VisionTransformer`).
    """

    needs_hidden = True
    maps_alive = 0.0  # no attention maps are built

    def __init__(
        self,
        model: nn.Module | VisionTransformer,
        text: Prompts | None = None,
        references: Tensor | None = None,
        center: Tensor | None = None,
    ) -> None:
        super().__init__(model, readout=None, text=text, references=references, center=center)  # no rollout, so no read-out row

    @classmethod
    def get_name(cls) -> str:
        return "Grad-CAM"

    def _explain(self, trace: AttentionTrace, targets: Targets) -> Explanation:
        prefix = self.vit.num_prefix_tokens
        tokens = trace.layers[-1].hidden
        assert tokens is not None  # kept: needs_hidden
        (grad,) = trace.target_grads(targets, [tokens])
        patches, patch_grad = tokens[:, prefix:].detach().float(), grad[:, prefix:].float()
        cam = torch.relu((patches * patch_grad.mean(1, keepdim=True)).sum(-1))
        return Explanation(torch.cat([cam.new_zeros(cam.shape[0], prefix), cam], dim=1))
