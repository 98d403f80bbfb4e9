"""Capturing a pass's attention: sdpa and kernel capture rebuild the eager maps, the heads'
output gradients, other threads untouched, and an attention that is not captured reported."""

import threading

import pytest
import torch
from reference_methods import eager_pass
from tiny_models import MODEL_NAMES

from captum_gmar.core.heads import attention_probs
from captum_gmar.vit.model import VisionTransformer


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sdpa_capture_rebuilds_the_eager_attention_maps(load_tiny, images, name):
    _, eager_maps, _ = eager_pass(load_tiny(name, "eager"), images, None)
    vit = VisionTransformer(load_tiny(name, "sdpa"))
    with vit.trace(images, with_grad=False) as trace:
        for layer in range(vit.num_layers):
            torch.testing.assert_close(trace.attention_probs(layer), eager_maps[layer].detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_context_grads_equal_backward_without_parameter_grads(load_tiny, images, name):
    targets = torch.tensor([1, 0, 4])
    _, _, contexts = eager_pass(load_tiny(name, "eager"), images, targets)
    model = load_tiny(name)
    vit = VisionTransformer(model)
    with vit.trace(images, with_grad=True) as trace:
        grads = trace.context_grads(targets, [2, 0])
    torch.testing.assert_close(grads[0], contexts[2].grad)
    torch.testing.assert_close(grads[1], contexts[0].grad)
    assert all(p.grad is None for p in model.parameters())


def test_kernel_capture_keeps_the_relative_position_bias_the_attention_added(load_tiny, images):
    _, eager_maps, _ = eager_pass(load_tiny("BeitForImageClassification", "eager"), images, None)
    vit = VisionTransformer(load_tiny("BeitForImageClassification"))
    with vit.trace(images, with_grad=False) as trace:
        for layer, cap in enumerate(trace.layers):
            assert cap.probs is None and cap.bias is not None and cap.bias.shape[-2:] == (17, 17)
            torch.testing.assert_close(trace.attention_probs(layer), eager_maps[layer], rtol=1e-4, atol=1e-6)
            # what rebuilding from the projections alone would give: not BEiT's attention
            assert not torch.allclose(attention_probs(cap.query, cap.key, cap.scale), eager_maps[layer], atol=1e-3)


@pytest.mark.parametrize("name", ["BeitForImageClassification", "Data2VecVisionForImageClassification"])
def test_kernel_capture_of_an_eager_attention_keeps_its_probabilities_and_values(load_tiny, images, name):
    _, eager_maps, _ = eager_pass(load_tiny(name, "eager"), images, None)
    vit = VisionTransformer(load_tiny(name, "eager"))
    assert vit.keeps_attention_maps
    with vit.trace(images, with_grad=False, keep_value=True) as trace:
        for layer, cap in enumerate(trace.layers):
            assert cap.query is None and cap.probs is not None
            assert cap.value.shape == (3, 4, 17, 8)
            torch.testing.assert_close(trace.attention_probs(layer), eager_maps[layer])


def test_kernel_capture_ignores_other_threads_and_leaves_nothing_behind(load_tiny, images):
    model = load_tiny("BeitForImageClassification")
    vit = VisionTransformer(model)
    with vit.trace(images, with_grad=False) as trace:
        expected = [trace.attention_probs(layer) for layer in range(3)]
    owner, done = threading.get_ident(), []

    def interleave(module, args, kwargs):
        # in the middle of the captured pass, another thread runs the same model
        if threading.get_ident() == owner and not done:
            done.append(True)
            other = threading.Thread(target=lambda: model(pixel_values=torch.randn(2, 3, 40, 40)))
            other.start()
            other.join()

    handle = vit.blocks[1].attention.register_forward_pre_hook(interleave, with_kwargs=True)
    try:
        with vit.trace(images, with_grad=False) as trace:
            got = [trace.attention_probs(layer) for layer in range(3)]
    finally:
        handle.remove()
    assert done
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    assert torch._C._len_torch_function_stack() == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_an_attention_that_is_not_captured_is_reported(load_tiny, images, monkeypatch):
    model = load_tiny("BeitForImageClassification")
    vit = VisionTransformer(model)
    # an attention kernel outside scaled_dot_product_attention (as flash attention would be)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", _math_attention)
    with pytest.raises(RuntimeError, match="layer 0's attention was not captured.*attn_implementation='sdpa' or 'eager'"):
        with vit.trace(images, with_grad=False):
            pass


def _math_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    scores = query @ key.transpose(-1, -2) * (scale or query.shape[-1] ** -0.5)
    return (scores + attn_mask).exp().div((scores + attn_mask).exp().sum(-1, keepdim=True)) @ value
