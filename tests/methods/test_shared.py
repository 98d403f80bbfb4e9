"""Several attention methods on one pass: each map equals the method's own ``attribute``,
one forward pass per chunk, and the logits of the pass returned with the maps."""

from __future__ import annotations

import pytest
import torch
import transformers
from tiny_models import COMMON

from captum_gmar import AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, RawAttention, TokenGradCAM
from captum_gmar.methods.shared import attribute_together, shares_passes
from captum_gmar.vit.model import VisionTransformer


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return VisionTransformer(transformers.ViTForImageClassification(transformers.ViTConfig(**COMMON)).eval())


def methods(vit):
    return [
        GMARAttribution(vit),
        GMARAttribution(vit, norm="l2"),
        GMARAttribution(vit, head_gradient="gate"),
        GMARAttribution(vit, head_gradient="attention", start_layer=1),
        AttentionRollout(vit),
        RawAttention(vit),
        GenericAttentionExplainability(vit),
        TokenGradCAM(vit),
    ]


@pytest.mark.parametrize("output", ["input", "patches"])
@pytest.mark.parametrize("target", [None, 2, [0, 1, 2, 3, 4, 0], lambda z: z[:, 1] - z[:, 3]])
def test_each_map_equals_the_methods_own(vit, output, target):
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    together = attribute_together(methods(vit), x, target, internal_batch_size=4, output=output)
    for method, result in zip(methods(vit), together):
        alone = method.attribute_with_logits(x, target, internal_batch_size=4, output=output)
        torch.testing.assert_close(result.attributions, alone.attributions, rtol=0, atol=0)
        torch.testing.assert_close(result.logits, alone.logits, rtol=0, atol=0)
        if alone.head_weights is not None:
            torch.testing.assert_close(result.head_weights, alone.head_weights, rtol=0, atol=0)


def test_one_forward_pass_per_chunk(vit):
    calls = []
    handle = vit.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        attribute_together(methods(vit), torch.randn(6, 3, 32, 32), internal_batch_size=4)
    finally:
        handle.remove()
    assert len(calls) == 2  # two chunks, eight methods


def test_logits_are_the_models(vit):
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = vit.model(x).logits
    for method in (GMARAttribution(vit), AttentionRollout(vit), AttnLRP(vit)):
        result = method.attribute_with_logits(x)
        torch.testing.assert_close(result.logits, expected, rtol=1e-5, atol=1e-5)
        assert result.attributions.shape == x.shape


def test_methods_of_other_models_or_none_are_refused(vit):
    torch.manual_seed(1)
    other = VisionTransformer(transformers.ViTForImageClassification(transformers.ViTConfig(**COMMON)).eval())
    with pytest.raises(ValueError, match="different models"):
        attribute_together([GMARAttribution(vit), AttentionRollout(other)], torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="at least one"):
        attribute_together([], torch.randn(1, 3, 32, 32))


def test_relevance_propagation_runs_its_own_pass(vit):
    assert shares_passes(GMARAttribution(vit)) and shares_passes(TokenGradCAM(vit))
    assert not shares_passes(AttnLRP(vit))
