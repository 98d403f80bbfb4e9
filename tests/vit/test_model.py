import pytest
import torch

from captum_gmar.core.heads import split_heads
from captum_gmar.vit.model import VisionTransformer


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


def test_heads_replaced_puts_the_given_output_in_place_of_each_chosen_head(load_tiny, images):
    vit = VisionTransformer(load_tiny("DeiTForImageClassification"))
    means = vit.head_means(images)
    assert means.shape == (vit.num_layers, vit.num_heads, 8)  # d = 32 channels / 4 heads
    seen = []
    mask = torch.zeros(vit.num_layers, vit.num_heads, dtype=torch.bool)
    mask[1, 2] = True
    with vit.heads_replaced(mask, means):
        hook = vit.blocks[1].output.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
        vit.logits(images)
        hook.remove()
    torch.testing.assert_close(seen[0][..., 16:24], means[1, 2].expand_as(seen[0][..., 16:24]))
    # the mean over images and tokens of a head's output, as captured without any replacement
    captured = []
    hook = vit.blocks[0].output.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    vit.logits(images)
    hook.remove()
    torch.testing.assert_close(means[0].reshape(-1), captured[0].float().mean(dim=(0, 1)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"values must be \(L, H, d\)"):
        with vit.heads_replaced(mask, means[0]):
            pass
