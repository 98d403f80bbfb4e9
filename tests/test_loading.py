"""Model resolution from Python: a reference model, a saved folder or a cached hub id."""

import json

import pytest

from captum_gmar.loading import hub_snapshot, load_model, model_folder, model_name


def test_a_reference_model_is_the_default(tmp_path):
    assert (model_folder(None) / "config.json").is_file() and model_folder(None) == model_folder("vit-tiny")
    assert model_name(None) == "vit-tiny" and model_name(str(tmp_path)) == tmp_path.name and model_name("org/model") == "org/model"


def test_wrong_models_are_errors_that_say_what_to_change(tmp_path):
    with pytest.raises(FileNotFoundError, match="nor a model in the Hugging Face cache"):
        model_folder(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"]}))
    with pytest.raises(FileNotFoundError, match="has a config.json but no weights"):
        model_folder(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert model_folder(str(tmp_path)) == tmp_path
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["SwinForImageClassification"]}))
    with pytest.raises(ValueError, match="windowed attention has no global map to roll out"):
        model_folder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Dinov2Model"]}))
    with pytest.raises(ValueError, match="returns an embedding, not classes"):
        model_folder(str(tmp_path))
    assert model_folder(str(tmp_path), embedding=True) == tmp_path
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read"):
        model_folder(str(tmp_path))


def test_nothing_is_downloaded():
    assert hub_snapshot("no-such-org/no-such-model") is None and hub_snapshot("not a model id") is None


def test_a_saved_classifier_loads_or_gives_its_backbone(tiny_model_dirs):
    folder = tiny_model_dirs["ViTForImageClassification"]
    model = load_model(folder)
    assert type(model).__name__ == "ViTForImageClassification" and not model.training
    assert type(load_model(folder, embedding=True)).__name__ == "ViTModel"
