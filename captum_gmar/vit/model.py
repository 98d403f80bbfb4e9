"""Model plumbing: one captured forward pass of a supported vision transformer.

:class:`VisionTransformer` wraps a supported model (see :mod:`captum_gmar.vit.architectures`
for what is known about each family) and runs one forward pass while capturing, per
layer, what the attention computed and where the heads' outputs enter the output
projection (see :mod:`captum_gmar.vit.capture`). Nothing about the model is changed: the
hooks are removed on exit, also after an error; train/eval modes, ``requires_grad`` flags
and the attention implementation (eager, sdpa, flash) are never touched, so other
threads' passes (training included) run as they would alone (see
:mod:`captum_gmar.vit.model_state`).

Models change after an attribution object is built (LoRA injected or merged, layers
replaced), so the blocks are found again at every pass. Passes on one model are
serialised by a per-model lock, so calls from several threads are safe (different models
still run in parallel), and the capturing hooks ignore forward passes of other threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

import torch
from torch import Tensor, nn

from ..core.formatting import Targets
from ..errors import NonFiniteError, UnsupportedModelError
from ..names import SUPPORTED_MODEL_CLASSES
from .architectures import Architecture, describe
from .blocks import AttentionBlock, Pooling, Readout
from .capture import AttentionTrace, capture_attention, layer_captures, score_gradients
from .embedding import EmbeddingHead
from .model_state import evaluating, frozen_parameters, model_lock, unchanged_weights, unwrap_model
from .similarity import SimilarityModel
from .zero_shot import Prompts

__all__ = ["SUPPORTED_MODEL_CLASSES", "AttentionTrace", "VisionTransformer", "as_vision_transformer"]


class VisionTransformer:
    """Adapter around a supported model.

    Args:
        model: one of :data:`~captum_gmar.names.SUPPORTED_MODEL_CLASSES` (or a subclass),
            a zero-shot image-text model (:data:`~captum_gmar.names.ZERO_SHOT_MODEL_CLASSES`)
            with ``text``, a native timm ViT, or a user's classifier on a supported
            backbone (see ``docs/models.md``); any attention implementation, on any device
            and dtype; also wrapped by peft (``PeftModel``) or ``torch.compile`` (the
            wrapped model is used; its passes run uncompiled).
        text: for zero-shot models, the tokenized prompts (the tokenizer's or processor's
            output, or an ``input_ids`` tensor); prompt ``k`` is class ``k``.
        references: for embedding models, ``(K, D)`` reference embeddings; class ``k``
            is the cosine similarity to reference ``k`` (the model is wrapped in a
            :class:`~captum_gmar.vit.similarity.SimilarityModel`).
        center: with ``references``, an optional ``(D,)`` centre subtracted from the
            embeddings before the cosine.

    Raises:
        UnsupportedModelError: if the model is not a supported vision transformer.
    """

    def __init__(
        self, model: nn.Module, text: Prompts | None = None, references: Tensor | None = None, center: Tensor | None = None
    ) -> None:
        model = unwrap_model(model)
        if references is not None:
            if text is not None:
                raise ValueError("pass text= (zero-shot prompts) or references= (embeddings), not both")
            model = SimilarityModel(model, references, center)
        elif center is not None:
            raise ValueError("center= centres the embeddings compared with references=; pass references= too")
        self.model = model
        #: the module whose lock (:func:`~captum_gmar.vit.model_state.model_lock`) serialises
        #: passes: the backbone, whatever head a call puts on it
        self.lock_owner = model.backbone if isinstance(model, EmbeddingHead) else model
        arch: Architecture = describe(self.model, text)
        self.architecture = arch
        #: tokens before the patches: class token, then distillation or register tokens
        self.num_prefix_tokens = arch.num_prefix_tokens
        self.patch_size = arch.patch_size
        self.image_size = arch.image_size
        self.num_channels = arch.num_channels
        self.num_labels = arch.num_labels
        self.num_layers = arch.num_layers
        self.hidden_size = arch.hidden_size
        self.num_heads = self.blocks[0].num_heads  # also finds the blocks now, to fail here rather than at the first call

    @property
    def blocks(self) -> list[AttentionBlock]:
        """The attention blocks as the model has them now, first layer first.

        Found anew at every access (a walk over the modules, microseconds), so that
        projections replaced after this adapter was built (LoRA injected or merged) are
        the ones captured.
        """
        blocks = self.architecture.blocks()
        if len(blocks) != self.num_layers:
            raise UnsupportedModelError(
                f"found {len(blocks)} attention blocks in {type(self.model).__name__} but the config has "
                f"{self.num_layers} layers; this model's layout is not supported"
            )
        return blocks

    @property
    def parameter(self) -> Tensor:
        """A parameter of the model, to read its device and dtype from."""
        return next(self.model.parameters())

    @property
    def keeps_attention_for_backward(self) -> bool:
        """Whether the model's own attention keeps its ``(B, H, T, T)`` probabilities for
        the backward pass (eager attention does; sdpa and flash kernels do not)."""
        return self.architecture.attention_is_eager()

    @property
    def keeps_attention_maps(self) -> bool:
        """Whether a pass keeps every layer's ``(B, H, T, T)`` probabilities, with or
        without a backward pass (the eager attention of a model captured at its kernel)."""
        return self.architecture.capture == "kernel" and self.keeps_attention_for_backward

    @property
    def kept_attention_biases(self) -> int:
        """The ``(1, H, T, T)`` relative position biases a pass keeps: those of a model whose
        attention adds them, given to an sdpa or flash kernel (which saves them for the
        backward pass, and the capture keeps them); none under eager attention."""
        return 0 if self.keeps_attention_for_backward else self.architecture.position_biases

    def readout_pooling(self, readout: Readout) -> Pooling:
        """The token groups the rollout reads for ``readout`` (see
        :meth:`Architecture.readout_pooling <captum_gmar.vit.architectures.Architecture.readout_pooling>`)."""
        return self.architecture.readout_pooling(readout)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid ``(h, w)`` for an input of ``height x width`` pixels."""
        return height // self.patch_size[0], width // self.patch_size[1]

    def num_tokens(self, height: int, width: int) -> int:
        """``T``: special tokens plus patches for an input of ``height x width`` pixels."""
        h, w = self.grid(height, width)
        return self.num_prefix_tokens + h * w

    def logits(self, pixel_values: Tensor) -> Tensor:
        """The model's logits ``(B, K)`` for ``pixel_values`` ``(B, C, H, W)`` (for a
        zero-shot model: the image-text logits, one per prompt).

        Passes ``interpolate_pos_encoding=True`` when the input size differs from the
        training size and the model needs to be told. Usable as Captum's forward_func.
        """
        return self.architecture.logits(pixel_values)

    @contextmanager
    def trace(self, pixel_values: Tensor, with_grad: bool, keep_value: bool = False, keep_hidden: bool = False) -> Iterator[AttentionTrace]:
        """Run one forward pass in eval mode and capture every layer's attention.

        The pass runs under the model's lock, in eval mode (a model in training mode is
        refused) with the parameters held constant in this thread (so a backward pass
        computes no parameter gradients); the hooks are removed (also after an error) and
        the lock released before the block's body runs, so the body (backward pass,
        rollout) of one call overlaps the next call's forward pass.

        Args:
            pixel_values: ``(B, C, H, W)`` on the model's device and dtype.
            with_grad: build the autograd graph (from the input up) for
                :meth:`AttentionTrace.context_grads`.
            keep_value: also keep each layer's values.
            keep_hidden: also keep each layer's ``hidden`` tokens.

        Raises:
            ValueError: if the model is in training mode.
            RuntimeError: if its weights change before the block ends (another thread's
                optimizer step).
            NonFiniteError: if a logit is NaN or infinite (overflow).
        """
        model = self.model
        arch = self.architecture
        with unchanged_weights(model):
            with model_lock(self.lock_owner):
                blocks = self.blocks
                with evaluating(model), capture_attention(blocks, arch.capture, keep_value, keep_hidden, arch.probe) as (stores, pooled):
                    with _autograd(with_grad), frozen_parameters():
                        x = pixel_values.detach().clone().requires_grad_(with_grad)
                        logits = self.logits(x)
            _check_finite_logits(logits)
            trace = AttentionTrace(
                logits=logits,
                blocks=blocks,
                num_prefix_tokens=self.num_prefix_tokens,
                layers=layer_captures(stores),
                probe=pooled.get("probe"),
            )
            self._check_tokens(trace, pixel_values)
            with _autograd(with_grad):
                yield trace

    def input_gradient(
        self, pixel_values: Tensor, targets: Targets, rules: Callable[[list[AttentionBlock]], AbstractContextManager]
    ) -> tuple[Tensor, Tensor]:
        """One forward pass under ``rules`` and one backward pass to the input.

        The forward pass runs as in :meth:`trace` (the model's lock, eval mode, the
        parameters held constant in this thread) inside ``rules(blocks)``, a
        context manager that changes how the gradient flows (e.g.
        :func:`~captum_gmar.vit.propagation.relevance_rules`); the backward pass of
        ``sum_b logits[b, targets[b]]`` runs after the lock is released.

        Args:
            pixel_values: ``(B, C, H, W)`` on the model's device and dtype.
            targets: ``(B,)`` class indices on that device, a target function, or
                ``None`` for each example's predicted class.
            rules: called with the attention blocks found for this pass.

        Returns:
            The gradient ``(B, C, H, W)`` of the targets' logits, in ``pixel_values``' dtype,
            and the logits ``(B, K)`` of the pass, detached (the rules change the backward
            pass only: these are the model's logits).

        Raises:
            ValueError, RuntimeError, NonFiniteError: as :meth:`trace`.
        """
        model = self.model
        with unchanged_weights(model):
            with model_lock(self.lock_owner):
                with evaluating(model), rules(self.blocks), _autograd(True), frozen_parameters():
                    x = pixel_values.detach().clone().requires_grad_(True)
                    logits = self.logits(x)
            _check_finite_logits(logits)
            with _autograd(True):
                (gradient,) = score_gradients(logits, targets, [x])
        return gradient, logits.detach()

    @contextmanager
    def heads_zeroed(self, mask: Tensor) -> Iterator[None]:
        """Zero chosen heads' outputs in this thread's forward passes inside the block.

        Args:
            mask: bool, ``(L, H)`` (same heads for every example) or ``(B, L, H)``;
                ``True`` zeroes that head's channels of the attention output projection's
                input, i.e. removes the head's contribution to the residual stream.
        """
        with self.heads_replaced(mask):
            yield

    @contextmanager
    def heads_replaced(self, mask: Tensor, values: Tensor | None = None) -> Iterator[None]:
        """Replace chosen heads' outputs by fixed values (zero by default) in this thread's
        forward passes inside the block: the heads' ablation, zero or mean.

        Args:
            mask: bool, ``(L, H)`` (same heads for every example) or ``(B, L, H)``;
                ``True`` replaces that head's channels of the attention output projection's
                input, at every token.
            values: ``(L, H, d)``, what a replaced head outputs at every token (e.g. its
                mean output over reference images, :func:`head_means`); ``None``: zero.
        """
        if mask.shape[-2:] != (self.num_layers, self.num_heads) or mask.dim() not in (2, 3):
            raise ValueError(f"mask must be (L, H) or (B, L, H) with L={self.num_layers}, H={self.num_heads}; got {tuple(mask.shape)}")
        if values is not None and (values.dim() != 3 or tuple(values.shape[:2]) != (self.num_layers, self.num_heads)):
            raise ValueError(f"values must be (L, H, d) with L={self.num_layers}, H={self.num_heads}; got {tuple(values.shape)}")
        owner = threading.get_ident()
        handles = []
        try:
            for layer, block in enumerate(self.blocks):
                keep = (~mask[..., layer, :].bool()).float()  # (H,) or (B, H)
                if keep.all():
                    continue
                fill = None if values is None else values[layer].reshape(-1)  # (H * d,)
                handles.append(block.output.register_forward_pre_hook(_replace_heads(keep, fill, owner)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def head_means(self, pixel_values: Tensor, batch_size: int = 64) -> Tensor:
        """Each head's mean output over the images ``pixel_values`` ``(N, C, H, W)`` and
        their tokens: ``(L, H, d)`` float32 (what :meth:`heads_replaced` puts in place of a
        head for its mean ablation)."""
        sums: list[Tensor | None] = [None] * self.num_layers
        count = 0
        owner = threading.get_ident()

        def summing(layer: int) -> Callable[[nn.Module, tuple], None]:
            def hook(module: nn.Module, args: tuple) -> None:
                if threading.get_ident() == owner:
                    total = args[0].detach().float().sum(dim=(0, 1))
                    sums[layer] = total if sums[layer] is None else sums[layer] + total

            return hook

        handles = [block.output.register_forward_pre_hook(summing(layer)) for layer, block in enumerate(self.blocks)]
        try:
            with torch.no_grad():
                for start in range(0, len(pixel_values), batch_size):
                    x = pixel_values[start : start + batch_size].to(device=self.parameter.device, dtype=self.parameter.dtype)
                    self.logits(x)
                    count += len(x) * self.num_tokens(*x.shape[-2:])
        finally:
            for handle in handles:
                handle.remove()
        return torch.stack([total / count for total in sums if total is not None]).view(self.num_layers, self.num_heads, -1)

    def _check_tokens(self, trace: AttentionTrace, pixel_values: Tensor) -> None:
        h, w = self.grid(*pixel_values.shape[-2:])
        expected = self.num_prefix_tokens + h * w
        found = trace.layers[0].num_tokens
        if found != expected:
            raise RuntimeError(
                f"expected {self.num_prefix_tokens} special tokens plus a {h}x{w} patch grid "
                f"({expected} tokens), but the model produced {found} tokens"
            )


def _check_finite_logits(logits: Tensor) -> None:
    finite = torch.isfinite(logits.detach()).all(-1)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten().tolist()
        raise NonFiniteError(
            f"the model's logits are NaN or infinite for example(s) {bad[:10]} (overflow: inputs far outside the "
            "image processor's range, or a float16 model out of its range); no map can be computed from them. "
            "Check the inputs' scale or run the model in float32 or bfloat16."
        )


def _autograd(enabled: bool) -> ExitStack:
    """Autograd on, also inside a caller's ``no_grad`` or ``inference_mode`` (the input is
    cloned, so inference tensors are fine), or off."""
    stack = ExitStack()
    if enabled:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
    else:
        stack.enter_context(torch.no_grad())
    return stack


def _replace_heads(keep: Tensor, fill: Tensor | None, owner: int) -> Callable[[nn.Module, tuple], tuple | None]:
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if threading.get_ident() != owner:
            return None
        context = args[0]  # (B, T, H * d)
        per_channel = keep.to(context.device, context.dtype).repeat_interleave(context.shape[-1] // keep.shape[-1], dim=-1)
        per_channel = per_channel if per_channel.dim() == 1 else per_channel[:, None, :]
        replaced = context * per_channel
        if fill is not None:
            replaced = replaced + fill.to(context.device, context.dtype) * (1 - per_channel)
        return (replaced,) + tuple(args[1:])

    return hook


def as_vision_transformer(
    model: nn.Module | VisionTransformer, text: Prompts | None = None, references: Tensor | None = None, center: Tensor | None = None
) -> VisionTransformer:
    """``model`` wrapped (see :class:`VisionTransformer` for the arguments), or ``model``
    itself where it is wrapped already, so that one wrapper serves every method and
    metric of a comparison.

    Raises:
        ValueError: ``text``, ``references`` or ``center`` given with a wrapped model
            (they are the wrapper's: pass them to :class:`VisionTransformer`).
    """
    if not isinstance(model, VisionTransformer):
        return VisionTransformer(model, text, references, center)
    if text is not None or references is not None or center is not None:
        raise ValueError(
            "text=, references= and center= go with the model when it is wrapped, VisionTransformer(model, text=...); "
            "this one is wrapped already"
        )
    return model
