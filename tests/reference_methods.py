"""Straightforward reference implementations, written from the methods' definitions:
eager attention with ``output_attentions=True`` (timm: its unfused attention, probabilities
taken where they enter the attention dropout), every layer's maps kept, gradients by
``retain_grad`` and ``backward``, the full matrix product over layers, and the read-out
row ``p`` built by hand from what the classifier reads. The package's fast paths (sdpa,
maps rebuilt from queries and keys or captured at the kernel, one row rolled out) must
agree."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from captum_gmar.core.heads import split_heads

#: names of the modules whose input is the concatenated heads' outputs
CONTEXT_MODULES = ("attention.o_proj", "attention.output.dense", "self_attn.out_proj", "attn.proj")


def pooling_vector(groups: Sequence[str], prefix: int, tokens: int, probe: torch.Tensor | None = None) -> torch.Tensor:
    """``p`` ``(T,)`` (or ``(B, T)`` for a probe): the mean, over ``groups``, of each
    group's uniform weights over its tokens."""
    parts = []
    for group in groups:
        part = torch.zeros(tokens)
        if group == "class":
            part[0] = 1.0
        elif group == "distillation":
            part[1] = 1.0
        elif group == "patches":
            part[prefix:] = 1.0 / (tokens - prefix)
        elif group == "tokens":
            part[:] = 1.0 / tokens
        elif group == "probe":
            part = probe
        parts.append(part)
    return sum(parts) / len(parts)


def eager_pass(model, x: torch.Tensor, targets: torch.Tensor | None, call=None):
    """Logits, attention maps ``[(B, H, T, T)]`` and head outputs ``[(B, T, D)]`` (with
    their gradients when ``targets`` are given) of one eager pass.

    ``call(model, x)`` returns ``(logits, attentions or None)``; by default the model is
    called with ``output_attentions=True`` (and ``interpolate_pos_encoding`` where it
    differs in size). Without attentions from the call (a user's head, timm, 4.57's
    SiglipModel, which drops them), they are taken from the attention modules: the eager
    ``attn_weights`` they return, or timm's unfused probabilities at its attention dropout.
    """
    contexts, hooked = [], []
    vision = getattr(model, "vision_model", model)  # not the text tower of an image-text model
    hooks = [
        module.register_forward_pre_hook(lambda mod, args: contexts.append(args[0]))
        for name, module in vision.named_modules()
        if name.endswith(CONTEXT_MODULES)
    ]
    timm_attention = {m: m.fused_attn for m in model.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")}
    for module in timm_attention:
        module.fused_attn = False
        hooks.append(module.attn_drop.register_forward_hook(lambda mod, args, out: hooked.append(out)))
    for module in vision.modules():  # transformers' attention modules return their eager weights
        if hasattr(module, "q_proj") and (hasattr(module, "o_proj") or hasattr(module, "out_proj")) or hasattr(module, "query"):
            hooks.append(module.register_forward_hook(lambda mod, args, out: hooked.append(out[1])))
    try:
        logits, attentions = (call or _call_with_attentions)(model, x.clone().requires_grad_(True))
    finally:
        for hook in hooks:
            hook.remove()
        for module, fused in timm_attention.items():
            module.fused_attn = fused
    attentions = list(attentions) if attentions else hooked
    assert attentions and all(a is not None for a in attentions)
    if targets is not None:
        for tensor in attentions + contexts:
            tensor.retain_grad()
        logits.gather(1, targets.view(-1, 1)).sum().backward()
    return logits, attentions, contexts


def _call_with_attentions(model, x):
    """``(logits, attentions)`` of a transformers classifier; ``(logits, None)`` for timm
    (native or wrapped) and a user's head, whose maps the hooks of :func:`eager_pass` take."""
    if type(model).__module__.startswith("timm."):
        return model(x), None
    if hasattr(model, "timm_model"):
        return model(pixel_values=x).logits, None
    parameters = inspect.signature(model.forward).parameters
    if "kwargs" not in parameters and "output_attentions" not in parameters:  # a user's head
        return model(x), None
    kwargs = {}
    if "interpolate_pos_encoding" in parameters or "kwargs" in parameters:
        kwargs["interpolate_pos_encoding"] = True
    out = model(pixel_values=x, output_attentions=True, **kwargs)
    return out.logits, out.attentions


def zero_shot_call(text):
    """``call`` for the reference on a zero-shot image-text model and tokenized prompts
    ``text``: the model's own forward, prompts and image together."""

    def call(model, x):
        size = model.config.vision_config.image_size
        out = model(**text, pixel_values=x, output_attentions=True, interpolate_pos_encoding=tuple(x.shape[-2:]) != (size, size))
        return out.logits_per_image, out.vision_model_output.attentions

    return call


def probe_weights(model, x, text):
    """SigLIP: the pooling head's attention over the tokens, mean over its heads ``(B, T)``."""
    store = []
    hook = model.vision_model.head.attention.register_forward_hook(lambda mod, args, out: store.append(out[1][:, 0]))
    try:
        with torch.no_grad():
            zero_shot_call(text)(model, x)
    finally:
        hook.remove()
    return store[0]


def _readout(attentions, prefix: int, readout: Sequence[str], probe: torch.Tensor | None) -> torch.Tensor:
    return pooling_vector(readout, prefix, attentions[0].shape[-1], probe)


def reference_gmar(
    model, x, targets, prefix, norm="l1", alpha=0.5, start_layer=0, head_gradient="context", readout=("class",), call=None, probe=None
):
    """GMAR relevance of the patch tokens ``(B, P)`` and head weights ``(B, L', H)``."""
    _, attentions, contexts = eager_pass(model, x, targets, call)
    heads = attentions[0].shape[1]
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens)
    rollout = eye.expand(x.shape[0], tokens, tokens)
    all_weights = []
    for layer in range(start_layer, len(attentions)):
        attn = attentions[layer].detach().float()
        if head_gradient == "context":
            grad = split_heads(contexts[layer].grad.float(), heads)
        else:
            grad = attentions[layer].grad.float()
        if norm == "l1":
            scores = grad.abs().sum((2, 3))
        else:
            scores = grad.pow(2).sum((2, 3)).sqrt()
        weights = scores / scores.sum(-1, keepdim=True)
        all_weights.append(weights)
        fused = (weights[:, :, None, None] * attn).sum(1)
        rollout = ((1 - alpha) * fused + alpha * eye) @ rollout
    p = _readout(attentions, prefix, readout, probe)
    return (p.unsqueeze(-2) @ rollout).squeeze(-2)[:, prefix:], torch.stack(all_weights, 1)


def reference_rollout(
    model, x, prefix, head_fusion="mean", discard_ratio=0.0, alpha=0.5, start_layer=0, readout=("class",), call=None, probe=None
):
    """Attention rollout as in vit-explain: fuse, discard the lowest, add I, renormalise."""
    with torch.no_grad():
        _, attentions, _ = eager_pass(model, x, None, call)
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens)
    rollout = eye.expand(x.shape[0], tokens, tokens)
    for attn in attentions[start_layer:]:
        attn = attn.float()
        fused = {"mean": attn.mean(1), "max": attn.amax(1), "min": attn.amin(1)}[head_fusion]
        flat = fused.reshape(x.shape[0], -1).clone()
        count = int(flat.shape[1] * discard_ratio)
        for row in flat:
            lowest = row[1:].argsort()[:count] + 1  # never the (CLS, CLS) entry
            row[lowest] = 0
        fused = flat.view_as(fused)
        mixed = (1 - alpha) * fused + alpha * eye
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    p = _readout(attentions, prefix, readout, probe)
    return (p.unsqueeze(-2) @ rollout).squeeze(-2)[:, prefix:]


def reference_gae(model, x, targets, prefix, start_layer=0, readout=("class",), call=None, probe=None):
    """Chefer et al. 2021, as in their ViT notebook: ``R = I; R += mean_h relu(grad * A) @ R``."""
    _, attentions, _ = eager_pass(model, x, targets, call)
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens).repeat(x.shape[0], 1, 1)
    for attn in attentions[start_layer:]:
        cam = (attn.grad * attn.detach()).clamp(min=0).mean(1)
        relevance = relevance + cam @ relevance
    p = _readout(attentions, prefix, readout, probe)
    return (p.unsqueeze(-2) @ relevance).squeeze(-2)[:, prefix:]


def reference_gradcam(model, x, targets, prefix):
    """Grad-CAM as pytorch-grad-cam applies it to a ViT: activations and gradients of the
    last block's first LayerNorm output, patch tokens reshaped to a grid."""
    names = [
        n for n, _ in model.named_modules() if n.endswith(("attention.q_proj", "attention.attention.query", "self_attn.q_proj", "attn.qkv"))
    ]
    query = model.get_submodule(names[-1])
    store = []
    hook = query.register_forward_pre_hook(lambda mod, args: store.append(args[0]))
    try:
        logits, _ = _call_with_attentions(model, x.clone().requires_grad_(True))
    finally:
        hook.remove()
    (activations,) = store
    activations.retain_grad()
    logits.gather(1, targets.view(-1, 1)).sum().backward()
    acts, grads = activations[:, prefix:].detach(), activations.grad[:, prefix:]
    weights = grads.mean(1)  # (B, D): gradient averaged over the patch "pixels"
    return torch.relu(torch.einsum("bpd,bd->bp", acts, weights))
