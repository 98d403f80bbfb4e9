"""GMAR: Gradient-Driven Multi-Head Attention Rollout (Jo, Jang, Park; ICIP 2025)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, overload

import torch
from captum.log import log_usage
from torch import Tensor, nn

from ..core.formatting import Targets, TargetType, batch_slices, check_pixel_values
from ..core.heads import (
    GateSign,
    Norm,
    attention_grad,
    context_head_scores,
    fuse_heads,
    gate_scores,
    head_scores,
    normalize_head_weights,
    split_heads,
)
from ..core.rollout import add_residual, rollout_row
from ..vit.blocks import Readout
from ..vit.capture import AttentionTrace
from ..vit.model import VisionTransformer
from ..vit.zero_shot import Prompts
from .base import AttentionAttribution, Explanation, InputType, OutputKind, check_alpha

HeadGradient = Literal["context", "attention", "gate"]


class GMARAttribution(AttentionAttribution):
    """Attention rollout with every head weighted by how much the target logit depends on it.

    For each layer ``l`` and head ``h`` the score ``g[b, l, h]`` is the L1 (or L2) norm of
    the gradient of the target logit with respect to that head's output (the head's
    channels of the attention output projection's input, over all tokens). Scores are
    normalised to weights ``w`` that sum to 1 over heads, per layer and example; the
    heads' attention maps are fused with those weights, the residual is modelled as
    ``(1 - alpha) * Abar + alpha * I`` and the read-out row of the product over layers
    (the class token's, or the model's own pooling, see ``readout``) is read over the
    patch tokens. One forward and one backward pass; no
    parameter gradients; any attention implementation (the maps are rebuilt from the
    captured queries and keys, so sdpa models need not switch to eager).

    With uniform weights GMAR equals :class:`~captum_gmar.AttentionRollout` with mean
    head fusion.

    Args:
        model: a supported model (see ``docs/models.md``), e.g. from
            ``ViTForImageClassification.from_pretrained(path)``.
        norm: ``"l1"`` (default) or ``"l2"`` head score.
        alpha: weight of the identity (residual) term, in ``[0, 1]``; default 0.5.
        head_gradient: ``"context"`` (default, the paper's) scores heads by the ``norm``
            of the gradient of their outputs; ``"attention"`` by the ``norm`` of the
            gradient of their attention probabilities (computed exactly as ``dL/dC_h @
            V_h^T``, still without eager attention); ``"gate"`` by the gradient of a
            multiplicative gate on each head's output, ``sum(dL/dC_h * C_h)`` (Michel et
            al. 2019, see :func:`~captum_gmar.core.heads.gate_scores`), taken as ``gate``
            says, and ``norm`` is not used. ``"attention"`` and ``"gate"`` are invariant
            to rescaling a head's value projection against its output projection,
            ``"context"`` is not (see :mod:`captum_gmar.evaluation.metrics.invariance`).
        start_layer, readout, text, references, center: as
            :class:`~captum_gmar.methods.base.AttentionAttribution`; ``model`` may be one
            already wrapped in a :class:`~captum_gmar.vit.model.VisionTransformer`.
        weight_transform: applied to the head weights ``(B, L', H)`` before the heads
            are fused, returning weights of the same shape (each layer summing to 1),
            e.g. ``functools.partial(uniform_except, keep=mask)`` (see
            :func:`~captum_gmar.core.heads.uniform_except`) to ablate some of them;
            ``return_head_weights`` then returns the transformed weights.
        gate: for ``head_gradient="gate"``: ``"abs"`` (default) or ``"positive"`` part of
            the gate gradient.

    Example::

        gmar = GMARAttribution(model)
        attr = gmar.attribute(pixel_values, target=labels)  # (B, C, H, W)
        zero_shot = GMARAttribution(clip, text=processor(text=prompts, padding=True, return_tensors="pt"))
        attr = zero_shot.attribute(pixel_values, target=0)  # explains prompts[0]
        similarity = GMARAttribution(dinov2_backbone, references=embed_images(dinov2_backbone, refs))
        attr = similarity.attribute(pixel_values, target=1)  # why each image resembles refs[1]
    """

    #: a layer's probabilities, their gradient and the heads' weighted sum, whichever gradient
    #: scores the heads (2.21 to 2.23 fitted), fitted on the measured peak (benchmarks/fit_memory.py)
    maps_alive = 2.23

    def __init__(
        self,
        model: nn.Module | VisionTransformer,
        norm: Norm = "l1",
        alpha: float = 0.5,
        head_gradient: HeadGradient = "context",
        start_layer: int = 0,
        readout: Readout = "auto",
        text: Prompts | None = None,
        references: Tensor | None = None,
        center: Tensor | None = None,
        weight_transform: Callable[[Tensor], Tensor] | None = None,
        gate: GateSign = "abs",
    ) -> None:
        if norm not in ("l1", "l2"):
            raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
        if head_gradient not in ("context", "attention", "gate"):
            raise ValueError(f"head_gradient must be 'context', 'attention' or 'gate', got {head_gradient!r}")
        if gate not in ("abs", "positive"):
            raise ValueError(f"gate must be 'abs' or 'positive', got {gate!r}")
        self.norm = norm
        self.alpha = check_alpha(alpha)
        self.head_gradient = head_gradient
        self.gate = gate
        self.weight_transform = weight_transform
        super().__init__(model, start_layer=start_layer, readout=readout, text=text, references=references, center=center)

    # properties where the base class has plain attributes (mypy reports any such override)
    @property
    def needs_value(self) -> bool:  # type: ignore[override]
        return self.head_gradient != "context"

    @classmethod
    def get_name(cls) -> str:
        return "GMAR"

    @overload
    def attribute(
        self,
        inputs: InputType,
        target: TargetType = None,
        internal_batch_size: int | None = None,
        output: OutputKind = "input",
        *,
        return_head_weights: Literal[False] = False,
        allow_slow: bool = False,
    ) -> InputType: ...

    @overload
    def attribute(
        self,
        inputs: InputType,
        target: TargetType = None,
        internal_batch_size: int | None = None,
        output: OutputKind = "input",
        *,
        return_head_weights: Literal[True],
        allow_slow: bool = False,
    ) -> tuple[InputType, Tensor]: ...

    @log_usage()
    def attribute(
        self,
        inputs: InputType,
        target: TargetType = None,
        internal_batch_size: int | None = None,
        output: OutputKind = "input",
        *,
        return_head_weights: bool = False,
        allow_slow: bool = False,
    ) -> InputType | tuple[InputType, Tensor]:
        """Explain ``target`` for each image.

        Arguments as :meth:`AttentionAttribution.attribute
        <captum_gmar.methods.base.AttentionAttribution.attribute>`, and:

        Args:
            return_head_weights: also return the head weights ``(B, L', H)`` of the
                ``L' = L - start_layer`` layers taking part (each row sums to 1).

        Returns:
            float32, non-negative attributions on ``inputs``' device, ``(B, C, H, W)``
            or ``(B, h, w)``; with ``return_head_weights`` a tuple ``(attributions,
            head_weights)``.
        """
        maps, weights, _ = self._attribute(inputs, target, internal_batch_size, output, allow_slow)
        assert weights is not None  # GMAR's _explain always returns them
        return (maps, weights) if return_head_weights else maps

    def class_head_weights(
        self,
        inputs: Tensor,
        classes: Sequence[int] | Tensor | None = None,
        internal_batch_size: int | None = None,
        *,
        allow_slow: bool = False,
    ) -> Tensor:
        """GMAR's head weights for every image and every class in ``classes``.

        One forward pass per chunk of images and one backward pass per class on it (the
        graph is kept between them), so explaining ``K`` classes costs one forward and
        ``K`` backward passes, not ``K`` of each. ``weight_transform`` is not applied:
        these are the weights GMAR computes.

        Args:
            inputs: pixel values ``(B, C, H, W)``.
            classes: ``(K,)`` distinct class indices; ``None`` for every class of the model.
            internal_batch_size: images per forward pass (default: all at once).
            allow_slow: as in :meth:`attribute`.

        Returns:
            ``(B, K, L', H)`` float32 on ``inputs``' device, each layer summing to 1.
        """
        vit, param = self.vit, self.vit.parameter
        check_pixel_values(inputs, vit.num_channels, vit.patch_size)
        classes = torch.arange(vit.num_labels) if classes is None else torch.as_tensor(classes)
        if classes.dim() != 1 or not len(classes) or classes.is_floating_point() or classes.dtype == torch.bool:
            raise ValueError(f"classes must be a non-empty 1-D sequence of class indices, got {classes.tolist()!r}")
        if (classes < 0).any() or (classes >= vit.num_labels).any() or len(set(classes.tolist())) < len(classes):
            raise ValueError(f"classes must be distinct indices in [0, {vit.num_labels - 1}], got {classes.tolist()}")
        self.check_memory(inputs.shape, internal_batch_size, allow_slow)
        chunks = []
        for part in batch_slices(inputs.shape[0], internal_batch_size):
            x = inputs[part].to(device=param.device, dtype=param.dtype)
            with vit.trace(x, with_grad=True, keep_value=self.needs_value) as trace:
                per_class = []
                for k, c in enumerate(classes.tolist()):
                    target = torch.full((len(x),), c, device=param.device)
                    grads = trace.context_grads(target, self.layers, retain_graph=k < len(classes) - 1)
                    per_class.append(self._weights(trace, grads))
                    del grads
                chunks.append(torch.stack(per_class, dim=1))
        return torch.cat(chunks).to(inputs.device)

    def _weights(self, trace: AttentionTrace, grads: Sequence[Tensor]) -> Tensor:
        """Head weights ``(B, L', H)`` from the context gradients of the layers taking part."""
        return normalize_head_weights(torch.stack([self._head_scores(trace, i, g) for i, g in zip(self.layers, grads)], dim=1))

    def _explain(self, trace: AttentionTrace, targets: Targets) -> Explanation:
        layers = self.layers
        grads = trace.context_grads(targets, layers)
        weights = self._weights(trace, grads)
        del grads
        if self.weight_transform is not None:
            transformed = self.weight_transform(weights)
            if transformed.shape != weights.shape:
                raise ValueError(f"weight_transform must return weights of shape {tuple(weights.shape)}, got {tuple(transformed.shape)}")
            weights = transformed
        relevance = rollout_row(
            (
                add_residual(fuse_heads(trace.attention_probs(layer), weights[:, k]), self.alpha)
                for k, layer in reversed(list(enumerate(layers)))
            ),
            self._readout(trace),
        )
        return Explanation(relevance, weights)

    def _head_scores(self, trace: AttentionTrace, layer: int, context_grad: Tensor) -> Tensor:
        """``(B, H)`` non-negative scores of ``layer``'s heads from its context gradient ``(B, T, H * d)``."""
        if self.head_gradient == "attention":
            return head_scores(attention_grad(context_grad, trace.value(layer)), self.norm)
        if self.head_gradient == "context":
            return context_head_scores(context_grad, trace.blocks[layer].num_heads, self.norm)
        grad = split_heads(context_grad, trace.blocks[layer].num_heads)
        # the heads' outputs C_h = A_h @ V_h, rebuilt: the trace keeps no activations
        return gate_scores(grad, trace.attention_probs(layer) @ trace.value(layer).float(), self.gate)


def shared_head_weights(
    variants: dict[str, GMARAttribution], inputs: Tensor, target: int, internal_batch_size: int = 64
) -> dict[str, Tensor]:
    """Several GMAR variants' head weights for class ``target`` from one forward and one
    backward pass per chunk of images: the head scores differ (``norm``,
    ``head_gradient``, ``gate``), the gradients they read are the same.

    Args:
        variants: name -> a :class:`GMARAttribution`, all on one wrapped model (one
            :class:`~captum_gmar.vit.model.VisionTransformer`) and with the same layers.
        inputs: pixel values ``(B, C, H, W)``.
        target: the class whose score the gradients are of.
        internal_batch_size: images per pass.

    Returns:
        name -> ``(B, L', H)`` float32 on ``inputs``' device, each layer summing to 1.
    """
    first = next(iter(variants.values()))
    vit, param, layers = first.vit, first.vit.parameter, first.layers
    if any(v.vit is not vit or v.layers != layers for v in variants.values()):
        raise ValueError("the variants must share one wrapped model (VisionTransformer) and their layers")
    check_pixel_values(inputs, vit.num_channels, vit.patch_size)
    keep_value = any(v.needs_value for v in variants.values())
    out: dict[str, list[Tensor]] = {name: [] for name in variants}
    for part in batch_slices(inputs.shape[0], internal_batch_size):
        x = inputs[part].to(device=param.device, dtype=param.dtype)
        with vit.trace(x, with_grad=True, keep_value=keep_value) as trace:
            grads = trace.context_grads(torch.full((len(x),), target, device=param.device), layers)
            for name, variant in variants.items():
                out[name].append(variant._weights(trace, grads).detach())
            del grads
    return {name: torch.cat(chunks).to(inputs.device) for name, chunks in out.items()}
