import threading

import pytest
import torch
from reference_methods import eager_pass
from tiny_models import MODEL_NAMES, PREFIX_TOKENS, takes_other_sizes

from captum_gmar.core.heads import attention_probs, split_heads
from captum_gmar.vit.model import SUPPORTED_MODEL_CLASSES, VisionTransformer


def test_every_supported_class_is_tested():
    assert set(MODEL_NAMES) == set(SUPPORTED_MODEL_CLASSES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_finds_blocks_tokens_and_grid(load_tiny, name):
    vit = VisionTransformer(load_tiny(name))
    assert vit.num_layers == 3 and vit.num_heads == 4
    assert vit.num_prefix_tokens == PREFIX_TOKENS[name]
    assert vit.patch_size == (8, 8) and vit.image_size == (32, 32)
    assert vit.grid(40, 27) == (5, 3)
    for block in vit.blocks:
        assert block.num_heads == 4
        assert block.scaling is None or block.scaling == pytest.approx(8**-0.5)  # None: the kernel's scale is captured


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


def test_trace_keeps_value_and_hidden_only_when_asked(load_tiny, images):
    vit = VisionTransformer(load_tiny("ViTForImageClassification"))
    with vit.trace(images, with_grad=False) as trace:
        assert all(cap.value is None and cap.hidden is None for cap in trace.layers)
    with vit.trace(images, with_grad=False, keep_value=True, keep_hidden=True) as trace:
        for block, cap in zip(vit.blocks, trace.layers):
            torch.testing.assert_close(cap.value, split_heads(block.value(cap.hidden), 4))
            torch.testing.assert_close(cap.query, split_heads(block.query(cap.hidden), 4))


def test_trace_restores_the_model_before_the_body_and_when_it_raises(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    vit = VisionTransformer(model)
    with pytest.raises(KeyError):
        with vit.trace(images, with_grad=True) as trace:
            # the hooks are gone, and no flag was ever flipped
            assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
            assert all(p.requires_grad for p in model.parameters())
            trace.context_grads(torch.tensor([1, 0, 4]), [0])
            assert all(p.grad is None for p in model.parameters())
            raise KeyError(trace)
    assert not any(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("name", ["ViTForImageClassification", "Data2VecVisionForImageClassification"])  # hooks; kernel capture
def test_trace_restores_the_model_when_the_forward_raises(load_tiny, images, monkeypatch, name):
    model = load_tiny(name)
    vit = VisionTransformer(model)

    def fail(hidden):
        raise RuntimeError("classifier failed")

    monkeypatch.setattr(model.classifier, "forward", fail)
    with pytest.raises(RuntimeError, match="classifier failed"):
        with vit.trace(images, with_grad=True):
            pass
    assert torch._C._len_torch_function_stack() == 0
    assert not any(m.training for m in model.modules()) and all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_logits_accept_other_image_sizes(load_tiny, name):
    model = load_tiny(name)
    if not takes_other_sizes(model):
        pytest.skip(f"{name} takes no interpolate_pos_encoding in this transformers version")
    vit = VisionTransformer(model)
    assert vit.logits(torch.randn(2, 3, 48, 16)).shape == (2, 5)


def test_heads_zeroed_removes_exactly_the_masked_heads(load_tiny, images):
    model = load_tiny("DeiTForImageClassification")
    vit = VisionTransformer(model)
    baseline = vit.logits(images)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    with vit.heads_zeroed(mask):
        torch.testing.assert_close(vit.logits(images), baseline)
    mask[1, 2] = True
    seen = []

    def observe():  # registered after the zeroing hook, so it sees what o_proj gets
        return vit.blocks[1].output.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))

    hook = observe()
    vit.logits(images)
    hook.remove()
    with vit.heads_zeroed(mask):
        hook = observe()
        masked_logits = vit.logits(images)
        hook.remove()
    context, masked = seen
    torch.testing.assert_close(masked[..., 16:24], torch.zeros_like(masked[..., 16:24]))
    torch.testing.assert_close(masked[..., :16], context[..., :16])
    assert not torch.allclose(masked_logits, baseline)
    torch.testing.assert_close(vit.logits(images), baseline)  # hooks gone
    per_example = torch.zeros(3, 3, 4, dtype=torch.bool)
    per_example[0, 1, 2] = True
    with vit.heads_zeroed(per_example):
        out = vit.logits(images)
    with vit.heads_zeroed(mask):
        torch.testing.assert_close(out[0], vit.logits(images)[0])
    torch.testing.assert_close(out[1:], baseline[1:])
    with pytest.raises(ValueError, match="mask must be"):
        with vit.heads_zeroed(torch.zeros(2, 4, dtype=torch.bool)):
            pass


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
