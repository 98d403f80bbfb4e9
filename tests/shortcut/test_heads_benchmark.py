"""The Locate-Then-Correct-style contrast of the heads benchmark: each head's direct
contribution to the class's logit; a head whose output projection is zero contributes
nothing, and the contributions move with the class's classifier row."""

from __future__ import annotations

import torch

from captum_gmar import load_reference_model
from captum_gmar.vit.model import VisionTransformer
from tools.shortcut.heads import direct_effects


def test_direct_effects_vanish_for_a_head_that_writes_nothing_and_scale_with_the_classifier():
    model = load_reference_model()
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    effects = direct_effects(model, x, target=3)
    assert effects.shape == (4, 6, 4) and effects.abs().sum() > 0
    projection = VisionTransformer(model).blocks[2].output
    size = projection.in_features // 4
    original = projection.weight.detach().clone()
    try:
        with torch.no_grad():
            projection.weight[:, size : 2 * size] = 0
        silent = direct_effects(model, x, target=3)
    finally:
        with torch.no_grad():
            projection.weight.copy_(original)
    assert torch.count_nonzero(silent[:, 2, 1]) == 0
    with torch.no_grad():
        model.classifier.weight[3] *= 2
    try:
        torch.testing.assert_close(direct_effects(model, x, target=3), 2 * effects, rtol=1e-4, atol=1e-5)
    finally:
        with torch.no_grad():
            model.classifier.weight[3] /= 2
