"""``captum-gmar explain FOLDER``: every image explained, the maps kept with their index, a
gallery page and overlays; resume and refusals before any work."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import run
from PIL import Image

from captum_gmar import load_maps
from captum_gmar.cli import main
from captum_gmar.dataset_maps.checks import MAPS_FILES
from captum_gmar.files import claim_files


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
    assert code == 2 and "holds the maps of a job (4 images, methods gmar-l1, rollout): add --resume" in err and err.count("\n") == 1
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


def test_a_folder_a_job_is_writing_is_refused_before_the_model_loads(capsys, model_dir, image_folder, tmp_path, no_model_loading):
    out = tmp_path / "maps"
    claim_files(out, MAPS_FILES)  # as a job writing it has
    hold = "import sys; from captum_gmar.files import folder_lock\nwith folder_lock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        for option in ("--overwrite", "--resume"):
            code, err = run(capsys, "explain", str(image_folder), "--model", model_dir, "--out", str(out), option)
            assert code == 2 and err.count("\n") == 1, err
            assert f"{str(out)!r} is in use: a captum-gmar job is running there (process {holder.pid} on" in err
    finally:
        holder.kill()
        holder.wait()


def test_out_inside_the_data_folder_is_not_read_as_data(model_dir, image_folder, capsys):
    out = image_folder / "maps"
    argv = ["explain", str(image_folder), "--model", model_dir, "--methods", "rollout", "--out", str(out), "--overlays", "--gallery", "0"]
    assert main(argv) == 0 and len(list((out / "overlays").glob("*.png"))) == 4
    assert main([*argv, "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("wrote 4 maps of 4 images") == 2 and "no labels read" not in captured.err


def test_a_file_name_that_is_not_utf8_does_not_stop_the_job(model_dir, image_folder, tmp_path, capsys):
    os.rename(image_folder / "bag" / "2.png", image_folder / os.fsdecode(b"bag/sac-\xe9.png"))
    (image_folder / "bag" / "broken.png").write_bytes(b"")
    out = tmp_path / "maps"
    argv = ["explain", str(image_folder), "--model", model_dir, "--methods", "rollout", "--out", str(out), "--skip-unreadable"]
    assert main([*argv, "--gallery", "4"]) == 0
    assert "wrote 4 maps of 4 images" in capsys.readouterr().out
    with open(out / "index.csv", newline="", encoding="utf-8") as handle:
        assert "bag/sac-\\xe9.png" in {row["image"] for row in csv.DictReader(handle)}
    assert '"title": "bag/sac-\\\\xe9.png: ' in (out / "report.html").read_text(encoding="utf-8")  # JSON in the page
    assert "broken.png" in (out / "unreadable.csv").read_text()


def test_a_resume_that_replaces_maps_removes_the_pictures_of_the_old_ones(model_dir, image_folder, tmp_path, capsys):
    out = tmp_path / "maps"
    argv = ["explain", str(image_folder), "--model", model_dir, "--methods", "rollout", "--out", str(out)]
    assert main([*argv, "--overlays", "--gallery", "1"]) == 0
    assert main([*argv, "--resume", "--gallery", "0"]) == 0  # nothing changed: the pictures are kept
    assert len(list((out / "overlays").glob("*.png"))) == 4 and (out / "report.html").is_file()
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(image_folder / "bag" / "2.png")
    capsys.readouterr()
    assert main([*argv, "--resume", "--gallery", "0"]) == 0
    assert "1 of the images done changed since their maps were made (the first: 'bag/2.png')" in capsys.readouterr().err
    assert not (out / "overlays").exists() and not (out / "report.html").exists()
