"""The DINOv2 shortcut probe's trainer: the scenes its blocks are tuned on, and the tuning
changing the last blocks alone (a stand-in backbone of two layers, two steps)."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def test_tuning_changes_the_last_blocks_and_head_and_nothing_before(
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


def test_more_tuned_blocks_than_the_backbone_has_are_refused() -> None:
    args = argparse.Namespace(tune_blocks=13)
    with pytest.raises(ValueError, match=r"--tune-blocks must be in \[0, 12\], got 13"):
        train_dinov2.train(args, "test")
