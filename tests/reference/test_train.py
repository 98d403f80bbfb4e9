"""Smoke run of the training script (a few steps, a few evaluation scenes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_checks import needs_data
from transformers import AutoImageProcessor, ViTForImageClassification

from captum_gmar.imagedata import to_pixel_values
from captum_gmar.reference import load_sample_scenes
from tools.reference.train import _batch, build_model, main


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("workers", ["1", "2"])
def test_smoke_run(tmp_path: Path, workers: str) -> None:
    out = tmp_path / "model"
    args = ["--out", str(out), "--steps", "3", "--batch-size", "8", "--eval-scenes", "20", "--workers", workers]
    tiny = ["--hidden-size", "32", "--heads", "2", "--mlp-dim", "64", "--layers", "2"]
    threads = torch.get_num_threads()
    with torch.random.fork_rng():  # training seeds the global RNG
        assert main([*args, *tiny]) == 0
    assert torch.get_num_threads() == threads
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 20 and 0.0 <= metrics["top1_one_item"] <= 1.0
    card = (out / "README.md").read_text()
    assert "--steps 3" in card and "top-1" in card
    assert f"{workers} data-parallel worker(s)" in card

    model = ViTForImageClassification.from_pretrained(out, local_files_only=True).eval()
    assert model.config.num_hidden_layers == 2 and model.config.num_labels == 10
    processor = AutoImageProcessor.from_pretrained(out, local_files_only=True)
    images = load_sample_scenes().images[:2]
    x = processor(images=list(images), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(x, to_pixel_values(images), atol=1e-5, rtol=0)
    with torch.no_grad():
        assert model(pixel_values=x).logits.shape == (2, 10)


def test_position_embeddings_start_as_2d_sincos_codes() -> None:
    model = build_model(hidden_size=32, num_layers=1, num_heads=2, mlp_dim=32)
    pos = model.vit.embeddings.position_embeddings[0].detach()  # (1 + 8 * 8, 32)
    assert pos.shape == (65, 32) and (pos[0] == 0).all()
    rows, cols = torch.arange(64) // 8, torch.arange(64) % 8
    # Channel 0 is sin(row), channel 8 cos(row), 16 sin(col), 24 cos(col) (frequency 1).
    torch.testing.assert_close(pos[1:, 0], 0.5 * rows.float().sin())
    torch.testing.assert_close(pos[1:, 8], 0.5 * rows.float().cos())
    torch.testing.assert_close(pos[1:, 16], 0.5 * cols.float().sin())
    torch.testing.assert_close(pos[1:, 24], 0.5 * cols.float().cos())
    assert len({tuple(row.tolist()) for row in pos[1:]}) == 64  # every patch has its own code


def test_hidden_size_must_split_into_four_code_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        build_model(hidden_size=30, num_layers=1, num_heads=2, mlp_dim=32)


@needs_data
def test_batch_puts_the_two_item_scenes_last() -> None:
    pixel_values, targets = _batch(6, 4, np.random.default_rng(0), None)
    assert pixel_values.shape == (6, 3, 64, 64)
    assert targets.sum(dim=1).tolist() == [1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "3"], "multiple of --workers"),
        (["--workers", "0"], "at least 1"),
        (["--two-item-share", "1.5"], "two-item-share"),
    ],
)
def test_bad_options_are_refused_before_training(tmp_path: Path, flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        main(["--out", str(tmp_path / "model"), "--batch-size", "8", *flags])
    assert not (tmp_path / "model").exists()
