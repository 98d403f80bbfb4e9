"""The causal check: masking fills exactly the named patches with the image's mean; a
model that reads one patch loses its score when that patch is masked and not when
random ones are; the figures add up."""

from __future__ import annotations

import math

import pytest
import torch

from captum_gmar.exploration.causal import causal_check, mask_patches, random_patches


def test_mask_patches_fills_the_named_patches_with_each_images_mean():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    masked = mask_patches(x, torch.tensor([[0], [3]]), (2, 2))  # 2 x 2 grid of 4 px patches
    mean = x.mean(dim=(2, 3))
    assert torch.equal(masked[0, :, :4, :4], mean[0].view(3, 1, 1).expand(3, 4, 4))
    assert torch.equal(masked[1, :, 4:, 4:], mean[1].view(3, 1, 1).expand(3, 4, 4))
    assert torch.equal(masked[0, :, 4:, :], x[0, :, 4:, :]) and torch.equal(masked[1, :, :4, :], x[1, :, :4, :])
    same = mask_patches(x, torch.tensor([1]), (2, 2))  # (k,): the same patch in every image
    assert torch.equal(same[:, :, :4, 4:], mean.view(2, 3, 1, 1).expand(2, 3, 4, 4))


def test_random_patches_are_distinct_and_seeded():
    a = random_patches(50, 5, 16, torch.Generator().manual_seed(1))
    b = random_patches(50, 5, 16, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (50, 5) and all(len(set(row.tolist())) == 5 for row in a)
    assert a.min() >= 0 and a.max() < 16


def test_a_model_that_reads_one_patch_fails_the_check_only_there():
    """The score is the brightness of the top-left 4 x 4 pixels: masking that patch on
    bright-cornered images drops it; random patches mostly miss it."""
    generator = torch.Generator().manual_seed(0)
    members = torch.rand(40, 3, 16, 16, generator=generator) * 0.2
    members[:, :, :4, :4] = 1.0
    others = torch.rand(30, 3, 16, 16, generator=generator) * 0.2

    def scores(x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :4, :4].mean(dim=(1, 2, 3))

    check = causal_check(scores, members, others, [(0, 0)], (4, 4), draws=5, seed=3)
    assert check.members == 40 and check.others == 30 and check.score == pytest.approx(1.0)
    assert check.region < 0.25 and check.random > 0.8 and check.effect > 0.5
    assert check.specific == pytest.approx((check.score - check.region) - (check.others_score - check.others_region))
    assert check.specific > 0.5 and "on 30 of the class's other images" in check.summary()
    alone = causal_check(scores, members, None, [(0, 0)], (4, 4))
    assert alone.others == 0 and math.isnan(alone.others_score) and math.isnan(alone.specific)
