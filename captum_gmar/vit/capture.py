"""Capturing what every attention block computed in one forward pass.

Two ways, chosen per family (see :mod:`captum_gmar.vit.architectures`), both without
switching the model's attention implementation and without changing the model:

- ``"projections"``: forward hooks keep the query and key projections' outputs; the
  probabilities are rebuilt as ``softmax(q k^T s)``, which is exactly what these
  attentions compute.
- ``"kernel"``: a :class:`~torch.overrides.TorchFunctionMode`, active in the explaining
  thread only and only for the duration of the pass, sees the calls inside each
  attention block and keeps what the attention itself used: the queries, keys, values,
  additive mask (relative position bias) and scale given to
  ``scaled_dot_product_attention`` (after any rotary position embedding), or, where the
  attention is eager, the output of its softmax and the values it multiplies. Nothing is
  patched, so there is nothing to restore and other threads are untouched.

Both also keep, per layer, the point in the autograd graph where the heads' outputs enter
the output projection (for gradients) and, on request, the tokens entering the attention.
Every hook ignores forward passes of other threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.overrides import TorchFunctionMode

from ..core.formatting import Targets, target_scores
from ..core.heads import attention_probs, split_heads
from ..core.rollout import readout_row
from ..errors import NonFiniteError
from .blocks import AttentionBlock, CaptureKind, Pooling, pooling_spans
from .model_state import removing_hooks

_SOFTMAX = (F.softmax, torch.softmax, torch.Tensor.softmax)
_MATMUL = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__)


@dataclass
class LayerCapture:
    """What one layer left behind in one forward pass, detached.

    Either ``query`` and ``key`` ``(B, H, T, d)`` as the attention multiplied them, with
    its ``scale`` and additive ``bias`` (broadcastable to ``(B, H, T, T)``, or a bool
    mask), or, where an eager attention kernel was captured, its probabilities ``probs``
    ``(B, H, T, T)``. With sdpa, autograd saves these very tensors for the backward
    pass, and eager attention saves its probabilities, so holding them costs little;
    ``value`` ``(B, H, T, d)`` (needed only for attention-probability gradients) and
    ``hidden`` ``(B, T, D)`` (the normalised tokens entering the attention) are kept only
    when asked for. ``context`` is where the heads' outputs (the output projection's
    input, ``(B, T, H * d)``) sit in the autograd graph: an edge to take gradients at,
    which does not keep the tensor alive (``None`` without a graph).
    """

    context: GradientEdge | None
    query: Tensor | None = None
    key: Tensor | None = None
    scale: float | None = None
    bias: Tensor | None = None
    probs: Tensor | None = None
    value: Tensor | None = None
    hidden: Tensor | None = None

    @property
    def num_tokens(self) -> int:
        """``T``, the tokens the attention saw."""
        captured = self.probs if self.probs is not None else self.query
        assert captured is not None  # layer_captures checks that one of them was
        return captured.shape[-2]

    def attention_probs(self) -> Tensor:
        """``(B, H, T, T)`` float32 attention probabilities."""
        if self.probs is not None:
            return self.probs.float()
        assert self.query is not None and self.key is not None and self.scale is not None  # captured with the query
        return attention_probs(self.query, self.key, self.scale, self.bias)


@dataclass
class AttentionTrace:
    """What one forward pass left behind: the logits ``(B, K)``, one capture per layer, and
    (for an attention-pooling head) the head's attention over the tokens ``(B, T)``."""

    logits: Tensor
    blocks: Sequence[AttentionBlock]
    num_prefix_tokens: int
    layers: list[LayerCapture] = field(default_factory=list)
    probe: Tensor | None = None
    #: several methods explain this one pass (:func:`~captum_gmar.methods.shared.attribute_together`):
    #: each backward pass keeps the graph for the next, and the heads' output gradients of
    #: the one set of targets they all explain are computed once (layer -> gradient)
    shared_grads: dict[int, Tensor] | None = None

    def attention_probs(self, layer: int) -> Tensor:
        """``(B, H, T, T)`` float32 attention probabilities of ``layer``."""
        return self.layers[layer].attention_probs()

    def value(self, layer: int) -> Tensor:
        """``(B, T, H * d)``: the value projection's output of ``layer``, kept by a pass with ``keep_value=True``."""
        value = self.layers[layer].value
        if value is None:
            raise RuntimeError(f"layer {layer}'s value projection was not kept: trace the pass with keep_value=True")
        return value

    def readout(self, pooling: Pooling) -> Tensor:
        """The read-out row ``p`` for ``pooling`` (see
        :func:`~captum_gmar.vit.architectures.pooling_spans`): ``(T,)``, or ``(B, T)`` for an
        attention-pooling head's probe, float32."""
        if tuple(pooling) == ("probe",):
            assert self.probe is not None  # captured for every model that reads a probe
            return self.probe.float()
        tokens = self.layers[-1].num_tokens
        return readout_row(tokens, pooling_spans(tuple(pooling), self.num_prefix_tokens, tokens))

    def target_grads(
        self, targets: Targets, tensors: Sequence[Tensor] | Sequence[GradientEdge], retain_graph: bool = False
    ) -> list[Tensor]:
        """Gradients of ``sum_b logits[b, targets[b]]`` (see
        :func:`~captum_gmar.core.formatting.target_scores`) w.r.t. captured ``tensors``.

        One backward pass that stops at the lowest tensor asked for and computes no
        parameter gradients. Examples are independent, so each example's gradient is
        that of its own target logit.

        Args:
            targets: ``(B,)`` class indices or a target function.
            tensors: captured tensors in the graph or gradient edges (``hidden``,
                ``context``).
            retain_graph: keep the graph for another backward pass (another target on
                the same forward pass).

        Returns:
            One gradient per tensor, same shapes, in the order given.
        """
        return score_gradients(self.logits, targets, tensors, retain_graph or self.shared_grads is not None)

    def context_grads(self, targets: Targets, layers: Sequence[int], retain_graph: bool = False) -> list[Tensor]:
        """Gradients w.r.t. the heads' outputs ``(B, T, H * d)`` of ``layers``, in that order
        (on a shared pass, computed once per layer: see :attr:`shared_grads`)."""
        cache = self.shared_grads
        if cache is not None:
            missing = [i for i in layers if i not in cache]
            if missing:
                cache.update(zip(missing, self._context_grads(targets, missing, retain_graph)))
            return [cache[i] for i in layers]
        return self._context_grads(targets, layers, retain_graph)

    def _context_grads(self, targets: Targets, layers: Sequence[int], retain_graph: bool) -> list[Tensor]:
        edges = []
        for i in layers:
            edge = self.layers[i].context
            if edge is None:
                raise RuntimeError(f"layer {i}'s heads' outputs are not in the autograd graph: the forward pass ran without gradients")
            edges.append(edge)
        return self.target_grads(targets, edges, retain_graph)


def score_gradients(
    logits: Tensor, targets: Targets, tensors: Sequence[Tensor] | Sequence[GradientEdge], retain_graph: bool = False
) -> list[Tensor]:
    """Gradients of the explained scores ``sum_b score[b]`` (see
    :func:`~captum_gmar.core.formatting.target_scores`) w.r.t. ``tensors``, each ``(B, ...)``.

    A map of a score that is not a number explains nothing, and one method would hide it
    where another fails (GMAR's head weights fall back to uniform on NaN gradients, which
    is attention rollout's map), so both the scores and the gradients are checked here,
    where every gradient-based method takes them.

    Raises:
        NonFiniteError: naming the examples whose score (e.g. a target function's log or
            square root of a negative number, even where its gradient is finite) or whose
            gradient (e.g. a square root at 0) is NaN or infinite.
    """
    scores = target_scores(logits, targets)
    bad_scores = ~torch.isfinite(scores.detach())
    if bad_scores.any():  # one host sync per call: the backward pass needs the scores anyway
        raise NonFiniteError(
            f"the explained score is NaN or infinite for example(s) {_first(bad_scores)}: a target function that returns "
            "NaN (a log or square root of a negative number) or a logit that overflowed; no map explains such a score"
        )
    gradients = list(torch.autograd.grad(scores.sum(), tensors, retain_graph=retain_graph))
    # the largest magnitude of each gradient is NaN or infinite where one of its values is: one
    # reduction per tensor and one check (one host sync) for all; the examples named only then
    largest = torch.stack([torch.linalg.vector_norm(gradient, float("inf")) for gradient in gradients])
    if not torch.isfinite(largest).all():
        bad = torch.zeros_like(bad_scores)
        for gradient in gradients:
            bad |= ~torch.isfinite(gradient).flatten(1).all(1)
        raise NonFiniteError(
            f"the gradient of the explained score is NaN or infinite for example(s) {_first(bad)} (e.g. a target function's "
            "square root at 0, or an overflow in float16): the map would not be a number; change the target function, or run "
            "the model in float32 or bfloat16"
        )
    return gradients


def _first(bad: Tensor) -> list[int]:
    """The first ten indices where ``bad`` ``(B,)`` is true."""
    return torch.nonzero(bad).flatten()[:10].tolist()


@contextmanager
def capture_attention(
    blocks: Sequence[AttentionBlock],
    kind: CaptureKind,
    keep_value: bool,
    keep_hidden: bool,
    probe: nn.Module | None = None,
) -> Iterator[tuple[list[dict[str, object]], dict[str, Tensor]]]:
    """Capture every block's attention in this thread's forward passes inside the block.

    Yields one dict per block, filled during the pass, to turn into :class:`LayerCapture`
    with :func:`layer_captures`, and a dict that receives the ``probe``'s attention
    weights (``nn.MultiheadAttention`` output, averaged over its heads) under ``"probe"``.
    Every hook is removed on exit, also after an error.
    """
    owner = threading.get_ident()
    stores: list[dict[str, Any]] = [{} for _ in blocks]
    pooled: dict[str, Tensor] = {}
    mode = _KernelCapture(keep_value) if kind == "kernel" else None
    with removing_hooks() as handles, ExitStack() as stack:
        for store, block in zip(stores, blocks):
            if keep_hidden or mode is not None:
                handles.append(block.attention.register_forward_pre_hook(_enter(store, owner, mode, keep_hidden), with_kwargs=True))
            if mode is not None:
                handles.append(block.attention.register_forward_hook(_leave(mode, owner)))
            else:
                store["scale"] = block.scaling
                names = ("query", "key", "value") if keep_value else ("query", "key")
                for name in names:
                    handles.append(getattr(block, name).register_forward_hook(_store_heads(store, name, block.num_heads, owner)))
            handles.append(block.output.register_forward_pre_hook(_store_edge(store, owner)))
        if probe is not None:
            handles.append(probe.register_forward_hook(_store_probe(pooled, owner)))
        if mode is not None:
            stack.enter_context(mode)
        yield stores, pooled


def layer_captures(stores: Sequence[dict[str, Any]]) -> list[LayerCapture]:
    """Turn the filled dicts of :func:`capture_attention` into captures, checking that
    every layer's attention was seen."""
    captures = []
    for layer, store in enumerate(stores):
        if "context" not in store or ("probs" not in store and "query" not in store):
            raise RuntimeError(
                f"layer {layer}'s attention was not captured in the forward pass: the model's attention module is not "
                "the one its library defines, or its attention implementation (e.g. flash or flex attention) runs "
                "outside scaled_dot_product_attention; load it with attn_implementation='sdpa' or 'eager'"
            )
        captures.append(LayerCapture(**store))
    return captures


class _KernelCapture(TorchFunctionMode):
    """Keeps, for the attention block running now in this thread (``store``, set by the
    block's hooks), what its attention kernel received; see the module docstring."""

    def __init__(self, keep_value: bool) -> None:
        super().__init__()
        self.keep_value = keep_value
        self.store: dict[str, object] | None = None

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> object:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        store = self.store
        if store is None:
            return result
        seen = "query" in store or "probs" in store  # one attention per block: the first one counts
        if func is F.scaled_dot_product_attention and not seen:
            query, key, value = args[:3]
            mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
            if (args[5] if len(args) > 5 else kwargs.get("is_causal", False)) or kwargs.get("enable_gqa", False):
                raise RuntimeError("causal or grouped-query attention is not a vision transformer's; it is not supported")
            scale = args[6] if len(args) > 6 else kwargs.get("scale")
            store.update(query=query.detach(), key=key.detach(), scale=query.shape[-1] ** -0.5 if scale is None else float(scale))
            store["bias"] = None if mask is None else mask.detach()
            if self.keep_value:
                store["value"] = value.detach()
        elif func in _SOFTMAX and not seen and result.dim() == 4:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim in (-1, 3):
                store["probs"] = result.detach()
        elif func in _MATMUL and self.keep_value and "probs" in store and "value" not in store:
            store["value"] = args[1].detach()  # probabilities @ values, the first product after the softmax
        return result


def _enter(store: dict[str, object], owner: int, mode: _KernelCapture | None, keep_hidden: bool) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if threading.get_ident() != owner:  # another thread's forward pass is not ours to capture
            return
        if keep_hidden:
            store["hidden"] = args[0] if args else kwargs["hidden_states"]
        if mode is not None:
            mode.store = store

    return hook


def _leave(mode: _KernelCapture, owner: int) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        if threading.get_ident() == owner:
            mode.store = None

    return hook


def _store_heads(store: dict[str, object], name: str, num_heads: int, owner: int) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        if threading.get_ident() == owner:
            store[name] = split_heads(output.detach(), num_heads)  # a view: (B, T, H * d) as (B, H, T, d)

    return hook


def _store_edge(store: dict[str, object], owner: int) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple) -> None:
        if threading.get_ident() == owner:
            store["context"] = get_gradient_edge(args[0]) if args[0].requires_grad else None

    return hook


def _store_probe(pooled: dict[str, Tensor], owner: int) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple, output: tuple[Tensor, Tensor]) -> None:
        if threading.get_ident() == owner:
            pooled["probe"] = output[1].detach()[:, 0]  # (B, 1, T) averaged over heads -> (B, T)

    return hook
