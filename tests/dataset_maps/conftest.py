"""Fixtures of the data-set job's tests: a tiny classifier with its image processor, and a
folder of class folders of small images."""

from __future__ import annotations

import pytest
import torch
import transformers
from maps_helpers import CLASSES, write_images
from tiny_models import COMMON


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny 32 px ViT with five named classes, saved with an image processor that keeps 32 px."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier")
    config = transformers.ViTConfig(**COMMON, id2label=CLASSES, label2id={v: k for k, v in CLASSES.items()})
    transformers.ViTForImageClassification(config).save_pretrained(path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def model(model_dir):
    return transformers.ViTForImageClassification.from_pretrained(model_dir).eval()


@pytest.fixture(scope="session")
def processor(model_dir):
    return transformers.AutoImageProcessor.from_pretrained(model_dir)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    write_images(folder, 10)
    return folder
