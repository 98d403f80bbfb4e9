"""Model plumbing for Hugging Face vision transformers.

Finds the attention blocks of a supported model (transformers 4.57 and 5.x module names),
knows its special tokens and patch grid, and runs one forward pass while capturing, per
layer, the query/key/value projections and the per-head outputs (the input of the
attention's output projection). Nothing about the model is changed for good: hooks,
train/eval modes and ``requires_grad`` flags are restored on exit, also after an error,
and the attention implementation (eager, sdpa, flash) is never touched.

Models change after an attribution object is built (LoRA injected or merged, layers
replaced), so the blocks are found again at every pass. Passes on one model are
serialised by a per-model lock, so calls from several threads are safe (different models
still run in parallel), and the capturing hooks ignore forward passes of other threads.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
import transformers
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge

from .errors import NonFiniteError, UnsupportedModelError
from .heads import attention_probs
from .names import SUPPORTED_FAMILIES, SUPPORTED_MODEL_CLASSES

__all__ = ["SUPPORTED_MODEL_CLASSES", "AttentionTrace", "VisionTransformer", "check_supported", "model_lock", "unwrap_model"]



@dataclass(frozen=True)
class AttentionBlock:
    """The projections of one self-attention block.

    ``output`` is the projection whose input is the concatenation of the heads' outputs
    (``o_proj`` in transformers 5, ``attention.output.dense`` in 4.x).
    """

    query: nn.Module
    key: nn.Module
    value: nn.Module
    output: nn.Module
    num_heads: int
    scaling: float


@dataclass
class LayerCapture:
    """What one layer left behind in one forward pass; tensors are ``(B, T, D)``.

    ``query``, ``key`` and ``value`` are the projections' outputs, detached. With sdpa
    attention autograd saves these very tensors for the attention's backward, so
    holding them costs no memory; eager attention saves reshaped copies instead, so
    there each kept projection costs one ``(B, T, D)`` tensor per layer. That is why
    ``value`` (needed only for attention-probability gradients) is kept only when
    asked for. ``context`` is where the heads' outputs (the output projection's input)
    sit in the autograd graph: an edge to take gradients at, which does not keep the
    tensor alive (``None`` without a graph). ``hidden``, the normalised tokens entering
    the attention, is kept only when asked for, as autograd would not keep it.
    """

    query: Tensor
    key: Tensor
    context: GradientEdge | None
    value: Tensor | None = None
    hidden: Tensor | None = None


@dataclass
class AttentionTrace:
    """What one forward pass left behind: the logits ``(B, K)`` and one capture per layer."""

    logits: Tensor
    blocks: Sequence[AttentionBlock]
    layers: list[LayerCapture] = field(default_factory=list)

    def attention_probs(self, layer: int) -> Tensor:
        """``(B, H, T, T)`` float32 attention probabilities of ``layer``."""
        block, cap = self.blocks[layer], self.layers[layer]
        return attention_probs(cap.query, cap.key, block.num_heads, block.scaling)

    def target_grads(self, targets: Tensor, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Gradients of ``sum_b logits[b, targets[b]]`` w.r.t. captured ``tensors``.

        One backward pass that stops at the lowest tensor asked for and computes no
        parameter gradients. Examples are independent, so each example's gradient is
        that of its own target logit.

        Args:
            targets: ``(B,)`` class indices.
            tensors: captured tensors in the graph or gradient edges (``hidden``,
                ``context``).

        Returns:
            One gradient per tensor, same shapes, in the order given.
        """
        index = targets.view(-1, 1).clone()  # a normal tensor even if made under inference_mode
        score = self.logits.gather(1, index).sum()
        return list(torch.autograd.grad(score, list(tensors)))

    def context_grads(self, targets: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """Gradients w.r.t. the heads' outputs ``(B, T, H * d)`` of ``layers``, in that order."""
        return self.target_grads(targets, [self.layers[i].context for i in layers])


class VisionTransformer:
    """Adapter around a supported Hugging Face image classifier.

    Args:
        model: one of :data:`SUPPORTED_MODEL_CLASSES` (or a subclass), any attention
            implementation, on any device and dtype; also wrapped by peft
            (``PeftModel``) or ``torch.compile`` (the wrapped model is used; its
            passes run uncompiled).

    Raises:
        UnsupportedModelError: if the model is not a supported vision transformer.
    """

    def __init__(self, model: nn.Module) -> None:
        model = unwrap_model(model)
        check_supported(model)
        self.model = model
        config = model.config
        embeddings = model.base_model.embeddings
        distillation = 1 if getattr(embeddings, "distillation_token", None) is not None else 0
        registers = getattr(embeddings, "register_tokens", None)
        #: tokens before the patches: CLS, then distillation or register tokens
        self.num_prefix_tokens = 1 + distillation + (registers.shape[1] if registers is not None else 0)
        self.patch_size = _pair(config.patch_size)
        self.image_size = _pair(config.image_size)
        self.num_channels: int = config.num_channels
        self.num_labels: int = config.num_labels
        self.num_layers: int = config.num_hidden_layers
        self.num_heads: int = config.num_attention_heads
        self.hidden_size: int = config.hidden_size
        self._takes_interpolate = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
        self.blocks  # noqa: B018 -- finds the blocks now, to fail here rather than at the first call

    @property
    def blocks(self) -> list[AttentionBlock]:
        """The attention blocks as the model has them now, first layer first.

        Found anew at every access (a walk over the modules, microseconds), so that
        projections replaced after this adapter was built (LoRA injected or merged) are
        the ones captured.
        """
        blocks = _find_attention_blocks(self.model.base_model)
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
        return getattr(self.model.config, "_attn_implementation", "eager") == "eager"

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid ``(h, w)`` for an input of ``height x width`` pixels."""
        return height // self.patch_size[0], width // self.patch_size[1]

    def num_tokens(self, height: int, width: int) -> int:
        """``T``: special tokens plus patches for an input of ``height x width`` pixels."""
        h, w = self.grid(height, width)
        return self.num_prefix_tokens + h * w

    def logits(self, pixel_values: Tensor) -> Tensor:
        """The model's logits ``(B, K)`` for ``pixel_values`` ``(B, C, H, W)``.

        Passes ``interpolate_pos_encoding=True`` when the input size differs from the
        training size and the model needs to be told. Usable as Captum's forward_func.
        """
        kwargs = {}
        if self._takes_interpolate and tuple(pixel_values.shape[-2:]) != self.image_size:
            kwargs["interpolate_pos_encoding"] = True
        output = self.model(pixel_values=pixel_values, **kwargs)
        return output.logits if hasattr(output, "logits") else output[0]

    @contextmanager
    def trace(
        self, pixel_values: Tensor, with_grad: bool, keep_value: bool = False, keep_hidden: bool = False
    ) -> Iterator[AttentionTrace]:
        """Run one forward pass in eval mode and capture every layer's tensors.

        The pass runs under the model's lock, in eval mode with ``requires_grad=False`` on
        the parameters (so a backward pass computes no parameter gradients); the model is
        restored as it was (also after an error) and the lock released before the block's
        body runs, so the body (backward pass, rollout) of one call overlaps the next
        call's forward pass.

        Args:
            pixel_values: ``(B, C, H, W)`` on the model's device and dtype.
            with_grad: build the autograd graph (from the input up) for
                :meth:`AttentionTrace.context_grads`.
            keep_value: also keep each layer's ``value`` projection.
            keep_hidden: also keep each layer's ``hidden`` tokens.

        Raises:
            NonFiniteError: if a logit is NaN or infinite (overflow).
        """
        model = self.model
        with model_lock(model):
            blocks = self.blocks
            modes = {module: module.training for module in model.modules()}
            grads = {param: param.requires_grad for param in model.parameters()}
            captures: list[dict[str, Tensor]] = [{} for _ in blocks]
            owner = threading.get_ident()
            handles = []
            try:
                model.eval()
                for param in grads:
                    param.requires_grad_(False)
                for store, block in zip(captures, blocks):
                    for name in ("query", "key", "value") if keep_value else ("query", "key"):
                        handles.append(getattr(block, name).register_forward_hook(_store_output(store, name, owner)))
                    if keep_hidden:
                        handles.append(block.query.register_forward_pre_hook(_store_input(store, "hidden", owner)))
                    handles.append(block.output.register_forward_pre_hook(_store_edge(store, "context", owner)))
                with _autograd(with_grad):
                    x = pixel_values.detach().clone().requires_grad_(with_grad)
                    logits = self.logits(x)
            finally:
                for handle in handles:
                    handle.remove()
                for param, flag in grads.items():
                    param.requires_grad_(flag)
                for module, mode in modes.items():
                    module.training = mode
        _check_finite_logits(logits)
        trace = AttentionTrace(logits=logits, blocks=blocks, layers=[_layer_capture(c, i) for i, c in enumerate(captures)])
        self._check_tokens(trace, pixel_values)
        with _autograd(with_grad):
            yield trace

    @contextmanager
    def heads_zeroed(self, mask: Tensor) -> Iterator[None]:
        """Zero chosen heads' outputs in this thread's forward passes inside the block.

        Args:
            mask: bool, ``(L, H)`` (same heads for every example) or ``(B, L, H)``;
                ``True`` zeroes that head's channels of the attention output projection's
                input, i.e. removes the head's contribution to the residual stream.
        """
        if mask.shape[-2:] != (self.num_layers, self.num_heads) or mask.dim() not in (2, 3):
            raise ValueError(f"mask must be (L, H) or (B, L, H) with L={self.num_layers}, H={self.num_heads}; got {tuple(mask.shape)}")
        owner = threading.get_ident()
        handles = []
        try:
            for layer, block in enumerate(self.blocks):
                keep = (~mask[..., layer, :].bool()).float()  # (H,) or (B, H)
                if keep.all():
                    continue
                handles.append(block.output.register_forward_pre_hook(_zero_heads(keep, owner)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _check_tokens(self, trace: AttentionTrace, pixel_values: Tensor) -> None:
        h, w = self.grid(*pixel_values.shape[-2:])
        expected = self.num_prefix_tokens + h * w
        found = trace.layers[0].query.shape[1]
        if found != expected:
            raise RuntimeError(
                f"expected {self.num_prefix_tokens} special tokens plus a {h}x{w} patch grid "
                f"({expected} tokens), but the model produced {found} tokens"
            )


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that serialises this package's passes on ``model`` (one per model, made on
    first use, dropped with the model)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def unwrap_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside peft and ``torch.compile`` wrappers.

    ``PeftModel`` injects its adapters into the wrapped model's own modules, so the
    wrapped model computes the same logits; a compiled wrapper's ``_orig_mod`` is the
    model it compiled.
    """
    while True:
        if type(model).__module__.startswith("peft.") and hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModelError` unless ``model`` is a supported class."""
    supported = tuple(getattr(transformers, name) for name in SUPPORTED_MODEL_CLASSES if hasattr(transformers, name))
    if isinstance(model, supported):
        return
    name = type(model).__name__
    why = ""
    if "swin" in name.lower():
        why = " (its windowed attention has no global token-to-token map to roll out)"
    raise UnsupportedModelError(
        f"{name} is not a supported vision transformer{why}. Supported: {SUPPORTED_FAMILIES} image classifiers "
        f"({', '.join(SUPPORTED_MODEL_CLASSES)}), loaded with from_pretrained, also inside peft or torch.compile."
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


def _layer_capture(store: dict, layer: int) -> LayerCapture:
    if "query" not in store or "key" not in store or "context" not in store:
        raise RuntimeError(
            f"layer {layer}'s attention did not run its projections in the forward pass; "
            "the model's attention module is not the one transformers defines"
        )
    return LayerCapture(**store)


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


def _store_output(store: dict[str, Tensor], name: str, owner: int):
    def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        if threading.get_ident() == owner:  # another thread's forward pass is not ours to capture
            store[name] = output.detach()

    return hook


def _store_input(store: dict[str, Tensor], name: str, owner: int):
    def hook(module: nn.Module, args: tuple) -> None:
        if threading.get_ident() == owner:
            store[name] = args[0]

    return hook


def _store_edge(store: dict[str, GradientEdge | None], name: str, owner: int):
    def hook(module: nn.Module, args: tuple) -> None:
        if threading.get_ident() == owner:
            store[name] = get_gradient_edge(args[0]) if args[0].requires_grad else None

    return hook


def _zero_heads(keep: Tensor, owner: int):
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if threading.get_ident() != owner:
            return None
        context = args[0]  # (B, T, H * d)
        per_channel = keep.to(context.device, context.dtype).repeat_interleave(context.shape[-1] // keep.shape[-1], dim=-1)
        return (context * (per_channel if per_channel.dim() == 1 else per_channel[:, None, :]),) + tuple(args[1:])

    return hook


def _find_attention_blocks(backbone: nn.Module) -> list[AttentionBlock]:
    """Attention blocks of a ViT-family backbone, first layer first.

    transformers 5 names the projections ``q_proj/k_proj/v_proj/o_proj`` on one module;
    4.x has ``attention.{query,key,value}`` and ``output.dense`` under an outer module.
    """
    blocks = []
    for module in backbone.modules():
        if all(hasattr(module, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
            inner, projections = module, (module.q_proj, module.k_proj, module.v_proj, module.o_proj)
        elif hasattr(module, "output") and hasattr(getattr(module, "attention", None), "query"):
            inner = module.attention
            projections = (inner.query, inner.key, inner.value, module.output.dense)
        else:
            continue
        heads = int(inner.num_attention_heads)
        head_dim = projections[0].out_features // heads
        scaling = float(getattr(inner, "scaling", head_dim**-0.5))
        blocks.append(AttentionBlock(*projections, num_heads=heads, scaling=scaling))
    return blocks


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)
