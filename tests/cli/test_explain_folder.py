"""``captum-gmar explain FOLDER``: every image explained, the maps kept with their index, a
gallery page and overlays; resume and refusals before any work."""

import csv
import json

import numpy as np
import pytest
from cli_helpers import run
from PIL import Image

from captum_gmar import load_maps
from captum_gmar.cli import main


def test_a_folder_is_explained_into_a_maps_folder(model_dir, image_folder, tmp_path, capsys):
    out = tmp_path / "maps"
    argv = ["explain", str(image_folder), "--model", model_dir, "--methods", "gmar-l1,rollout", "--out", str(out), "--overlays"]
    assert main([*argv, "--target", "label", "--gallery", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 8 maps of 4 images to {out / 'shards'}" in printed and "report.html (the first 2 images)" in printed
    with open(out / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(row["label_name"], row["target_name"]) for row in rows} == {("Trouser", "Trouser"), ("Bag", "Bag")}
    assert {row["shape"] for row in rows} == {"8x8"}  # the 64 px model's patch grid
    assert len(list((out / "overlays").glob("*.png"))) == 8
    page = (out / "report.html").read_text()
    assert "2 more were explained but are not shown (they are in index.csv)" in page
    assert json.loads((out / "maps.json").read_text())["model"] == model_dir.split("/")[-1]
    # the same command again is refused before any work; resumed, it explains nothing more
    code, err = run(capsys, *argv, "--target", "label")
    assert code == 2 and "holds the maps of a job: add --resume" in err
    assert main([*argv, "--target", "label", "--resume", "--gallery", "0"]) == 0
    assert "wrote 8 maps of 4 images" in capsys.readouterr().out
    # other settings need --overwrite
    code, err = run(capsys, *argv, "--resume", "--resolution", "pixels")
    assert code == 2 and "another job" in err and "resolution 'patches' then, 'pixels' now" in err
    assert main([*argv, "--overwrite", "--resolution", "pixels", "--float16", "--gallery", "0"]) == 0
    assert {r.shape for r in load_maps(out)} == {(64, 64)} and {r.dtype for r in load_maps(out)} == {"float16"}
    assert not (out / "report.html").exists()  # the other job's page is gone (this one has --gallery 0)


def test_an_unlabelled_folder_is_explained_and_says_so(model_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    assert main(["explain", str(folder), "--model", model_dir, "--methods", "rollout", "--out", str(tmp_path / "m"), "--gallery", "0"]) == 0
    captured = capsys.readouterr()
    assert "no labels read" in captured.err and "wrote 2 maps of 2 images" in captured.out
    assert {r.label for r in load_maps(tmp_path / "m")} == {-1}
    code, err = run(capsys, "explain", str(folder), "--model", model_dir, "--target", "label", "--out", str(tmp_path / "n"))
    assert code == 2 and "holds no images: put them in one subfolder per class" in err


def test_similarity_to_every_reference(backbone_dir, image_folder, tmp_path, capsys):
    references = []
    for k in range(2):
        path = tmp_path / f"ref{k}.png"
        Image.fromarray(np.random.default_rng(k + 5).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        references.append(str(path))
    out = tmp_path / "maps"
    argv = ["explain", str(image_folder), "--model", backbone_dir, "--similar-to", *references, "--target", "all", "--out", str(out)]
    assert main([*argv, "--methods", "gmar-l1,gae", "--gallery", "1"]) == 0
    records = load_maps(out)
    assert len(records) == 4 * 2 * 2 and {r.target_name for r in records} == {"ref0.png", "ref1.png"}
    assert all(-1 <= r.score <= 1 for r in records)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resolution", "pixels"], "--resolution applies to a folder of images"),
        (["--resume"], "--resume applies to a folder of images"),
        (["--text", "a cat"], "--text applies to a folder of images"),
        (["--target", "label"], "--target label applies to a folder of images"),
    ],
)
def test_folder_options_on_one_image_are_refused(capsys, photo, no_model_loading, extra, message):
    code, err = run(capsys, "explain", photo, *extra)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--native-resolution"], "--native-resolution applies to one image"),
        (["--text", "a cat", "a dog"], "--text applies to zero-shot image-text models"),
        (["--target", "zebra"], "'zebra' is not a class of the model"),
        (["--resume", "--overwrite"], "not allowed with argument"),
        (["--out", "fig.png"], "names a figure, but --out is the folder"),
    ],
)
def test_bad_folder_jobs_are_refused_before_the_model_loads(capsys, model_dir, image_folder, no_model_loading, extra, message):
    code, err = run(capsys, "explain", str(image_folder), "--model", model_dir, *extra)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_an_empty_folder_is_refused(capsys, model_dir, tmp_path, no_model_loading):
    (tmp_path / "empty").mkdir()
    code, err = run(capsys, "explain", str(tmp_path / "empty"), "--model", model_dir, "--out", str(tmp_path / "m"))
    assert code == 2 and "holds no images" in err


def test_labels_are_not_references(capsys, backbone_dir, image_folder, photo, no_model_loading):
    code, err = run(capsys, "explain", str(image_folder), "--model", backbone_dir, "--similar-to", photo, "--target", "label")
    assert code == 2 and "with --similar-to the references are the classes" in err
