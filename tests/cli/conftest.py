"""Fixtures of the command line's tests: a tiny classifier and backbone saved with image
processors, a photo, an image folder, and a guard that no model loads."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from captum_gmar import load_reference_model, loading


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny 64 px multi-label ViT saved with an image processor that does not resize, as
    the bundled reference model's does."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=64,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=10,
        problem_type="multi_label_classification",
        id2label={
            i: name
            for i, name in enumerate(
                ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
            )
        },
    )
    path = tmp_path_factory.mktemp("model")
    transformers.ViTForImageClassification(config).save_pretrained(path)
    transformers.ViTImageProcessor(do_resize=False, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    return str(path)


@pytest.fixture
def photo(tmp_path):
    """A 300 x 200 px RGB photo."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if a model is loaded: argument and file errors must come first."""

    def refuse(spec, embedding=False):
        raise AssertionError(f"the model {spec} was loaded")

    monkeypatch.setattr(loading, "load_model", refuse)


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of the test model (one named in lower case), four images of another size
    than the model's; masks for the Trouser ones."""
    rng = np.random.default_rng(0)
    for i, label in enumerate(["Trouser", "Trouser", "bag", "bag"]):
        for base, array in (
            (tmp_path / "data", rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)),
            (tmp_path / "data" / "masks", np.eye(50, 70, dtype=np.uint8)),
        ):
            if base.name == "masks" and label != "Trouser":
                continue
            (base / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(base / label / f"{i}.png")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def backbone_dir(tmp_path_factory):
    """A tiny DINOv2 backbone (no head) saved with an image processor that resizes to 32 px."""
    torch.manual_seed(0)
    config = transformers.Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2)
    path = tmp_path_factory.mktemp("backbone")
    transformers.Dinov2Model(config).save_pretrained(path)
    transformers.BitImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> str:
    """The bundled vit-tiny with one weight tensor changed, saved with its image processor:
    a model folder that loads like the maps' model but is not it."""
    model = load_reference_model()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    path = tmp_path_factory.mktemp("other")
    model.save_pretrained(path)
    shutil.copy(Path(load_reference_model().name_or_path) / "preprocessor_config.json", path)
    return str(path)
