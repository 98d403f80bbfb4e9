import pytest
import torch
from reference_methods import reference_gae
from tiny_models import AUTO_READOUT, MODEL_NAMES, OPTION_MODELS, POOLING, PREFIX_TOKENS

from captum_gmar import GenericAttentionExplainability

TARGETS = torch.tensor([2, 0, 4])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_matches_chefers_formulation(load_tiny, images, name, attn):
    expected = reference_gae(load_tiny(name, "eager"), images, TARGETS, PREFIX_TOKENS[name], readout=AUTO_READOUT[name])
    maps = GenericAttentionExplainability(load_tiny(name, attn)).attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", OPTION_MODELS)
def test_start_layer_and_the_models_own_read_out(load_tiny, images, name):
    expected = reference_gae(load_tiny(name, "eager"), images, TARGETS, PREFIX_TOKENS[name], start_layer=2, readout=POOLING[name])
    gae = GenericAttentionExplainability(load_tiny(name), start_layer=2, readout="model")
    torch.testing.assert_close(gae.attribute(images, target=TARGETS, output="patches").flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_is_class_specific_and_captum_shaped(load_tiny, images):
    gae = GenericAttentionExplainability(load_tiny("ViTForImageClassification"))
    maps = gae.attribute(images[:1].expand(5, -1, -1, -1), target=list(range(5)))
    assert maps.shape == (5, 3, 32, 32) and (maps >= 0).all()
    assert (maps[0] - maps[1:]).abs().amax() > 1e-6
    assert GenericAttentionExplainability.get_name() == "GAE"
