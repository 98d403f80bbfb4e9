import pytest
import torch
from reference_methods import reference_gradcam
from tiny_models import MODEL_NAMES, PREFIX_TOKENS

from captum_gmar import TokenGradCAM

TARGETS = torch.tensor([1, 4, 0])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_matches_pytorch_grad_cam_style_reference(load_tiny, images, name):
    expected = reference_gradcam(load_tiny(name, "eager"), images, TARGETS, PREFIX_TOKENS[name])
    maps = TokenGradCAM(load_tiny(name)).attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_shapes_and_name(load_tiny, images):
    gradcam = TokenGradCAM(load_tiny("DeiTForImageClassificationWithTeacher"))
    maps = gradcam.attribute(images, target=2)
    assert maps.shape == images.shape and (maps >= 0).all()
    assert TokenGradCAM.get_name() == "Grad-CAM"
