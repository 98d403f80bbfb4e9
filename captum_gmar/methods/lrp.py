"""AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022) for every supported model.

Layer-wise relevance propagation adapted to attention, in the Gradient x Input form of
the ``lxt`` package: one forward pass with the rules of :mod:`captum_gmar.core.lrp_rules`
applied during it (:mod:`captum_gmar.vit.propagation`), one backward pass of the target
logit, and the relevance of every input value is ``pixel_values * gradient``. Like
Captum's IntegratedGradients the result is signed and per channel.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from functools import partial
from typing import ClassVar

from torch import Tensor, nn

from ..core.formatting import Targets
from ..core.memory import Terms, relevance_call_phases
from ..vit.model import VisionTransformer, as_vision_transformer
from ..vit.propagation import Variant, relevance_rules
from ..vit.zero_shot import Prompts
from .base import Explanation, OutputKind, ViTAttribution

__all__ = ["AttnLRP", "CPLRP", "RelevancePropagation", "patch_relevance"]


class RelevancePropagation(ViTAttribution):
    """Base class of the relevance-propagation methods: one forward and one backward pass.

    ``attribute`` returns float32, signed relevance (a 1-tuple when ``inputs`` was one).
    Positive: evidence for the target. Its sum over the pixels is the target logit
    (CP-LRP; AttnLRP less what its softmaxes absorb) only where nothing but the pixels
    feeds the logit: every bias zeroed and, where the model has them (DINOv2, ViT, ...),
    the special tokens (class, distillation, register tokens) and the position embeddings
    zeroed too, since each absorbs its share of the relevance (see docs/method.md).

    Args:
        model: a supported model (see ``docs/models.md``): a Hugging Face image
            classifier, a zero-shot image-text model with ``text``, a timm ViT, or a
            user's head on a supported backbone; any attention implementation (sdpa
            stays sdpa), device and dtype. Or such a model already wrapped in a
            :class:`~captum_gmar.vit.model.VisionTransformer`, used as it is (then
            without ``text``, ``references`` and ``center``, which are the wrapper's).
        gamma: the generalised gamma rule's boost on the linear layers (``zennit``'s
            ``Gamma``, as ``lxt`` recommends for vision transformers); 0 (default) for
            the plain gradient (LRP-0), as ``lxt`` applies to language models.
        text: for zero-shot image-text models, the tokenized prompts.
        references, center: reference embeddings for an embedding model (similarity as
            classes); see :class:`~captum_gmar.methods.base.AttentionAttribution`.

    Attributes:
        forward_func: ``pixel_values -> logits``, as Captum's metrics expect.
    """

    #: the rules inside attention: ``"attnlrp"`` or ``"cplrp"``
    variant: ClassVar[Variant]
    gamma: float

    def __init__(
        self,
        model: nn.Module | VisionTransformer,
        gamma: float = 0.0,
        text: Prompts | None = None,
        references: Tensor | None = None,
        center: Tensor | None = None,
    ) -> None:
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not gamma >= 0:
            raise ValueError(f"gamma must be a number >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        super().__init__(as_vision_transformer(model, text, references, center))

    def _chunk(self, x: Tensor, targets: Targets) -> Explanation:
        """The relevance of every input value, ``x * gradient``, from one pass under the rules."""
        rules = partial(relevance_rules, self.vit.model, variant=self.variant, gamma=self.gamma)
        gradient, logits = self.vit.input_gradient(x, targets, rules)
        return Explanation(x * gradient, logits=logits)

    def _shaped(self, relevance: Tensor, input_shape: tuple[int, ...], output: OutputKind) -> Tensor:
        """The relevance as it is, or summed over each patch for ``"patches"``."""
        return patch_relevance(relevance, self.vit.patch_size) if output == "patches" else relevance

    def memory_phases(self, input_shape: Sequence[int]) -> tuple[Terms, ...]:
        """As :meth:`~captum_gmar.methods.base.ViTAttribution.memory_phases` (see
        :func:`~captum_gmar.core.memory.relevance_call_phases`)."""
        attention_gradient = self.variant == "attnlrp"
        return relevance_call_phases(self._sizes(input_shape), self.vit.keeps_attention_for_backward, attention_gradient)


class AttnLRP(RelevancePropagation):
    """AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance
    Propagation for Transformers", ICML 2024), as ``lxt`` computes it.

    LayerNorm with its statistics held constant, element-wise non-linearities by the
    identity rule, the uniform rule on the attention's two products (queries and keys get
    1/4 of the gradient, values 1/2) and on gated MLPs, linear layers by their gradient
    (or the gamma rule). Arguments as :class:`RelevancePropagation`.

    Example::

        attr = AttnLRP(model).attribute(pixel_values, target=labels)       # (B, C, H, W), signed
        heat = AttnLRP(model).attribute(pixel_values, output="patches")    # (B, h, w)
    """

    variant = "attnlrp"

    @classmethod
    def get_name(cls) -> str:
        return "AttnLRP"


class CPLRP(RelevancePropagation):
    """CP-LRP (Ali et al., "XAI for Transformers: Better Explanations through Conservative
    Propagation", ICML 2022): as :class:`AttnLRP`, but no gradient flows through the
    attention probabilities (they weigh the values as constants), which makes the
    propagation conservative. Arguments as :class:`RelevancePropagation`."""

    variant = "cplrp"

    @classmethod
    def get_name(cls) -> str:
        return "CP-LRP"


def patch_relevance(relevance: Tensor, patch_size: tuple[int, int]) -> Tensor:
    """Sum of ``(B, C, H, W)`` relevance over the channels and pixels of each patch: ``(B, h, w)``.

    Pixels beyond the last whole patch (which the patch embedding never reads) are left out.
    """
    ph, pw = patch_size
    batch, _, height, width = relevance.shape
    h, w = height // ph, width // pw
    covered = relevance[..., : h * ph, : w * pw].sum(1)
    return covered.reshape(batch, h, ph, w, pw).sum((2, 4))
