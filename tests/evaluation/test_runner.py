"""The comparison end to end on a few scenes, with a tiny random model on CPU."""

import math

import pytest
import torch
import transformers

from captum_gmar.datasets.scenes import make_scenes
from captum_gmar.evaluation.methods import METHOD_KEYS, build_methods
from captum_gmar.evaluation.report import markdown_table, summarize, write_csv
from captum_gmar.evaluation.runner import compare, explanation_tasks

pytest.importorskip("captum_gmar.datasets.fashion_mnist")


@pytest.fixture(scope="module")
def scenes():
    try:
        return make_scenes(4, "test", seed=3)
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def scene_model():
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=10, problem_type="multi_label_classification",
    )
    return transformers.ViTForImageClassification(config).eval()


def test_explanation_tasks_one_per_item(scenes):
    tasks = explanation_tasks(scenes)
    assert len(tasks) == int(scenes.num_items.sum())
    for i in range(len(tasks)):
        scene = int(tasks.scene[i])
        assert int(tasks.targets[i]) in scenes.labels[scene].tolist()
        assert tasks.masks[i].any()
        assert bool(tasks.two_items[i]) == bool(tasks.other_masks[i].any())
        assert not (tasks.masks[i] & tasks.other_masks[i]).any()


def test_compare_end_to_end(scenes, scene_model, tmp_path):
    rows = compare(
        scene_model, scenes, methods=["gmar-l1", "rollout", "ig"], device="cpu", batch_size=3,
        robustness_limit=2, ig_steps=4, progress=False,
    )
    tasks = len(explanation_tasks(scenes))
    assert len(rows) == 3 * tasks
    gmar_rows = [row for row in rows if row["method"] == "GMAR (L1)"]
    assert all(-1 <= row["head_rank_correlation"] <= 1 for row in gmar_rows)
    assert all("head_rank_correlation" not in row for row in rows if row["method"] != "GMAR (L1)")
    assert all(0 <= row["mass_inside"] <= 1 and 0 <= row["deletion_auc"] <= 1 for row in rows)
    assert sum(not math.isnan(row["infidelity"]) for row in gmar_rows) == 2
    assert all(math.isnan(row["class_sensitivity"]) != row["two_items"] for row in rows)
    summary = summarize(rows)
    assert [entry["method"] for entry in summary] == ["GMAR (L1)", "Attention rollout", "IG (4 steps)"]
    table = markdown_table(summary)
    assert table.count("\n| ") == 3 and "deletion_auc" in table
    write_csv(rows, tmp_path / "rows.csv")
    assert (tmp_path / "rows.csv").read_text().count("\n") == len(rows) + 1


def test_compare_is_reproducible(scenes, scene_model):
    kwargs = dict(methods=["gae"], metrics=["robustness"], device="cpu", robustness_limit=3, progress=False, seed=5)
    first, second = compare(scene_model, scenes, **kwargs), compare(scene_model, scenes, **kwargs)
    assert [r["sensitivity"] for r in first[:3]] == [r["sensitivity"] for r in second[:3]]


def test_compare_rejects_bad_arguments(scenes, scene_model):
    with pytest.raises(ValueError, match="unknown metric"):
        compare(scene_model, scenes, metrics=["beauty"], device="cpu", progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        compare(scene_model, scenes, methods=["lime"], device="cpu", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            compare(scene_model, scenes, device="cuda", progress=False)


def test_every_method_gives_pixel_maps(scene_model):
    x = torch.randn(2, 3, 64, 64)
    for method in build_methods(scene_model, METHOD_KEYS, ig_steps=3):
        maps = method(x, torch.tensor([1, 2]))
        assert maps.shape == (2, 64, 64) and (maps >= 0).all(), method.name
