"""Several attention methods on one pass: one captured forward pass, and one backward pass
per kind of gradient, explain a batch for every method.

GMAR, attention rollout, raw attention, GAE and Grad-CAM all read the same captured pass
(:class:`~captum_gmar.vit.capture.AttentionTrace`); GMAR and GAE take the same gradients
(the heads' outputs' for the explained targets). Run one at a time, each pays for its own
forward pass and backward pass; run here, the forward pass is shared, the heads' output
gradients are computed once, and each method's maps equal what its ``attribute`` returns
(the same operations on the same tensors).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.formatting import TargetType, batch_slices, chunk_targets
from .base import AttentionAttribution, Attributed, Explanation, OutputKind, prepare_call

__all__ = ["attribute_together", "shares_passes"]


def attribute_together(
    methods: Sequence[AttentionAttribution],
    inputs: Tensor,
    target: TargetType = None,
    internal_batch_size: int | None = None,
    output: OutputKind = "input",
) -> list[Attributed]:
    """Explain ``inputs`` ``(B, C, H, W)`` with every method of ``methods`` on shared passes.

    Args:
        methods: attention methods of one wrapped model (their ``vit`` is one object).
        inputs, target, internal_batch_size, output: as for ``attribute``; ``target=None``
            explains each example's predicted class, read from the shared pass.

    Returns:
        One :class:`~captum_gmar.methods.base.Attributed` per method, in order (the logits
        are the shared pass's, the same object for every method).

    Raises:
        ValueError: no methods, or methods of different models; and as each method's
            ``attribute`` (memory and time checked for the most demanding method).
    """
    if not methods:
        raise ValueError("attribute_together needs at least one method")
    vit = methods[0].vit
    if any(method.vit is not vit for method in methods):
        raise ValueError("the methods explain different models: build them on one VisionTransformer (or one model)")
    pixel_values, _, targets = prepare_call(vit, inputs, target, output)
    for method in methods:
        method._check_model()
    parts = batch_slices(pixel_values.shape[0], internal_batch_size)
    # the shared pass holds what the most demanding method holds
    max(methods, key=lambda method: method.estimate_bytes(pixel_values.shape)).check_memory(pixel_values.shape, internal_batch_size)
    with_grad = any(method.needs_gradients for method in methods)
    keep_value = any(method.needs_value for method in methods)
    keep_hidden = any(method.needs_hidden for method in methods)
    param = vit.parameter
    chunks: list[list[Explanation]] = [[] for _ in methods]
    chunk_logits: list[Tensor] = []
    for part in parts:
        x = pixel_values[part].to(device=param.device, dtype=param.dtype)
        with vit.trace(x, with_grad=with_grad, keep_value=keep_value, keep_hidden=keep_hidden) as trace:
            trace.shared_grads = {}
            explained = trace.logits.argmax(-1) if targets is None else chunk_targets(targets, part, param.device)
            chunk_logits.append(trace.logits.detach())
            for method, explanations in zip(methods, chunks):
                explanations.append(method._explain(trace, explained))
    logits = torch.cat(chunk_logits).float().to(pixel_values.device)  # the pass's, once for every method
    results = []
    for method, explanations in zip(methods, chunks):
        maps, weights, _ = method._joined(explanations, tuple(pixel_values.shape), output, pixel_values.device)
        results.append(Attributed(maps, weights, logits))
    return results


def shares_passes(method: object) -> bool:
    """Whether ``method`` can take part in :func:`attribute_together`."""
    return isinstance(method, AttentionAttribution) and type(method)._chunk is AttentionAttribution._chunk
