"""The read-out row ``p``: which tokens each class's map is read from, per ``readout``."""

import pytest
import torch
from tiny_models import AUTO_READOUT, MODEL_NAMES, POOLING, PREFIX_TOKENS

from captum_gmar import AttentionRollout, GenericAttentionExplainability, GMARAttribution, TokenGradCAM
from captum_gmar.vit.model import VisionTransformer

TARGETS = torch.tensor([0, 3, 1])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_readout_options_read_the_documented_tokens(load_tiny, name):
    vit = VisionTransformer(load_tiny(name))
    assert vit.readout_pooling("model") == POOLING[name]
    assert vit.readout_pooling("auto") == AUTO_READOUT[name]
    if PREFIX_TOKENS[name] == 0:  # SigLIP and I-JEPA have no class token
        with pytest.raises(ValueError, match="has no class token .* use readout='model'"):
            vit.readout_pooling("cls")
    else:
        assert vit.readout_pooling("cls") == ("class",)


def test_the_read_out_row_weights_the_documented_tokens(load_tiny, images):
    vit = VisionTransformer(load_tiny("Dinov2WithRegistersForImageClassification"))  # CLS, 4 registers, 16 patches
    with vit.trace(images, with_grad=False) as trace:
        p = trace.readout(("class", "patches"))
        torch.testing.assert_close(p, torch.tensor([0.5] + [0.0] * 4 + [0.5 / 16] * 16))
        torch.testing.assert_close(trace.readout(("class",)), torch.eye(21)[0])


@pytest.mark.parametrize("method", [GMARAttribution, AttentionRollout, GenericAttentionExplainability])
def test_model_read_out_differs_from_the_class_token_where_the_head_reads_more(load_tiny, images, method):
    model = load_tiny("DeiTForImageClassificationWithTeacher")
    cls = method(model).attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(method(model, readout="cls").attribute(images, target=TARGETS, output="patches"), cls)
    model_readout = method(model, readout="model").attribute(images, target=TARGETS, output="patches")
    assert (model_readout - cls).abs().amax() > 0.01 * cls.abs().amax()


def test_auto_reads_the_patch_mean_of_a_mean_pooling_classifier(load_tiny, images):
    model = load_tiny("CLIPForImageClassification")
    auto = GMARAttribution(model).attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(GMARAttribution(model, readout="model").attribute(images, target=TARGETS, output="patches"), auto)
    assert (GMARAttribution(model, readout="cls").attribute(images, target=TARGETS, output="patches") - auto).abs().amax() > 1e-4


def test_bad_readout(load_tiny):
    with pytest.raises(ValueError, match="readout must be 'auto', 'cls' or 'model'"):
        GMARAttribution(load_tiny("ViTForImageClassification"), readout="mean")
    with pytest.raises(ValueError, match="SigLIP model has no class token"):
        AttentionRollout(load_tiny("SiglipForImageClassification"), readout="cls")


def test_grad_cam_reads_no_row_and_works_without_a_class_token(load_tiny, images):
    gradcam = TokenGradCAM(load_tiny("IJepaForImageClassification"))
    assert gradcam.pooling is None
    assert gradcam.attribute(images, target=TARGETS, output="patches").shape == (3, 4, 4)
