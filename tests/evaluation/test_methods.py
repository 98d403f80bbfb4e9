import torch

from captum_gmar.evaluation.methods import _builders, build_methods
from captum_gmar.names import METHOD_KEYS


def test_every_method_key_has_a_builder_in_display_order():
    assert tuple(_builders(50, None)) == METHOD_KEYS


def test_methods_give_one_map_per_image(load_tiny, images):
    for method in build_methods(load_tiny("ViTForImageClassification"), METHOD_KEYS, ig_steps=4):
        maps = method(images, torch.tensor([0, 1, 2]))
        assert maps.shape == (3, 32, 32) and maps.dtype == torch.float32, method.name


def test_signed_relevance_becomes_the_positive_part_of_its_channel_sum(load_tiny, images):
    from captum_gmar import AttnLRP

    model = load_tiny("ViTForImageClassification")
    targets = torch.tensor([0, 1, 2])
    (method,) = build_methods(model, ["attnlrp"])
    relevance = AttnLRP(model).attribute(images, target=targets)
    maps = method(images, targets)
    torch.testing.assert_close(maps, relevance.sum(1).clamp(min=0))
    assert (relevance.sum(1) < 0).any() and (maps >= 0).all()
