"""``locate_heads``: the ablation effects are the brute-force ones, the scores are GMAR's
head weights contrasted, the ranking follows the effect, a head made to carry a signal
comes first; identical sets give no contrast; the budget; bad input in one line."""

from __future__ import annotations

import pytest
import torch
from tiny_models import IMAGE_SIZE, NUM_LABELS

from captum_gmar import GMARAttribution, locate_heads
from captum_gmar.heads.locate import EFFECTS, HEAD_SCORES
from captum_gmar.vit.model import VisionTransformer


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    import transformers

    return transformers.DeiTForImageClassification.from_pretrained(tiny_model_dirs["DeiTForImageClassification"]).eval()


def _images(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def test_effects_are_the_brute_force_ablation_contrasts_and_scores_the_contrasted_head_weights(model):
    images, reference = _images(5, 1), _images(7, 2)
    found = locate_heads(model, images, reference, target=2, batch_size=4)
    vit = VisionTransformer(model)
    layers, heads = vit.num_layers, vit.num_heads
    with torch.no_grad():
        clean = torch.cat([vit.logits(images), vit.logits(reference)])[:, 2]
    expected = torch.zeros(layers, heads)
    for layer in range(layers):
        for head in range(heads):
            mask = torch.zeros(layers, heads, dtype=torch.bool)
            mask[layer, head] = True
            with torch.no_grad(), vit.heads_zeroed(mask):
                drop = clean - torch.cat([vit.logits(images), vit.logits(reference)])[:, 2]
            expected[layer, head] = drop[:5].mean() - drop[5:].mean()
    torch.testing.assert_close(found.masking_effect, expected, rtol=1e-4, atol=1e-5)
    assert set(found.effects) == set(EFFECTS) and found.ablated.all() and found.images == 5 and found.reference_images == 7
    weights = [GMARAttribution(model).attribute(x, target=2, return_head_weights=True)[1] for x in (images, reference)]
    torch.testing.assert_close(found.scores["gmar-l1"], weights[0].mean(0) - weights[1].mean(0), rtol=1e-4, atol=1e-6)
    assert set(found.scores) == set(HEAD_SCORES) and all(s.shape == (layers, heads) for s in found.scores.values())
    flat = [float(found.masking_effect[layer, head]) for layer, head in found.ranking]
    assert flat == sorted(flat, reverse=True) and len(set(found.ranking)) == layers * heads
    assert [row["rank"] for row in found.rows()] == list(range(1, layers * heads + 1))
    assert all(-1 <= a["spearman"] <= 1 and 0 <= a["top_k"] <= 1 for a in found.agreement.values())


def test_a_head_made_to_carry_the_class_on_some_images_ranks_first(model):
    """Head 3 of layer 1 is given a large output projection: its output moves the logits,
    and it does so differently on the images (a bright corner) than on the reference."""
    import copy

    boosted = copy.deepcopy(model)
    vit = VisionTransformer(boosted)
    projection = vit.blocks[1].output
    with torch.no_grad():
        projection.weight[:, 24:32] *= 40
    images, reference = _images(8, 3), _images(8, 4)
    images[:, :, :8, :8] += 6
    found = locate_heads(boosted, images, reference, target=0)
    strongest = divmod(int(found.masking_effect.abs().flatten().argmax()), 4)
    assert strongest == (1, 3), found.masking_effect
    assert found.ranking[0 if found.masking_effect[1, 3] > 0 else -1] == (1, 3)


def test_identical_sets_have_no_contrast(model):
    images = _images(4, 5)
    found = locate_heads(model, images, images.clone(), target=1)
    for values in (*found.effects.values(), *found.scores.values()):
        torch.testing.assert_close(values, torch.zeros_like(values), atol=1e-5, rtol=0)


def test_a_budget_ablates_the_heads_of_largest_gate_contrast_and_ranks_the_rest_by_it(model):
    images, reference = _images(4, 6), _images(4, 7)
    found = locate_heads(model, images, reference, target=0, budget=5, top_k=2)
    assert int(found.ablated.sum()) == 5 and found.masking_effect[~found.ablated].isnan().all()
    gate = found.scores["gmar-gate"]
    assert set(map(tuple, torch.nonzero(found.ablated).tolist())) == {
        divmod(int(i), 4) for i in gate.flatten().argsort(descending=True, stable=True)[:5]
    }
    rest = [float(gate[layer, head]) for layer, head in found.ranking[5:]]
    assert all(found.ablated[head] for head in found.ranking[:5]) and rest == sorted(rest, reverse=True)
    by_score = locate_heads(model, images, reference, target=0, order="gmar-l1", budget=5)
    values = [float(by_score.scores["gmar-l1"][head]) for head in by_score.ranking]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"images": torch.zeros(0, 3, 32, 32)}, "images holds no image"),
        ({"reference_images": torch.zeros(3, 32, 32)}, r"reference_images must be pixel values \(N, C, H, W\), got \(3, 32, 32\)"),
        ({"reference_images": torch.zeros(2, 3, 48, 48)}, r"must be of one size \(C, H, W\)"),
        ({"images": torch.zeros(2, 1, 32, 32), "reference_images": torch.zeros(2, 1, 32, 32)}, "channel"),
        ({"target": NUM_LABELS}, rf"target must be a class index in \[0, {NUM_LABELS - 1}\]"),
        ({"order": "loudest"}, "order must be one of zero-logit"),
        ({"budget": 0}, r"budget must be a number of heads in \[1, 12\]"),
        ({"top_k": 13}, r"top_k must be in \[1, 12\]"),
    ],
)
def test_bad_input_is_one_line_before_any_work(model, change, message):
    arguments = {"images": _images(2, 8), "reference_images": _images(2, 9), "target": 0, **change}
    with pytest.raises(ValueError, match=message) as error:
        locate_heads(model, **arguments)
    assert "\n" not in str(error.value)


def test_a_model_in_training_mode_is_refused(model):
    model.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            locate_heads(model, _images(2, 1), _images(2, 2), target=0)
    finally:
        model.eval()
