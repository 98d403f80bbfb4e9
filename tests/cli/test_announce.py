"""Every command that loads a model names it, what it was trained on and its classes in
its first line of output, before the model loads; a bundled model asked to explain images
far larger than it was trained on warns."""

import numpy as np
import pytest
from PIL import Image

from captum_gmar import loading
from captum_gmar.cli import main


class Loaded(Exception):
    """Raised where the model would load: what was printed before is the announcement."""


@pytest.fixture
def stop_at_loading(monkeypatch):
    def stop(spec, embedding=False):
        raise Loaded(spec)

    monkeypatch.setattr(loading, "load_model", stop)


def first_line(capsys, argv):
    with pytest.raises(Loaded):
        main(argv)
    captured = capsys.readouterr()
    return captured.out.splitlines()[0], captured.err


@pytest.mark.usefixtures("stop_at_loading")
def test_explain_names_the_bundled_model_and_warns_on_a_photo(tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((3024 // 8, 4032 // 8, 3), dtype=np.uint8)).save(photo)  # 504 x 378 px: far above vit-tiny's 64
    line, err = first_line(capsys, ["explain", str(photo), "--out", str(tmp_path / "fig.png")])
    assert line.startswith("model: vit-tiny (ViTForImageClassification, bundled, trained on 64 px Fashion-MNIST scenes")
    assert "10 classes: T-shirt/top, Trouser" in line
    assert "warning: the images are 378 px and more on their shorter side, but vit-tiny was trained on 64 px" in err


@pytest.mark.usefixtures("stop_at_loading")
def test_explain_on_a_folder_names_the_model_and_warns_from_the_images_headers(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((300, 400, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    line, err = first_line(capsys, ["explain", str(folder), "--out", str(tmp_path / "maps")])
    assert line.startswith("model: vit-tiny (") and "10 classes:" in line
    assert "warning: the images are 300 px and more" in err


@pytest.mark.usefixtures("stop_at_loading")
def test_explain_names_the_users_model_without_a_warning(model_dir, image_folder, tmp_path, capsys):
    line, err = first_line(capsys, ["explain", str(image_folder), "--model", model_dir, "--out", str(tmp_path / "maps")])
    assert line.startswith(f"model: {model_dir.split('/')[-1]} (ViTForImageClassification); 10 classes: T-shirt/top,")
    assert "warning" not in err


@pytest.mark.usefixtures("stop_at_loading")
def test_explain_names_the_references_of_a_similarity(backbone_dir, photo, tmp_path, capsys):
    line, _ = first_line(capsys, ["explain", photo, "--model", backbone_dir, "--similar-to", photo, "--out", str(tmp_path / "f.png")])
    assert line == f"model: {backbone_dir.split('/')[-1]} (Dinov2Model); 1 references: photo.jpg"


@pytest.mark.usefixtures("stop_at_loading")
def test_compare_and_demo_name_the_model_first(model_dir, image_folder, tmp_path, capsys):
    line, _ = first_line(capsys, ["compare", "--model", model_dir, "--data", str(image_folder), "--out", str(tmp_path / "c")])
    assert line.startswith(f"model: {model_dir.split('/')[-1]} (ViTForImageClassification); 10 classes:")
    line, _ = first_line(capsys, ["demo", "--out", str(tmp_path / "d")])
    assert line.startswith("model: vit-tiny (ViTForImageClassification, bundled, trained on 64 px")
