"""Raw attention: the last layer's attention from the read-out row, against the eager reference."""

import pytest
import torch
from reference_methods import eager_pass, pooling_vector
from tiny_models import AUTO_READOUT, OPTION_MODELS, PREFIX_TOKENS

from captum_gmar import RawAttention


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", OPTION_MODELS)
def test_last_layer_mean_attention_of_the_readout_row(load_tiny, images, name, attn):
    _, attentions, *_ = eager_pass(load_tiny(name, "eager"), images, None)
    last = attentions[-1].mean(1)  # (B, T, T)
    tokens = last.shape[-1]
    expected = pooling_vector(AUTO_READOUT[name], PREFIX_TOKENS[name], tokens) @ last
    got = RawAttention(load_tiny(name, attn)).attribute(images, target=0, output="patches")
    torch.testing.assert_close(got.flatten(1), expected[:, PREFIX_TOKENS[name] :], rtol=1e-4, atol=1e-6)


def test_class_agnostic_and_checked(load_tiny, images):
    method = RawAttention(load_tiny("ViTForImageClassification"))
    torch.testing.assert_close(method.attribute(images, target=0), method.attribute(images, target=4))
    assert method.get_name() == "Raw attention"
    with pytest.raises(ValueError, match="head_fusion"):
        RawAttention(load_tiny("ViTForImageClassification"), head_fusion="median")
