"""Shared fixtures: tiny, randomly initialised models of every supported class, saved and
loaded back with ``from_pretrained`` as users load them (default sdpa attention or eager)."""

from __future__ import annotations

import pytest
import torch
import transformers

IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_LABELS = 5
COMMON = dict(
    image_size=IMAGE_SIZE,
    patch_size=PATCH_SIZE,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_labels=NUM_LABELS,
)

#: class name -> (config class, extra config arguments)
TINY_MODELS = {
    "ViTForImageClassification": ("ViTConfig", dict(intermediate_size=64)),
    "DeiTForImageClassification": ("DeiTConfig", dict(intermediate_size=64)),
    "DeiTForImageClassificationWithTeacher": ("DeiTConfig", dict(intermediate_size=64)),
    "Dinov2ForImageClassification": ("Dinov2Config", dict(mlp_ratio=2)),
    "Dinov2WithRegistersForImageClassification": ("Dinov2WithRegistersConfig", dict(mlp_ratio=2, num_register_tokens=4)),
}

#: special tokens before the patches, per class
PREFIX_TOKENS = {
    "ViTForImageClassification": 1,
    "DeiTForImageClassification": 2,
    "DeiTForImageClassificationWithTeacher": 2,
    "Dinov2ForImageClassification": 1,
    "Dinov2WithRegistersForImageClassification": 5,
}

MODEL_NAMES = list(TINY_MODELS)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, str]:
    """One saved tiny model per supported class (seeded), as ``save_pretrained`` writes it."""
    dirs = {}
    for name, (config_name, extra) in TINY_MODELS.items():
        torch.manual_seed(0)
        config = getattr(transformers, config_name)(**COMMON, **extra)
        model = getattr(transformers, name)(config)
        # Random init leaves attention nearly uniform; sharpen it so that methods differ.
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if any(key in param_name for key in ("q_proj", "k_proj", "query", "key")) and param.dim() == 2:
                    param.mul_(8.0)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        dirs[name] = str(path)
    return dirs


@pytest.fixture(scope="session")
def load_tiny(tiny_model_dirs):
    """``load_tiny(name, attn="sdpa", dtype=torch.float32)`` loads a tiny model in eval mode."""

    def load(name: str, attn: str = "sdpa", dtype: torch.dtype = torch.float32):
        cls = getattr(transformers, name)
        model = cls.from_pretrained(tiny_model_dirs[name], attn_implementation=attn, dtype=dtype)
        return model.eval()

    return load


@pytest.fixture
def images() -> torch.Tensor:
    """A seeded batch of 3 images, ``(3, 3, 32, 32)``."""
    return torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
