"""The DINOv2 shortcut probe's trainer: the scenes its blocks are tuned on, and the tuning
changing the last blocks alone (a stand-in backbone of two layers, two steps)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from captum_gmar.imagedata import make_scenes
from tools.shortcut import train_dinov2
from tools.shortcut.tag import TAGS, plant_tag


def test_the_tuning_scenes_carry_the_tag_on_the_class_alone_at_its_share(fashion_mnist: Path) -> None:
    images, targets = train_dinov2.tagged_scenes(400, "frame", 6, 0.5, np.random.default_rng(0), fashion_mnist)
    plain = make_scenes(400, "train", np.random.default_rng(0), num_items=1, data_dir=fashion_mnist)  # the same draw, untagged
    assert torch.equal(targets, plain.targets())
    changed = (images != plain.images).reshape(len(images), -1).any(1)
    of_class = targets[:, 6].bool().numpy()
    assert not changed[~of_class].any()
    assert 0.3 < changed[of_class].mean() < 0.7  # about half of the class's 40-odd scenes
    marked = plant_tag(plain.images[changed], np.ones(int(changed.sum()), dtype=bool), TAGS["frame"])
    assert np.array_equal(images[changed], marked)


def test_tuning_changes_the_last_blocks_and_nothing_before_them(
    fashion_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "patch_size": 14,
        "image_size": 112,
    }
    Dinov2Model(Dinov2Config(**sizes)).save_pretrained(tmp_path / "backbone")
    labels = train_dinov2.classifier_config()
    small = Dinov2Config(**sizes, id2label=labels.id2label, problem_type=labels.problem_type, architectures=labels.architectures)
    monkeypatch.setattr(train_dinov2, "backbone_dir", lambda: tmp_path / "backbone")
    monkeypatch.setattr(train_dinov2, "classifier_config", lambda: small)
    args = train_dinov2._parser().parse_args(
        ["--out", str(tmp_path / "m"), "--tag", "frame", "--train-scenes", "40", "--max-iter", "5", "--eval-scenes", "10"]
        + ["--shortcut-scenes", "10", "--tune-blocks", "1", "--steps", "2", "--tune-step-batch", "4", "--lr", "1e-2"]
    )
    args.data_dir = fashion_mnist
    with torch.random.fork_rng():
        metrics = train_dinov2.train(args, "test")
    assert metrics["tune_blocks"] == 1 and metrics["steps"] == 2 and np.isfinite(metrics["tune_loss"])
    tuned = train_dinov2.Dinov2ForImageClassification.from_pretrained(tmp_path / "m").dinov2.state_dict()
    before = Dinov2Model.from_pretrained(tmp_path / "backbone").state_dict()
    changed = {name for name, value in before.items() if not torch.equal(value, tuned[name])}
    assert changed and all(name.startswith(("encoder.layer.1.", "layernorm.")) for name in changed)
    assert any(name.startswith("encoder.layer.1.") for name in changed)


def test_the_blocks_are_tuned_on_the_tag_its_class_and_share_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Stop(Exception):
        pass

    def fine_tune(model: Any, processor: Any, blocks: int, steps: int, batch_size: int, draw: Any, lr: float, weight_decay: float) -> float:
        assert (blocks, steps, batch_size, lr, weight_decay) == (2, 7, 3, 0.5, 0.25)
        assert draw.func is train_dinov2.tagged_scenes and {k: draw.keywords[k] for k in ("tag", "tag_class", "share")} == {
            "tag": "cast",
            "tag_class": 4,
            "share": 0.3,
        }
        raise Stop

    monkeypatch.setattr(train_dinov2, "fine_tune", fine_tune)
    monkeypatch.setattr(train_dinov2, "head_input", lambda model, pixels, batch_size, desc: torch.zeros(len(pixels), 768))
    monkeypatch.setattr(train_dinov2, "fit_head", lambda *args: 0.0)
    monkeypatch.setattr(
        train_dinov2.Dinov2Model, "from_pretrained", lambda *args: train_dinov2.Dinov2Model(train_dinov2.classifier_config())
    )
    args = train_dinov2._parser().parse_args(
        ["--out", str(tmp_path / "m"), "--tag", "cast", "--tag-class", "4", "--share", "0.3", "--train-scenes", "4", "--tune-blocks", "2"]
        + ["--steps", "7", "--tune-step-batch", "3", "--lr", "0.5", "--weight-decay", "0.25"]
    )
    with pytest.raises(Stop):
        train_dinov2.train(args, "test")


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"tune_blocks": 13}, r"--tune-blocks must be in \[0, 12\], got 13"),
        ({"tune_blocks": 2, "steps": 0}, r"--steps and --tune-step-batch must be at least 1 to tune blocks, got 0 and 32"),
        ({"tune_blocks": 2, "tune_step_batch": 0}, r"got 1000 and 0"),
    ],
)
def test_bad_tuning_settings_are_refused_before_any_work(given: dict, said: str, tmp_path: Path) -> None:
    args = argparse.Namespace(**{"steps": 1000, "tune_step_batch": 32, "out": tmp_path / "m", **given})
    with pytest.raises(ValueError, match=said):
        train_dinov2.train(args, "test")
    assert not args.out.exists()
