"""``without_heads``: on every supported family the copy computes what the model computes
with those heads zeroed (or replaced by their mean), the original is untouched, the copy
round-trips through ``save_pretrained`` and its own class's ``from_pretrained`` and takes
every method; bad input and a projection that is not a plain linear layer are refused in
one line."""

from __future__ import annotations

import pytest
import torch
import transformers
from tiny_models import MODEL_NAMES, randomise_

from captum_gmar import AttnLRP, GMARAttribution, without_heads
from captum_gmar.errors import UnsupportedModelError
from captum_gmar.vit.model import VisionTransformer

HEADS = [(0, 1), (2, 3)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_copy_computes_the_model_with_the_heads_zeroed_or_replaced_by_their_mean(load_tiny, images, name):
    model = randomise_(load_tiny(name))
    vit = VisionTransformer(model)
    mask = torch.zeros(vit.num_layers, vit.num_heads, dtype=torch.bool)
    for layer, head in HEADS:
        mask[layer, head] = True
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        with vit.heads_zeroed(mask):
            zeroed = vit.logits(images)
        with vit.heads_replaced(mask, vit.head_means(images)):
            replaced = vit.logits(images)
        plain = vit.logits(images)
    for mode, expected in (("zero", zeroed), ("mean", replaced)):
        copy = without_heads(model, HEADS, mode=mode, reference_images=images)
        assert type(copy) is type(model) and not copy.training
        with torch.no_grad():
            torch.testing.assert_close(VisionTransformer(copy).logits(images), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(zeroed, plain)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())  # the model untouched


def test_the_copy_round_trips_and_takes_every_method(load_tiny, images, tmp_path):
    model = load_tiny("ViTForImageClassification")
    copy = without_heads(model, HEADS, mode="mean", reference_images=images)
    copy.save_pretrained(tmp_path / "without")
    again = transformers.ViTForImageClassification.from_pretrained(tmp_path / "without").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=images).logits, copy(pixel_values=images).logits)
    for method in (GMARAttribution(again), AttnLRP(again)):
        assert method.attribute(images, target=0).shape == images.shape


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"heads": [(3, 0)]}, r"each head must be a \(layer, head\) pair with layer in \[0, 2\] and head in \[0, 3\], got \(3, 0\)"),
        ({"heads": [(0, 4)]}, "got \\(0, 4\\)"),
        ({"heads": [(0, 1), [0, 1]]}, "names a head twice"),
        ({"heads": []}, "non-empty list of"),
        ({"heads": "0,1"}, "non-empty list of"),
        ({"heads": [(0, 1)], "mode": "half"}, "mode must be 'zero' or 'mean'"),
        (
            {"heads": [(0, 1)], "mode": "mean"},
            "mode='mean' replaces each head by its mean output over reference images: give reference_images",
        ),
    ],
)
def test_bad_input_is_one_line(load_tiny, arguments, message):
    with pytest.raises(ValueError, match=message) as error:
        without_heads(load_tiny("ViTForImageClassification"), **arguments)
    assert "\n" not in str(error.value)


def test_a_projection_that_is_not_a_plain_linear_layer_is_refused(load_tiny):
    model = load_tiny("ViTForImageClassification")
    block = VisionTransformer(model).blocks[1]

    class Adapted(torch.nn.Module):  # a LoRA-like wrapper around the projection
        def __init__(self, inner: torch.nn.Linear) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    # the projection's parent module (where it sits differs between transformers 4.57 and 5)
    parent, name = next((m, n) for m in model.modules() for n, child in m.named_children() if child is block.output)
    setattr(parent, name, Adapted(block.output))
    with pytest.raises(UnsupportedModelError, match=r"layer 1's output projection \(Adapted\) is not a plain nn.Linear") as error:
        without_heads(model, [(1, 0)])
    assert "\n" not in str(error.value)
