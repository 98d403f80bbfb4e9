"""What heads attend to and what GMAR's weights follow: the pure measures and the profile
on every supported family."""

import pytest
import torch
from tiny_models import MODEL_NAMES, NUM_LABELS, VISION

from captum_gmar import GMARAttribution
from captum_gmar.evaluation import head_profile, weight_correlations
from captum_gmar.evaluation.diagnostics.head_profile import attention_shares, head_activation, output_norms

LAYERS, HEADS = VISION["num_hidden_layers"], VISION["num_attention_heads"]


def test_attention_shares_exact():
    attn = torch.zeros(1, 2, 3, 3)
    attn[0, 0, :, 0] = 1.0  # head 0: every query on the class token
    attn[0, 1] = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])  # head 1: mostly on token 1
    class_token, top = attention_shares(attn)
    torch.testing.assert_close(class_token, torch.tensor([[1.0, 0.5 / 3]]))
    torch.testing.assert_close(top, torch.tensor([[1.0, 2 / 3]]))


def test_head_activation_is_the_mean_norm_of_each_heads_output():
    attn = torch.softmax(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), -1)
    value = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([torch.stack([(attn[b, h] @ value[b, h]).norm(dim=-1).mean() for h in range(3)]) for b in range(2)])
    torch.testing.assert_close(head_activation(attn, value), expected)


def test_output_norms_take_each_heads_columns_and_the_scale():
    weight = torch.zeros(2, 6)
    weight[:, 2:4] = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # head 1 of 3 (d = 2)
    torch.testing.assert_close(output_norms(weight, 3), torch.tensor([0.0, 5.0, 0.0]))
    torch.testing.assert_close(output_norms(weight, 3, scale=torch.tensor([2.0, 0.5])), torch.tensor([0.0, 40.0**0.5, 0.0]))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_head_profile_on_every_family(load_tiny, images, name):
    gmar = GMARAttribution(load_tiny(name))
    targets = torch.tensor([0, NUM_LABELS - 1, 2])
    profile = head_profile(gmar, images, targets)
    assert all(field.shape == (3, LAYERS, HEADS) for field in profile)
    _, weights = gmar.attribute(images, target=targets, return_head_weights=True)
    torch.testing.assert_close(profile.weight, weights)
    assert ((profile.class_token_share >= 0) & (profile.class_token_share <= profile.top_token_share + 1e-6)).all()
    assert (profile.top_token_share <= 1 + 1e-6).all() and (profile.activation > 0).all()
    assert torch.isfinite(profile.output_norm).all() and (profile.output_norm > 0).all()
    correlations = weight_correlations(profile, [0])
    assert set(correlations) == {"class_token_share", "top_token_share", "activation", "output_norm"}
    assert all(c.shape == (3,) and (c.abs() <= 1).all() for c in correlations.values())


def test_output_norm_includes_dinov2s_layer_scale(load_tiny, images):
    model = load_tiny("Dinov2ForImageClassification")
    layer = model.dinov2.encoder.layer[1]
    with torch.no_grad():
        layer.layer_scale1.lambda1.mul_(torch.linspace(0.5, 2.0, VISION["hidden_size"]))
    gmar = GMARAttribution(model)
    profile = head_profile(gmar, images, torch.tensor([0, 1, 2]))
    projection = gmar.vit.blocks[1].output.weight  # o_proj in transformers 5, attention.output.dense in 4.57
    expected = output_norms(projection, HEADS, layer.layer_scale1.lambda1)
    torch.testing.assert_close(profile.output_norm[0, 1], expected)
    assert not torch.allclose(expected, output_norms(projection, HEADS))


def test_head_profile_needs_gmars_own_weights_of_every_layer(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    for gmar in (GMARAttribution(model, start_layer=1), GMARAttribution(model, weight_transform=lambda w: w)):
        with pytest.raises(ValueError, match="start_layer=0 and no weight_transform"):
            head_profile(gmar, images, torch.tensor([0, 1, 2]))
