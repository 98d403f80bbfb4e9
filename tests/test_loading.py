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


def test_a_model_is_described_with_what_it_was_trained_on_and_its_classes(tmp_path):
    from captum_gmar.loading import class_names, describe_model, read_config

    config = read_config(model_folder(None))
    line = describe_model(None, config, class_names(config))
    assert line.startswith("model: vit-tiny (ViTForImageClassification, bundled, trained on 64 px Fashion-MNIST scenes")
    assert line.endswith("; 10 classes: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, ...")
    own = {"architectures": ["ViTForImageClassification"], "id2label": {"1": "dog", "0": "cat"}}
    assert (
        describe_model(str(tmp_path), own, class_names(own)) == f"model: {tmp_path.name} (ViTForImageClassification); 2 classes: cat, dog"
    )
    assert describe_model("dinov2-small-backbone", {"architectures": ["Dinov2Model"]}, ["a.jpg"], "references").endswith(
        "; 1 references: a.jpg"
    )


def test_a_reference_model_warns_only_on_images_far_larger_than_it_was_trained_on(tmp_path):
    from captum_gmar.loading import FAR_LARGER, trained_on_warning

    assert trained_on_warning("vit-tiny", [(FAR_LARGER * 64 - 1, 4000)]) is None  # the shorter side decides
    assert trained_on_warning(None, [(4032, 3024), (100, 4000)]) is None  # one image near the model's size: no warning
    warning = trained_on_warning("vit-tiny", [(4032, 3024), (640, 480)])
    assert (
        warning is not None and "480 px and more" in warning and "trained on 64 px Fashion-MNIST scenes" in warning and "--model" in warning
    )
    assert trained_on_warning("dinov2-small", [(336, 336)]) is not None and trained_on_warning("dinov2-small", [(335, 400)]) is None
    assert trained_on_warning("dinov2-small-backbone", [(4000, 4000)]) is None  # pretrained on photos of every size
    assert trained_on_warning(str(tmp_path), [(4000, 4000)]) is None  # the user's own model: the package cannot know
    assert trained_on_warning("vit-tiny", []) is None
