"""Shared fixtures: tiny, randomly initialised models of every supported class, saved and
loaded back with ``from_pretrained`` as users load them (default sdpa attention or eager).

Random initialisation leaves class tokens, register tokens and BEiT's relative position
bias at zero and the attention nearly uniform, which would hide read-out and capture
bugs; the fixtures randomise every special token, position embedding and position bias,
and sharpen the attention.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import transformers  # after tiny_models, which makes torchvision importable first
from tiny_models import IMAGE_SIZE, TINY_MODELS, ZERO_SHOT_MODELS, import_timm, randomise_


def _save(make_config, cls_name: str, path) -> str:
    torch.manual_seed(0)
    model = randomise_(getattr(transformers, cls_name)(make_config()))
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, str]:
    """One saved tiny model per supported class (seeded), as ``save_pretrained`` writes it
    (TimmWrapper only where timm is installed)."""
    dirs = {}
    for name, make_config in {**TINY_MODELS, **ZERO_SHOT_MODELS}.items():
        if name == "TimmWrapperForImageClassification" and importlib.util.find_spec("timm") is None:
            continue
        dirs[name] = _save(make_config, name, tmp_path_factory.mktemp(name))
    return dirs


@pytest.fixture(scope="session")
def load_tiny(tiny_model_dirs):
    """``load_tiny(name, attn="sdpa", dtype=torch.float32)`` loads a tiny model in eval mode."""

    def load(name: str, attn: str = "sdpa", dtype: torch.dtype = torch.float32):
        cls = getattr(transformers, name)
        if name == "TimmWrapperForImageClassification":
            import_timm()  # skips where timm is missing
            # timm ignores attn_implementation (4.57 refuses "sdpa" for it): its switch is fused_attn
            model = cls.from_pretrained(tiny_model_dirs[name], dtype=dtype)
            for module in model.modules():
                if hasattr(module, "fused_attn"):
                    module.fused_attn = attn != "eager"
            return model.eval()
        model = cls.from_pretrained(tiny_model_dirs[name], attn_implementation=attn, dtype=dtype)
        return model.eval()

    return load


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test drew are closed after it (pyplot holds each until closed); the
    package's own figure files close theirs, which tests/evaluation/test_results_folder.py checks."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def images() -> torch.Tensor:
    """A seeded batch of 3 images, ``(3, 3, 32, 32)``."""
    return torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache in place of the user's; ``hub_cache(repo_id, folder)``
    puts the files of ``folder`` in it as ``hf download repo_id`` would (one snapshot,
    ``refs/main`` naming it) and returns the snapshot's path."""
    import shutil

    import huggingface_hub.constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    def add(repo_id: str, folder) -> str:
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        snapshot = repo / "snapshots" / commit
        shutil.copytree(folder, snapshot)
        return str(snapshot)

    return add


@pytest.fixture(scope="session")
def fashion_mnist() -> Path:
    """The Fashion-MNIST folder the scenes are drawn from, or a skip saying how to get it."""
    from captum_gmar.imagedata.fashion_mnist import resolve_data_dir

    try:
        return Path(resolve_data_dir())
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def opencv_photos() -> Path:
    """The folder of OpenCV's sample photos (Debian's opencv-doc), or a skip saying how to get it."""
    from captum_gmar.imagedata.photos import OPENCV_DATA_DIR, OPENCV_ENV_VAR, opencv_data_dir

    folder = opencv_data_dir()
    if folder is None:
        pytest.skip(
            f"OpenCV's sample photos were not found: `apt-get install opencv-doc` (files land in {OPENCV_DATA_DIR}) or set {OPENCV_ENV_VAR}"
        )
    return folder
