"""Sanity checks: map correlation, head-weight entropy, re-initialised copies, and the
comparison's ``sanity`` metric group."""

from __future__ import annotations

import math

import pytest
import torch

from captum_gmar.core.correlation import average_ranks, pearson
from captum_gmar.evaluation import SceneTasks, compare
from captum_gmar.evaluation.data import collate
from captum_gmar.evaluation.methods import build_methods
from captum_gmar.evaluation.metrics.sanity import head_weight_entropy, map_correlation, randomised_copy
from captum_gmar.reference import load_reference_model, load_sample_scenes


def test_map_correlation_identities():
    a = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(map_correlation(a, a), torch.ones(3))
    torch.testing.assert_close(map_correlation(a, -a), -torch.ones(3))
    torch.testing.assert_close(map_correlation(a, 3 * a + 1), torch.ones(3))
    # Spearman: any increasing transform keeps the ranks; Pearson does not stay 1
    torch.testing.assert_close(map_correlation(a, a.exp() ** 5, rank=True), torch.ones(3))
    assert (map_correlation(a, a.exp() ** 5) < 0.999).all()
    constant = torch.ones(3, 16, 16)
    assert map_correlation(a, constant).isnan().all()


def test_map_correlation_compares_patch_means():
    """Two maps with the same mean over every 4 x 4 patch agree on the patch grid."""
    a = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(2))
    patch_mean = torch.nn.functional.avg_pool2d(noise.unsqueeze(1), 4).repeat_interleave(4, -1).repeat_interleave(4, -2).squeeze(1)
    b = a + noise - patch_mean  # moves pixels within each patch, keeps its mean
    assert (map_correlation(a, b) < 0.99).all()
    torch.testing.assert_close(map_correlation(a, b, patch_size=4), torch.ones(2))


def test_map_correlation_ties_share_their_rank():
    a = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]])
    b = torch.tensor([[[5.0, 5.0], [6.0, 7.0]]])
    torch.testing.assert_close(map_correlation(a, b, rank=True), torch.ones(1))


def test_map_correlation_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        map_correlation(torch.rand(2, 8, 8), torch.rand(2, 8, 9))


def test_head_weight_entropy_bounds():
    uniform = torch.full((2, 3, 4), 0.25)
    one_hot = torch.zeros(2, 3, 4)
    one_hot[..., 1] = 1
    torch.testing.assert_close(head_weight_entropy(uniform), torch.ones(2, 3))
    torch.testing.assert_close(head_weight_entropy(one_hot), torch.zeros(2, 3))
    half = torch.tensor([[[0.5, 0.5, 0.0, 0.0]]])
    torch.testing.assert_close(head_weight_entropy(half), torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="at least two heads"):
        head_weight_entropy(torch.ones(2, 3, 1))


@pytest.mark.parametrize("part", ["head", "last_block"])
def test_randomised_copy_changes_only_that_part(part):
    model = load_reference_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clone = randomised_copy(model, part, seed=0)
    changed = {k for k, v in clone.state_dict().items() if not torch.equal(v, before[k])}
    prefix = "classifier." if part == "head" else f"vit.encoder.layer.{model.config.num_hidden_layers - 1}."
    if not any(k.startswith(prefix) for k in before):  # transformers 5 names the layers vit.layers
        prefix = f"vit.layers.{model.config.num_hidden_layers - 1}."
    assert changed and all(k.startswith(prefix) for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model is untouched
    again = randomised_copy(model, part, seed=0)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in clone.state_dict().items())


def test_randomised_copy_errors():
    model = load_reference_model()
    with pytest.raises(ValueError, match="'head' or 'last_block'"):
        randomised_copy(model, "embeddings")
    del model.classifier
    with pytest.raises(ValueError, match="no classifier"):
        randomised_copy(model, "head")


def test_sanity_metric_group():
    """Columns on the first robustness_limit items, NaN after; entropy for GMAR only; the
    map of a class-agnostic method (rollout) ignores the classifier head entirely."""
    model = load_reference_model()
    rows = compare(
        model,
        SceneTasks(load_sample_scenes()),
        methods=["gmar-l1", "rollout"],
        metrics=["sanity"],
        device="cpu",
        batch_size=4,
        robustness_limit=6,
        progress=False,
    )
    by_method = {m: [r for r in rows if r["method"] == m] for m in ("GMAR (L1)", "Attention rollout")}
    for method, method_rows in by_method.items():
        for row in method_rows:
            computed = row["item"] < 6
            assert math.isnan(row["randomised_head_correlation"]) != computed
            assert ("head_entropy" in row and not math.isnan(row["head_entropy"])) == (computed and method == "GMAR (L1)")
            share = row.get("head_weight_class_share", math.nan)
            assert (0 <= share <= 1) == (computed and method == "GMAR (L1)")
    rollout = [r for r in by_method["Attention rollout"] if r["item"] < 6]
    assert all(r["randomised_head_correlation"] == pytest.approx(1.0) and r["rollout_correlation"] == pytest.approx(1.0) for r in rollout)
    assert all(r["randomised_block_correlation"] < 1.0 for r in rollout)
    assert all(r["randomised_head_pixel_correlation"] == pytest.approx(1.0) for r in rollout)


def test_randomisation_is_also_scored_on_pixels():
    """The pixel-level columns are Spearman's correlation of the pixel maps before and after
    the re-initialisation, computed here again from the methods themselves."""
    model = load_reference_model()
    tasks = SceneTasks(load_sample_scenes())
    rows = compare(model, tasks, methods=["attnlrp"], metrics=["sanity"], device="cpu", batch_size=4, robustness_limit=4, progress=False)
    batch = collate([tasks[i] for i in range(4)])
    (before,) = build_methods(model, ["attnlrp"])
    (after,) = build_methods(randomised_copy(model, "head", 0), ["attnlrp"])
    a, b = before(batch.pixel_values, batch.targets), after(batch.pixel_values, batch.targets)
    expected = {
        "randomised_head_pixel_correlation": map_correlation(a, b, rank=True),
        "randomised_head_correlation": map_correlation(a, b, 8, rank=True),
    }
    for name, values in expected.items():
        got = torch.tensor([r[name] for r in sorted(rows, key=lambda r: r["item"])[:4]])
        torch.testing.assert_close(got, values.float(), atol=1e-5, rtol=0)


def test_sanity_invariance_column_separates_gmars_output_gradient_norm_from_the_invariant_head_scores():
    """Rescaling every head against its output projection leaves rollout's and the gate
    score's maps as they were (to rounding), and moves GMAR (L1)'s."""
    rows = compare(
        load_reference_model(),
        SceneTasks(load_sample_scenes()),
        methods=["gmar-l1", "gmar-gate", "rollout"],
        metrics=["sanity"],
        device="cpu",
        batch_size=4,
        robustness_limit=4,
        progress=False,
    )
    change = {
        m: [r["invariance"] for r in rows if r["method"] == m and r["item"] < 4]
        for m in ("GMAR (L1)", "GMAR (gate, abs)", "Attention rollout")
    }
    assert all(len(values) == 4 for values in change.values())
    assert max(change["Attention rollout"]) < 1e-5 and max(change["GMAR (gate, abs)"]) < 1e-4
    assert min(change["GMAR (L1)"]) > 1e-3
    assert all(math.isnan(r["invariance"]) for r in rows if r["item"] >= 4)


def _pairwise_average_ranks(x):
    """The former O(N^2) ranking, the reference of the sorting one."""
    below = (x.unsqueeze(-1) > x.unsqueeze(-2)).sum(-1)
    tied = (x.unsqueeze(-1) == x.unsqueeze(-2)).sum(-1)
    return below + (tied - 1) / 2


def test_rank_correlation_equals_the_pairwise_ranking_ties_included():
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 16, 16), generator=generator).float()  # many ties
    b = torch.rand(3, 16, 16, generator=generator)
    b[0] = 1.0  # a constant map: NaN as before
    for x in (a.flatten(1), b.flatten(1), a[:, :4, :4].flatten(1)):
        torch.testing.assert_close(average_ranks(x), _pairwise_average_ranks(x), rtol=0, atol=0)
    expected = pearson(_pairwise_average_ranks(a.flatten(1)), _pairwise_average_ranks(b.flatten(1)), undefined=math.nan)
    torch.testing.assert_close(map_correlation(a, b, rank=True), expected, equal_nan=True)


def test_rank_correlation_of_large_pixel_maps_needs_no_pixels_by_pixels_matrix():
    # 2 maps of 400 x 400 pixels: a pairwise ranking would ask for 2 * 160000^2 bytes (51 GB)
    a = torch.arange(160_000.0).view(1, 400, 400).repeat(2, 1, 1)
    b = a.clone()
    b[1] = b[1].flip(-1)
    torch.testing.assert_close(average_ranks(a.flatten(1)), a.flatten(1))
    torch.testing.assert_close(map_correlation(a, b, rank=True)[0], torch.tensor(1.0))
    assert map_correlation(a, b, rank=True)[1] < 1
