"""Straightforward reference implementations, written from the method's definition:
eager attention with ``output_attentions=True``, every layer's maps kept, gradients by
``retain_grad`` and ``backward``, and the full matrix product over layers. The package's
fast paths (sdpa, maps rebuilt from queries and keys, one row rolled out) must agree."""

from __future__ import annotations

import inspect

import torch

from captum_gmar.heads import split_heads


def eager_pass(model, x: torch.Tensor, targets: torch.Tensor | None):
    """Attention maps ``[(B, H, T, T)]`` and head outputs ``[(B, T, D)]`` with their grads."""
    assert model.config._attn_implementation == "eager"
    contexts = []
    hooks = [
        module.register_forward_pre_hook(lambda mod, args: contexts.append(args[0]))
        for name, module in model.named_modules()
        if name.endswith(("attention.o_proj", "attention.output.dense"))
    ]
    kwargs = {}
    if "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
        kwargs["interpolate_pos_encoding"] = True
    try:
        out = model(pixel_values=x.clone().requires_grad_(True), output_attentions=True, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    attentions = list(out.attentions)
    if targets is not None:
        for tensor in attentions + contexts:
            tensor.retain_grad()
        out.logits.gather(1, targets.view(-1, 1)).sum().backward()
    return out.logits, attentions, contexts


def reference_gmar(model, x, targets, prefix, norm="l1", alpha=0.5, start_layer=0, head_gradient="context"):
    """GMAR relevance of the patch tokens ``(B, P)`` and head weights ``(B, L', H)``."""
    _, attentions, contexts = eager_pass(model, x, targets)
    heads = model.config.num_attention_heads
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
    return rollout[:, 0, prefix:], torch.stack(all_weights, 1)


def reference_rollout(model, x, prefix, head_fusion="mean", discard_ratio=0.0, alpha=0.5, start_layer=0):
    """Attention rollout as in vit-explain: fuse, discard the lowest, add I, renormalise."""
    with torch.no_grad():
        _, attentions, _ = eager_pass(model, x, None)
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
    return rollout[:, 0, prefix:]


def reference_gae(model, x, targets, prefix, start_layer=0):
    """Chefer et al. 2021, as in their ViT notebook: ``R = I; R += mean_h relu(grad * A) @ R``."""
    _, attentions, _ = eager_pass(model, x, targets)
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens).repeat(x.shape[0], 1, 1)
    for attn in attentions[start_layer:]:
        cam = (attn.grad * attn.detach()).clamp(min=0).mean(1)
        relevance = relevance + cam @ relevance
    return relevance[:, 0, prefix:]


def reference_gradcam(model, x, targets, prefix):
    """Grad-CAM as pytorch-grad-cam applies it to a ViT: activations and gradients of the
    last block's first LayerNorm output, patch tokens reshaped to a grid."""
    names = [n for n, _ in model.named_modules() if n.endswith(("attention.q_proj", "attention.attention.query"))]
    query = model.get_submodule(names[-1])
    store = []
    hook = query.register_forward_pre_hook(lambda mod, args: store.append(args[0]))
    kwargs = {}
    if "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
        kwargs["interpolate_pos_encoding"] = True
    try:
        logits = model(pixel_values=x.clone().requires_grad_(True), **kwargs).logits
    finally:
        hook.remove()
    (activations,) = store
    activations.retain_grad()
    logits.gather(1, targets.view(-1, 1)).sum().backward()
    acts, grads = activations[:, prefix:].detach(), activations.grad[:, prefix:]
    weights = grads.mean(1)  # (B, D): gradient averaged over the patch "pixels"
    return torch.relu(torch.einsum("bpd,bd->bp", acts, weights))
