"""The shipped reference model: offline loading, outputs, bundled scenes, accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_checks import assert_accuracy_as_published, needs_data
from transformers import AutoImageProcessor, ViTForImageClassification

from captum_gmar.imagedata import CLASS_NAMES, Scenes, to_pixel_values
from captum_gmar.reference import (
    REFERENCE_MODEL_DIR,
    load_reference_model,
    load_sample_scenes,
)
from captum_gmar.reference.samples import make_sample_scenes


@pytest.fixture(scope="module")
def model() -> ViTForImageClassification:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_reference_model()


def test_shipped_files_are_small() -> None:
    names = {p.name for p in REFERENCE_MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= names
    assert sum(p.stat().st_size for p in REFERENCE_MODEL_DIR.iterdir()) < 8 * 2**20


def test_loads_offline_in_eval_mode(model: ViTForImageClassification) -> None:
    assert isinstance(model, ViTForImageClassification)
    assert not model.training
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[i] for i in range(10)] == list(CLASS_NAMES)
    assert model.config.image_size == 64


def test_logits_on_sample_scenes(model: ViTForImageClassification) -> None:
    scenes = load_sample_scenes()
    with torch.no_grad():
        logits = model(pixel_values=to_pixel_values(scenes.images)).logits
    assert logits.shape == (len(scenes), 10)
    top2 = logits.topk(2, dim=-1).indices.numpy()
    one, two = scenes.num_items == 1, scenes.num_items == 2
    # The bundled scenes were selected as ones the model gets right.
    assert (top2[one, 0] == scenes.labels[one, 0]).all()
    assert (np.sort(top2[two], 1) == np.sort(scenes.labels[two], 1)).all()


def test_sample_scenes_contents() -> None:
    s = load_sample_scenes()
    assert isinstance(s, Scenes) and len(s) == 8
    assert s.num_items.tolist() == [1] * 4 + [2] * 4
    assert s.images.shape == (8, 64, 64, 3) and s.images.dtype == np.uint8
    assert s.masks.dtype == bool
    for n, labels, masks in zip(s.num_items, s.labels, s.masks):
        assert masks[:n].any(axis=(1, 2)).all() and not masks[n:].any()
        assert (labels[n:] == -1).all() and len(set(labels[:n].tolist())) == n


@needs_data
def test_sample_scenes_are_reproducible(model: ViTForImageClassification) -> None:
    rebuilt, bundled = make_sample_scenes(model), load_sample_scenes()
    for field in ("images", "labels", "masks", "num_items"):
        np.testing.assert_array_equal(getattr(rebuilt, field), getattr(bundled, field))


def test_processor_matches_to_pixel_values() -> None:
    processor = AutoImageProcessor.from_pretrained(REFERENCE_MODEL_DIR, local_files_only=True)
    images = load_sample_scenes().images[:2]
    out = processor(images=list(images), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(out, to_pixel_values(images), atol=1e-5, rtol=0)


def test_processor_resizes_a_photo_to_the_model_size() -> None:
    """As for any Hugging Face model, the processor saved with the model makes its input
    from a photo of any size (issue 13: it used to pass a 300 x 451 photo through as is)."""
    processor = AutoImageProcessor.from_pretrained(REFERENCE_MODEL_DIR, local_files_only=True)
    photo = np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    out = processor(images=photo, return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 3, 64, 64)


def test_eager_attention_weights() -> None:
    model = load_reference_model(attn_implementation="eager", dtype=torch.float64)
    x = to_pixel_values(load_sample_scenes().images[:2]).double()
    with torch.no_grad():
        out = model(pixel_values=x, output_attentions=True)
    heads, tokens = model.config.num_attention_heads, (64 // model.config.patch_size) ** 2 + 1
    assert len(out.attentions) == model.config.num_hidden_layers
    assert out.attentions[0].shape == (2, heads, tokens, tokens)
    torch.testing.assert_close(out.attentions[-1].sum(-1), torch.ones(2, heads, tokens, dtype=torch.float64))


@pytest.mark.slow
@needs_data
def test_accuracy_as_published(model: ViTForImageClassification) -> None:
    # 1000 scenes per kind: a few seconds; three standard errors are 3.3 and 4.4 points.
    assert_accuracy_as_published(model, REFERENCE_MODEL_DIR / "metrics.json", n=1000)
