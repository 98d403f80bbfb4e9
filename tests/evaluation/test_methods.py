import torch

from captum_gmar.evaluation.methods import _builders, build_methods
from captum_gmar.names import METHOD_KEYS


def test_every_method_key_has_a_builder_in_display_order():
    assert tuple(_builders(50, None)) == METHOD_KEYS


def test_methods_give_one_map_per_image(load_tiny, images):
    for method in build_methods(load_tiny("ViTForImageClassification"), METHOD_KEYS, ig_steps=4):
        maps = method(images, torch.tensor([0, 1, 2]))
        assert maps.shape == (3, 32, 32) and maps.dtype == torch.float32, method.name
