import copy

import pytest
import torch

from captum_gmar.evaluation import GroupDrops, group_masking_drops, head_masking_drops, rank_correlation
from captum_gmar.vit.model import VisionTransformer

TARGETS = torch.tensor([1, 0, 4])
L, H = 3, 4


@pytest.fixture(scope="module")
def vit(load_tiny):
    return VisionTransformer(load_tiny("ViTForImageClassification"))


def target_logits(vit, images, mask=None):
    with torch.no_grad():
        if mask is None:
            logits = vit.logits(images)
        else:
            with vit.heads_zeroed(mask):
                logits = vit.logits(images)
    return logits.gather(1, TARGETS.view(-1, 1)).squeeze(1)


def test_head_masking_drops_match_zeroing_each_head(vit, images):
    drops = head_masking_drops(vit, images, TARGETS)
    assert drops.shape == (3, L, H) and drops.dtype == torch.float32
    clean = target_logits(vit, images)
    for layer, head in [(0, 0), (1, 2), (2, 3)]:
        mask = torch.zeros(L, H, dtype=torch.bool)
        mask[layer, head] = True
        expected = clean - target_logits(vit, images, mask)
        torch.testing.assert_close(drops[:, layer, head], expected, rtol=1e-4, atol=1e-5)
    assert drops.abs().amax() > 1e-3  # heads do matter in this model
    chunked = head_masking_drops(vit.model, images, TARGETS, batch_size=5)  # the HF model works too
    torch.testing.assert_close(chunked, drops, rtol=1e-4, atol=1e-5)


def test_a_head_that_contributes_nothing_has_no_drop(vit, images):
    assert head_masking_drops(vit, images, TARGETS)[:, 1, 2].abs().amax() > 1e-3
    model = copy.deepcopy(vit.model)
    dead = VisionTransformer(model)
    head_dim = model.config.hidden_size // H
    with torch.no_grad():
        dead.blocks[1].output.weight[:, 2 * head_dim : 3 * head_dim] = 0.0  # head (1, 2) reaches nothing
    torch.testing.assert_close(head_masking_drops(dead, images, TARGETS)[:, 1, 2], torch.zeros(3), atol=1e-5, rtol=0)


def test_group_masking_zeroes_the_top_and_bottom_heads_of_every_layer(vit, images):
    weights = torch.tensor([0.1, 0.4, 0.3, 0.2]).expand(3, L, H)
    result = group_masking_drops(vit, images, TARGETS, weights, k=2)
    assert isinstance(result, GroupDrops) and result.top.shape == result.bottom.shape == (3,)
    clean = target_logits(vit, images)
    top = torch.zeros(L, H, dtype=torch.bool)
    top[:, [1, 2]] = True
    torch.testing.assert_close(result.top, clean - target_logits(vit, images, top), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.bottom, clean - target_logits(vit, images, ~top), rtol=1e-4, atol=1e-5)
    swapped = group_masking_drops(vit, images, TARGETS, -weights, k=2)
    torch.testing.assert_close(swapped.top, result.bottom)
    everything = group_masking_drops(vit, images, TARGETS, weights, k=H)
    torch.testing.assert_close(everything.top, everything.bottom)


def test_group_masking_uses_each_examples_own_weights(vit, images):
    weights = torch.rand(3, L, H, generator=torch.Generator().manual_seed(0))
    result = group_masking_drops(vit, images, TARGETS, weights, k=1)
    for b in range(3):
        mask = torch.zeros(L, H, dtype=torch.bool)
        mask[torch.arange(L), weights[b].argmax(-1)] = True
        drop = target_logits(vit, images, mask)[b]
        torch.testing.assert_close(result.top[b], target_logits(vit, images)[b] - drop, rtol=1e-4, atol=1e-5)


def test_rank_correlation_identical_reversed_and_monotone():
    x = torch.randn(2, L, H, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rank_correlation(x, x), torch.ones(2))
    torch.testing.assert_close(rank_correlation(x, -x), -torch.ones(2))
    torch.testing.assert_close(rank_correlation(x, x.exp() * 3), torch.ones(2))


def test_rank_correlation_average_ranks_for_ties_and_constant_layers():
    weights = torch.tensor([[[1.0, 2.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]]])
    drops = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]]])
    # Ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): Pearson 4.5 / sqrt(4.5 * 5).
    tied = 4.5 / (4.5 * 5.0) ** 0.5
    torch.testing.assert_close(rank_correlation(weights[:, :1], drops[:, :1]), torch.tensor([tied]))
    torch.testing.assert_close(rank_correlation(weights, drops), torch.tensor([tied / 2]))  # the constant layer adds 0


def test_bad_arguments_raise(vit, images, load_tiny):
    with pytest.raises(ValueError, match="training mode"):
        head_masking_drops(load_tiny("ViTForImageClassification").train(), images, TARGETS)
    with pytest.raises(ValueError, match="below the model's 5 classes"):
        head_masking_drops(vit, images, torch.tensor([0, 5, 1]))
    weights = torch.rand(3, L, H)
    with pytest.raises(ValueError, match="k must be"):
        group_masking_drops(vit, images, TARGETS, weights, k=0)
    with pytest.raises(ValueError, match="head_weights must have shape"):
        group_masking_drops(vit, images, TARGETS, weights[:, 1:], k=1)
    with pytest.raises(ValueError, match="drops must have shape"):
        rank_correlation(weights, weights[:2])
    with pytest.raises(ValueError, match="two heads"):
        rank_correlation(weights[..., :1], weights[..., :1])
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation(weights, torch.full_like(weights, float("nan")))
    with pytest.raises(TypeError, match="not a supported"):
        head_masking_drops(torch.nn.Linear(2, 2), images, TARGETS)
