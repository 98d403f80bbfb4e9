"""GMAR's ablations: the variants, their maps, the comparison option and the paired table."""

import math

import pytest
import torch
import transformers
from toy_tasks import ToyTasks

from captum_gmar import AttentionRollout, GMARAttribution
from captum_gmar.evaluation import ablation_masks, ablation_methods, ablation_table, compare
from captum_gmar.evaluation.report import ablation_markdown


def tiny_vit(layers: int) -> transformers.ViTForImageClassification:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64, num_labels=3
    )
    return transformers.ViTForImageClassification(config).eval()


def test_ablation_masks():
    layers = ablation_masks(3, 4, "layers")
    assert list(layers) == ["layer 0 uniform", "layer 1 uniform", "layer 2 uniform"]
    assert layers["layer 1 uniform"].sum() == 8 and not layers["layer 1 uniform"][1].any()
    heads = ablation_masks(3, 4, "heads")
    assert len(heads) == 12 and all(mask.sum() == 1 for mask in heads.values())
    assert heads["only head 2.1"][2, 1]
    with pytest.raises(ValueError, match="layers, heads"):
        ablation_masks(3, 4, "tokens")


def test_variants_move_between_gmar_and_rollout():
    """With one layer, making it uniform is rollout; keeping every head's weight in turn
    gives maps that differ from rollout's."""
    model = tiny_vit(1)
    x, t = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])
    methods = {m.name: m for m in ablation_methods(model, ["layers", "heads"])}
    assert list(methods) == ["GMAR (L1), layer 0 uniform"] + [f"GMAR (L1), only head 0.{h}" for h in range(4)]
    rollout = AttentionRollout(model).attribute(x, target=t)[:, 0]
    torch.testing.assert_close(methods["GMAR (L1), layer 0 uniform"](x, t), rollout)
    gmar = GMARAttribution(model).attribute(x, target=t)[:, 0]
    assert (gmar - rollout).abs().max() > 1e-4
    assert all((methods[f"GMAR (L1), only head 0.{h}"](x, t) - rollout).abs().max() > 1e-6 for h in range(4))


def test_compare_with_an_ablation_and_its_table():
    model = tiny_vit(2)
    rows = compare(
        model,
        ToyTasks(6),
        methods=["gmar-l1", "rollout"],
        metrics=["localisation", "sanity"],
        device="cpu",
        batch_size=3,
        progress=False,
        ablation=["layers"],
    )
    names = ["GMAR (L1)", "Attention rollout", "GMAR (L1), layer 0 uniform", "GMAR (L1), layer 1 uniform"]
    assert len(rows) == 4 * 6 and sorted({r["method"] for r in rows}) == sorted(names)
    variant = [r for r in rows if r["method"] == names[2]]
    assert all("randomised_head_correlation" not in r for r in variant)  # the re-initialised copies run the methods only
    assert all(0 <= r["gini"] < 1 and not math.isnan(r["rollout_correlation"]) for r in variant)
    assert all("head_weight_class_share" not in r for r in variant)  # an ablation's weights are not GMAR's own
    table = ablation_table(rows)
    assert list(table) == names[2:]
    by_item = {(r["method"], r["item"]): r for r in rows}
    expected = sum(by_item[(names[2], i)]["gini"] - by_item[("GMAR (L1)", i)]["gini"] for i in range(6)) / 6
    assert table[names[2]]["gini"]["vs_gmar"]["mean"] == pytest.approx(expected)
    assert table[names[2]]["gini"]["vs_rollout"]["count"] == 6
    markdown = ablation_markdown(table, ["gini", "rollout_correlation"])
    assert markdown.count("\n| GMAR (L1), layer") == 2 and "gini − rollout" in markdown
    with pytest.raises(ValueError, match="no ablated variant"):
        ablation_table([r for r in rows if r["method"] in names[:2]])


def test_compare_refuses_an_ablation_without_its_pairs():
    with pytest.raises(ValueError, match="must include gmar-l1 and rollout"):
        compare(tiny_vit(1), ToyTasks(2), methods=["gmar-l1"], device="cpu", progress=False, ablation=["layers"])
    with pytest.raises(ValueError, match="unknown ablation"):
        compare(tiny_vit(1), ToyTasks(2), methods=["gmar-l1", "rollout"], device="cpu", progress=False, ablation=["tokens"])
