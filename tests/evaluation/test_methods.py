import pytest
import torch

from captum_gmar.evaluation.methods import _builders, build_methods
from captum_gmar.names import METHOD_KEYS


def test_every_method_key_has_a_builder_in_display_order():
    assert tuple(_builders(50, None, "positive")) == METHOD_KEYS


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


@pytest.mark.parametrize("key", ["attnlrp", "cplrp"])
def test_the_relevance_map_choice_gives_the_signed_sum_or_its_absolute_value(load_tiny, images, key):
    model = load_tiny("ViTForImageClassification")
    targets = torch.tensor([0, 1, 2])
    maps = {choice: build_methods(model, [key], relevance_map=choice)[0](images, targets) for choice in ("positive", "signed", "abs")}
    assert (maps["signed"] < 0).any()  # the evidence against the class is kept
    torch.testing.assert_close(maps["positive"], maps["signed"].clamp(min=0))
    torch.testing.assert_close(maps["abs"], maps["signed"].abs())
    # the other methods' maps do not depend on it
    (gmar,) = build_methods(model, ["gmar-l1"], relevance_map="signed")
    torch.testing.assert_close(gmar(images, targets), build_methods(model, ["gmar-l1"])[0](images, targets))


def test_an_unknown_relevance_map_is_refused(load_tiny):
    with pytest.raises(ValueError, match="relevance_map must be one of positive, signed, abs, got 'negative'"):
        build_methods(load_tiny("ViTForImageClassification"), ["attnlrp"], relevance_map="negative")
