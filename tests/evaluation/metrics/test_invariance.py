import math

import pytest
import torch
from tiny_models import MODEL_NAMES, OPTION_MODELS, VISION

from captum_gmar.evaluation.metrics.invariance import check_same_function, head_scales, invariance_table, map_change, reparametrised_copy
from captum_gmar.vit.model import VisionTransformer

LAYERS, HEADS = VISION["num_hidden_layers"], VISION["num_attention_heads"]
TARGETS = torch.tensor([0, 3, 1])
INVARIANT = [
    "gmar-attention",
    "gmar-gate",
    "gmar-gate-positive",
    "rollout",
    "raw-attention",
    "gae",
    "gradcam",
    "attnlrp",
    "cplrp",
    "ig",
    "saliency",
]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_rescaled_copy_computes_the_same_logits_with_other_weights(load_tiny, images, name):
    model = load_tiny(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clone = reparametrised_copy(model, head_scales(LAYERS, HEADS, "all", 100.0))
    assert check_same_function(model, clone, images) < 1e-5
    changed = [k for k, v in clone.state_dict().items() if not torch.equal(v, before[k])]
    # per layer: the value weight (and bias), the output projection's weight; in timm the fused qkv
    assert LAYERS * 2 <= len(changed) <= LAYERS * 3, changed
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the user's model is untouched


def test_a_surgery_that_changes_the_function_is_an_error(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    clone = reparametrised_copy(model, head_scales(LAYERS, HEADS, "head", 10.0))
    with torch.no_grad():
        VisionTransformer(clone).blocks[1].output.weight.mul_(1.5)  # the output projection alone: another function
    with pytest.raises(RuntimeError, match="computes other logits"):
        check_same_function(model, clone, images)


@pytest.mark.parametrize("name", OPTION_MODELS)
def test_function_based_methods_and_invariant_gmar_scores_give_the_same_maps(load_tiny, images, name):
    rows = invariance_table(load_tiny(name), images, TARGETS, INVARIANT, scales=(0.01, 100.0), scopes=("head", "all"), ig_steps=4)
    assert len(rows) == len(INVARIANT) * 3  # "all" runs 0.01 and 100 once: the same factors
    for row in rows:
        assert row["patch_change_max"] < 1e-4 and row["pixel_change"] < 1e-4, row


@pytest.mark.parametrize("name", OPTION_MODELS)
def test_gmar_output_gradient_norm_is_not_implementation_invariant(load_tiny, images, name):
    """GMAR's paper score (L1/L2 norm of each head's output gradient) follows the head's
    scale: rescaling one head, or all, moves the map though the logits are the same."""
    rows = invariance_table(load_tiny(name), images, TARGETS, ["gmar-l1", "gmar-l2"], scales=(100.0,), scopes=("head", "layer", "all"))
    changes = {(r["method"], r["scope"]): r["patch_change"] for r in rows}
    for method in ("GMAR (L1)", "GMAR (L2)"):
        assert changes[method, "head"] > 1e-3 and changes[method, "all"] > 1e-3, changes
        # one factor for every head of a layer cancels in the per-layer normalisation of the weights
        assert changes[method, "layer"] < 1e-4, changes


def test_head_scales():
    assert torch.equal(
        head_scales(3, 4, "head", 10.0),
        torch.ones(3, 4, dtype=torch.float64).index_put_((torch.tensor(1), torch.tensor(0)), torch.tensor(10.0, dtype=torch.float64)),
    )
    layer = head_scales(3, 4, "layer", 0.1)
    assert torch.equal(layer[1], torch.full((4,), 0.1, dtype=torch.float64)) and bool((layer[[0, 2]] == 1).all())
    spread = head_scales(3, 4, "all", 100.0, seed=2)
    torch.testing.assert_close(spread, head_scales(3, 4, "all", 0.01, seed=2))
    assert not torch.allclose(spread, head_scales(3, 4, "all", 100.0, seed=3))
    assert bool((spread >= 0.01).all() and (spread <= 100).all()) and spread.log10().abs().max() > 1
    with pytest.raises(ValueError, match="scope must be"):
        head_scales(3, 4, "block", 10.0)
    with pytest.raises(ValueError, match="scale must be positive"):
        head_scales(3, 4, "head", 0.0)


def test_reparametrised_copy_checks_the_scales(load_tiny):
    with pytest.raises(ValueError, match=r"scales must be \(3, 4\) positive"):
        reparametrised_copy(load_tiny("ViTForImageClassification"), torch.ones(2, 4))
    with pytest.raises(ValueError, match="positive"):
        reparametrised_copy(load_tiny("ViTForImageClassification"), -torch.ones(3, 4))


def test_map_change():
    a = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(map_change(a, 3 * a), torch.zeros(2))  # a rescaled map says the same
    left, right = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)
    left[..., :4], right[..., 4:] = 1, 1
    torch.testing.assert_close(map_change(left, right), torch.ones(1))
    # on a 4 x 4 patch grid the halves stay apart; on one patch covering both they agree
    torch.testing.assert_close(map_change(left, right, 4), torch.ones(1))
    torch.testing.assert_close(map_change(left, right, 8), torch.zeros(1))
    half = left.clone()
    half[..., :2] = 0  # half the mass moved away from where it was
    assert map_change(left, half).item() == pytest.approx(0.5)
    assert math.isnan(map_change(torch.zeros(1, 8, 8), left).item())
    with pytest.raises(ValueError, match="two"):
        map_change(a, a[0])
