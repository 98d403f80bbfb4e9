"""The interventions: each acts on the images chosen and on those alone; a direction added
through the fine-tune's path scores as the feature finder's path does; the rise is the
class's mean score change on every image."""

from __future__ import annotations

import pytest
import torch

from captum_gmar import load_reference_model, load_sample_scenes
from captum_gmar.exploration.intervention import Add, Paste, Shift
from captum_gmar.imagedata import to_pixel_values
from captum_gmar.vit.layers import scores_with_tokens_shifted
from captum_gmar.vit.model import VisionTransformer
from captum_gmar.vit.outputs import logit_scores


@pytest.fixture(scope="module")
def vit_and_pixels():
    return VisionTransformer(load_reference_model()), to_pixel_values(load_sample_scenes().images)


def _corner(size: int = 64) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., :16, :16] = 1
    return mask


@pytest.mark.parametrize("kind", ["paste", "add", "shift"])
def test_only_the_images_chosen_change(vit_and_pixels, kind):
    vit, pixels = vit_and_pixels
    intervention = {
        "paste": Paste(3, _corner(), torch.full((2, 3, 64, 64), 2.0)),
        "add": Add(3, 0.5 * _corner().expand(1, 3, 64, 64)),
        "shift": Shift(3, 1, torch.linspace(-2, 2, vit.hidden_size)),
    }[kind]
    applied = torch.tensor([True, False] * 4)
    with torch.no_grad():
        plain = vit.logits(pixels)
        changed = intervention.logits(vit, pixels, applied, torch.Generator().manual_seed(0))
    torch.testing.assert_close(changed[~applied], plain[~applied])
    assert (changed[applied] - plain[applied]).abs().amax(dim=1).min() > 1e-3


def test_a_shift_scores_as_the_feature_finder_scores_it(vit_and_pixels):
    vit, pixels = vit_and_pixels
    direction = torch.linspace(-1, 1, vit.hidden_size)
    shift = Shift(5, 3, direction)
    with torch.no_grad():
        through_logits = logit_scores(vit)(shift.logits(vit, pixels, torch.ones(8, dtype=torch.bool), torch.Generator()))
        plain = logit_scores(vit)(vit.logits(pixels))
    finder = scores_with_tokens_shifted(vit, pixels, 3, direction[None], logit_scores(vit))[0]
    torch.testing.assert_close(through_logits, finder)
    expected = float((finder[:, 5] - plain[:, 5]).double().mean())
    assert shift.rise(vit, pixels, logit_scores(vit), batch_size=3) == pytest.approx(expected, abs=1e-6)


def test_nothing_put_on_rises_by_nothing(vit_and_pixels):
    vit, pixels = vit_and_pixels
    scores = logit_scores(vit)
    assert Shift(2, 0, torch.zeros(vit.hidden_size)).rise(vit, pixels, scores) == pytest.approx(0.0, abs=1e-6)
    assert Paste(2, torch.zeros(1, 1, 64, 64), pixels[:2]).rise(vit, pixels, scores) == pytest.approx(0.0, abs=1e-6)
    assert Add(2, torch.zeros(1, 3, 64, 64)).rise(vit, pixels, scores) == pytest.approx(0.0, abs=1e-6)
    assert torch.isnan(torch.tensor(Paste(2, _corner(), pixels[:2]).rise(vit, pixels[:0], scores)))
