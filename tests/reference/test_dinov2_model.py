"""The ``dinov2-small`` reference classifier: loading, image processor, cache folder,
bundled scenes, accuracy, GMAR on it, and the training script."""

from __future__ import annotations

import copy
import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference_checks import assert_accuracy_as_published, needs_data, needs_extra
from reference_methods import reference_gmar
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, Dinov2ForImageClassification

from captum_gmar import GMARAttribution
from captum_gmar.imagedata import CLASS_NAMES
from captum_gmar.reference import load_reference_model, load_sample_scenes
from captum_gmar.reference.dinov2_classifier import HEAD_DIR, HEAD_FILE, MODEL_FILES, model_dir
from captum_gmar.reference.inputs import load_image_processor, scene_pixel_values
from captum_gmar.reference.samples import make_sample_scenes
from tools.reference.train_dinov2 import draw_scenes, fine_tune, main

# ImageNet statistics, as documented for the image processor.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@pytest.fixture(scope="module")
def model(module_cache: Path) -> Dinov2ForImageClassification:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_reference_model("dinov2-small")


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="vit-tiny, dinov2-small"):
        load_reference_model("dinov2-base")
    with pytest.raises(ValueError, match="vit-tiny, dinov2-small"):
        load_sample_scenes("vit-base")


def test_shipped_head_is_small() -> None:
    names = {p.name for p in HEAD_DIR.iterdir()}
    assert {*MODEL_FILES, "metrics.json", "README.md", "samples.npz"} <= names
    assert sum(p.stat().st_size for p in HEAD_DIR.iterdir()) < 50 * 2**20
    # The head and the tuned blocks and LayerNorm, under the names save_pretrained writes.
    blocks = json.loads((HEAD_DIR / "metrics.json").read_text())["tune_blocks"]
    prefixes = {"classifier.", *(("dinov2.layernorm.",) if blocks else ())}
    prefixes |= {f"dinov2.encoder.layer.{i}." for i in range(12 - blocks, 12)}
    names = set(load_file(HEAD_DIR / HEAD_FILE))
    assert {"classifier.weight", "classifier.bias"} <= names
    assert all(name.startswith(tuple(prefixes)) for name in names)
    assert all(any(name.startswith(prefix) for name in names) for prefix in prefixes)


@needs_extra
def test_loads_as_a_dinov2_classifier_from_a_complete_folder(model: Dinov2ForImageClassification, module_cache: Path) -> None:
    assert isinstance(model, Dinov2ForImageClassification) and not model.training
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (12, 6, 384)
    assert config.problem_type == "multi_label_classification"
    assert [config.id2label[i] for i in range(10)] == list(CLASS_NAMES)
    folder = Path(model.name_or_path)
    assert folder.parent == module_cache
    assert {"config.json", "preprocessor_config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}


@needs_extra
def test_image_processor_resizes_and_normalises_a_scene(model: Dinov2ForImageClassification) -> None:
    processor = AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    size = processor.size["height"]
    assert size % model.config.patch_size == 0
    images = load_sample_scenes("dinov2-small").images[:2]  # uint8 (2, 64, 64, 3)
    x = processor(images=list(images), return_tensors="pt")["pixel_values"]
    assert x.shape == (2, 3, size, size) and x.dtype == torch.float32
    expected = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=size, mode="bilinear")
    # PIL rounds the resized image to whole grey levels: allow 1.5 levels.
    torch.testing.assert_close(x, (expected / 255 - MEAN) / STD, atol=1.5 / 255 / 0.224, rtol=0)


@needs_extra
def test_cache_folder_follows_the_head(model: Dinov2ForImageClassification, tmp_path: Path) -> None:
    for name in MODEL_FILES:
        shutil.copyfile(HEAD_DIR / name, tmp_path / name)
    assert model_dir(tmp_path) == Path(model.name_or_path)  # same head, same folder, no rebuild

    head = load_file(tmp_path / HEAD_FILE)
    head["classifier.bias"] = head["classifier.bias"] + 1.0
    save_file(head, tmp_path / HEAD_FILE, metadata={"format": "pt"})
    rebuilt = model_dir(tmp_path)
    assert rebuilt != Path(model.name_or_path)
    changed = Dinov2ForImageClassification.from_pretrained(rebuilt, local_files_only=True)
    torch.testing.assert_close(changed.classifier.bias, model.classifier.bias + 1.0)


@needs_extra
def test_logits_on_its_sample_scenes(model: Dinov2ForImageClassification) -> None:
    scenes = load_sample_scenes("dinov2-small")
    with torch.no_grad():
        logits = model(pixel_values=scene_pixel_values(load_image_processor(model), scenes.images)).logits
    assert logits.shape == (8, 10)
    top2 = logits.topk(2, dim=-1).indices.numpy()
    one, two = scenes.num_items == 1, scenes.num_items == 2
    assert (top2[one, 0] == scenes.labels[one, 0]).all()
    assert (np.sort(top2[two], 1) == np.sort(scenes.labels[two], 1)).all()


@pytest.mark.slow
@needs_extra
@needs_data
def test_sample_scenes_are_reproducible(model: Dinov2ForImageClassification) -> None:
    rebuilt, bundled = make_sample_scenes(model), load_sample_scenes("dinov2-small")
    for field in ("images", "labels", "masks", "num_items"):
        np.testing.assert_array_equal(getattr(rebuilt, field), getattr(bundled, field))


@pytest.mark.slow
@needs_extra
@needs_data
def test_accuracy_as_published(model: Dinov2ForImageClassification) -> None:
    # 300 scenes per kind, as the backbone costs about 40 ms a scene on one CPU core.
    assert_accuracy_as_published(model, HEAD_DIR / "metrics.json", n=300)


@needs_extra
def test_gmar_matches_the_straightforward_eager_implementation(model: Dinov2ForImageClassification) -> None:
    eager = load_reference_model("dinov2-small", attn_implementation="eager")
    scenes = load_sample_scenes("dinov2-small")[[0, 6]]
    x = scene_pixel_values(load_image_processor(model), scenes.images)
    targets = torch.from_numpy(scenes.labels[:, 0])
    expected, expected_weights = reference_gmar(eager, x, targets, prefix=1)
    maps, weights = GMARAttribution(model).attribute(x, target=targets, output="patches", return_head_weights=True)
    assert maps.flatten(1).shape == expected.shape == (2, (x.shape[-1] // 14) ** 2)
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-4, atol=1e-6)


@needs_extra
@needs_data
def test_fine_tuning_changes_only_the_tuned_blocks(model: Dinov2ForImageClassification) -> None:
    tuned = copy.deepcopy(model)
    flags = {name: p.requires_grad for name, p in tuned.named_parameters()}
    draw = functools.partial(draw_scenes, share=0.5, rng=np.random.default_rng(0), data_dir=None)
    fine_tune(tuned, load_image_processor(model), 1, steps=2, batch_size=2, draw=draw, lr=1e-3, weight_decay=0.05)
    before, after = dict(model.named_parameters()), dict(tuned.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    last = f"dinov2.encoder.layer.{model.config.num_hidden_layers - 1}."
    assert changed and all(name.startswith((last, "dinov2.layernorm.", "classifier.")) for name in changed)
    assert any(name.startswith(last) for name in changed)
    assert {name: p.requires_grad for name, p in tuned.named_parameters()} == flags
    assert not tuned.training


@pytest.mark.slow
@needs_extra
@needs_data
def test_training_smoke_run(module_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "head"
    args = ["--out", str(out), "--train-scenes", "12", "--eval-scenes", "5", "--max-iter", "5", "--threads", "1",
            "--tune-blocks", "1", "--steps", "2", "--batch-size", "4"]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    assert {*MODEL_FILES, "metrics.json", "README.md"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 5 and metrics["tune_blocks"] == 1 and 0.0 <= metrics["top1_one_item"] <= 1.0
    assert "--train-scenes 12" in (out / "README.md").read_text()
    trained = Dinov2ForImageClassification.from_pretrained(model_dir(out), local_files_only=True)
    shipped = load_file(out / HEAD_FILE)
    torch.testing.assert_close(trained.classifier.weight, shipped["classifier.weight"])
    # The tuned block's weights come from the shipped float16 file, not the backbone.
    key = "dinov2.encoder.layer.11.mlp.fc1.weight"
    assert shipped[key].dtype == torch.float16
    torch.testing.assert_close(trained.dinov2.encoder.layer[11].mlp.fc1.weight, shipped[key].float())


def test_training_refuses_a_size_off_the_patch_grid(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 14"):
        main(["--out", str(tmp_path / "head"), "--size", "100"])
    assert not (tmp_path / "head").exists()


@pytest.mark.slow
@needs_extra
@needs_data
def test_command_line_compare_on_dinov2(module_cache: Path, tmp_path: Path) -> None:
    """``captum-gmar compare --model dinov2-small``: the scenes go through the model's own
    processor (112 px), so the masks are scored at that size."""
    from captum_gmar.cli import main
    from captum_gmar.evaluation import read_csv

    out = tmp_path / "out"
    argv = [
        "compare",
        "--model",
        "dinov2-small",
        "--scenes",
        "2",
        "--methods",
        "gmar-l1,rollout",
        "--metrics",
        "localisation",
        "--device",
        "cpu",
        "--figure-rows",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    rows = list(read_csv(out / "results.csv"))
    assert rows and all(0.0 <= float(row["mass_inside"]) <= 1.0 for row in rows)
    assert (out / "comparison.png").is_file() and "dinov2-small" in (out / "summary.md").read_text()
