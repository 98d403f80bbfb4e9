"""``captum-gmar compare``: its results folder, its data (scenes, image folders, the
bundled photos) and its errors."""

import csv
import json
import math

import pytest
from cli_helpers import last_line, run
from PIL import Image

from captum_gmar.cli import main
from captum_gmar.evaluation.report import read_csv
from captum_gmar.files import MANIFEST


def test_compare_writes_csv_table_and_figure(model_dir, tmp_path, fashion_mnist):
    out = tmp_path / "out"
    code = main(
        [
            "compare",
            "--model",
            model_dir,
            "--scenes",
            "3",
            "--methods",
            "gmar-l1,saliency",
            "--metrics",
            "localisation",
            "--device",
            "cpu",
            "--figure-rows",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert (out / "results.csv").is_file() and (out / "comparison.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "| GMAR (L1) |" in summary and "| Saliency |" in summary and "device: cpu (CPU)" in summary


def test_compare_with_an_ablation_writes_its_paired_table(model_dir, tmp_path, fashion_mnist):
    out = tmp_path / "out"
    code = main(
        [
            "compare",
            "--model",
            model_dir,
            "--scenes",
            "2",
            "--methods",
            "gmar-l1,rollout",
            "--metrics",
            "localisation",
            "--ablation",
            "layers",
            "--device",
            "cpu",
            "--figure-rows",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = (out / "summary.md").read_text()
    assert "| GMAR (L1), layer 1 uniform | " in summary and "gini − GMAR | gini − rollout" in summary


def test_compare_scores_the_relevance_map_chosen_and_says_which(model_dir, tmp_path, fashion_mnist):
    aucs = {}
    for choice in ("positive", "signed", "abs"):
        out = tmp_path / choice
        code = main(
            [
                "compare",
                "--model",
                model_dir,
                "--scenes",
                "3",
                "--methods",
                "attnlrp",
                "--metrics",
                "faithfulness",
                "--relevance-map",
                choice,
                "--device",
                "cpu",
                "--figure-rows",
                "0",
                "--out",
                str(out),
            ]
        )
        assert code == 0
        summary = (out / "summary.md").read_text()
        assert (
            f"AttnLRP and CP-LRP map: the {'positive part of the relevance' if choice == 'positive' else 'signed relevance' if choice == 'signed' else 'absolute value of the relevance'}"
            in summary
        )
        aucs[choice] = [row["deletion_auc"] for row in csv.DictReader((out / "results.csv").open())]
    assert aucs["abs"] != aucs["positive"]  # the maps rank the pixels differently


def test_data_errors_are_one_line_before_any_model_loads(model_dir, image_folder, photo, tmp_path, capsys, no_model_loading):
    argv = ["compare", "--model", model_dir, "--data", str(image_folder), "--device", "cpu", "--out", str(tmp_path / "out")]
    (image_folder / "bag" / "linked.png").symlink_to(photo)  # outside the data folder
    cases = [
        (argv, "image: 'bag/linked.png' leads out of the data folder through a symbolic link"),
        (argv[:3] + ["--follow-links"], "--follow-links applies to --data"),
    ]
    for command, message in cases:
        code, err = run(capsys, *command)
        assert code == 2 and message in last_line(err) and "Traceback" not in err, (command, err)
    (image_folder / "bag" / "linked.png").unlink()
    (image_folder / "boxes.csv").write_text("file,x_min,y_min,x_max,y_max\nbag/2.png,0,0,inf,5\n")
    code, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err
    assert (
        last_line(err)
        == "captum-gmar compare: error: boxes.csv row 2: x_max is 'inf'; box corners must be finite numbers, pixels of the image"
    )


def test_compare_follows_links_out_of_the_data_folder_when_asked(model_dir, image_folder, photo, tmp_path):
    (image_folder / "bag" / "linked.jpg").symlink_to(photo)
    out = tmp_path / "out"
    assert (
        main(
            [
                "compare",
                "--model",
                model_dir,
                "--data",
                str(image_folder),
                "--follow-links",
                "--methods",
                "rollout",
                "--metrics",
                "faithfulness",
                "--device",
                "cpu",
                "--figure-rows",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "bag/linked.jpg" in {row["file"] for row in read_csv(out / "results.csv")}


def test_compare_on_an_image_folder(model_dir, image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "compare",
        "--model",
        model_dir,
        "--data",
        str(image_folder),
        "--methods",
        "rollout",
        "--metrics",
        "faithfulness,localisation",
        "--limit",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--figure-rows",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    rows = list(read_csv(out / "results.csv"))
    assert len(rows) == 3 and all(row["file"].split("/")[0] in ("Trouser", "bag") for row in rows)
    assert all(math.isnan(row["pointing_game"]) != row["file"].startswith("Trouser") for row in rows)
    assert (out / "comparison.png").is_file() and "| Attention rollout |" in (out / "summary.md").read_text()
    assert json.loads((out / MANIFEST).read_text())["files"] == [
        "comparison.png",
        "report.html",
        "results.csv",
        "results.run.json",
        "summary.json",
        "summary.md",
    ]
    code, err = run(capsys, *argv)
    assert code == 2 and "results.csv exists: add --resume" in err
    (out / "notes.txt").write_text("mine")  # a file of the user's beside the run's is kept
    assert main([*argv, "--resume"]) == 0 and len(list(read_csv(out / "results.csv"))) == 3
    assert main([*argv, "--overwrite"]) == 0 and (out / "notes.txt").read_text() == "mine"


def test_compare_without_masks_skips_localisation(model_dir, image_folder, tmp_path, capsys):
    import shutil

    shutil.rmtree(image_folder / "masks")
    argv = ["compare", "--model", model_dir, "--data", str(image_folder), "--methods", "rollout", "--device", "cpu", "--figure-rows", "0"]
    code, err = run(capsys, *argv, "--metrics", "localisation", "--out", str(tmp_path / "a"))
    assert code == 2 and "--metrics localisation needs masks" in err
    assert main([*argv, "--metrics", "faithfulness", "--out", str(tmp_path / "b")]) == 0
    assert main([*argv, "--robustness-scenes", "0", "--out", str(tmp_path / "c")]) == 0
    assert "has no masks: localisation metrics are skipped" in capsys.readouterr().out
    assert "mass_inside" not in next(read_csv(tmp_path / "c" / "results.csv"))


def test_an_interrupted_compare_says_how_to_go_on(model_dir, image_folder, tmp_path, capsys, monkeypatch):
    import captum_gmar.evaluation.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(captum_gmar.evaluation.runner, "compare", interrupted)
    code, err = run(capsys, "compare", "--model", model_dir, "--data", str(image_folder), "--device", "cpu", "--out", str(tmp_path / "out"))
    assert code == 130 and "interrupted; the finished batches are in" in err and "add --resume" in err


def test_entries_of_the_data_named_like_images_that_are_no_files_are_unreadable_images(model_dir, image_folder, tmp_path, capsys):
    (image_folder / "bag" / "folder.png").mkdir()
    (image_folder / "Trouser" / "loop.png").symlink_to("loop.png")
    out = tmp_path / "out"
    argv = ["compare", "--model", model_dir, "--data", str(image_folder), "--methods", "rollout", "--metrics", "faithfulness"]
    argv += ["--device", "cpu", "--figure-rows", "0", "--gallery", "0", "--out", str(out)]
    code, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err
    assert last_line(err) in (
        "captum-gmar compare: error: cannot read image 'Trouser/loop.png': it is a symbolic link loop, which cannot be resolved",
        "captum-gmar compare: error: cannot read image 'bag/folder.png': it is a folder, not an image file",
    )
    assert main([*argv, "--overwrite", "--skip-unreadable"]) == 0
    captured = capsys.readouterr()
    assert "skipped: cannot read image 'bag/folder.png': it is a folder, not an image file" in captured.err
    assert "skipped: cannot read image 'Trouser/loop.png': it is a symbolic link loop" in captured.err
    run_json = json.loads((out / "results.run.json").read_text())
    assert run_json["unreadable_count"] == 2 and {entry["file"] for entry in run_json["unreadable"]} == {
        "bag/folder.png",
        "Trouser/loop.png",
    }
    assert f"2 unreadable image(s) skipped, listed in {out / 'results.run.json'}" in captured.out
    assert len({row["file"] for row in read_csv(out / "results.csv")}) == 4


def test_compare_stops_at_an_unreadable_image_or_skips_it_when_asked(model_dir, image_folder, tmp_path, capsys):
    (image_folder / "bag" / "2.png").write_bytes(b"")
    (image_folder / "Trouser" / "1.png").write_bytes((image_folder / "Trouser" / "1.png").read_bytes()[:200])
    out = tmp_path / "out"
    argv = [
        "compare",
        "--model",
        model_dir,
        "--data",
        str(image_folder),
        "--methods",
        "rollout",
        "--metrics",
        "faithfulness",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--figure-rows",
        "4",
        "--out",
        str(out),
    ]
    code, err = run(capsys, *argv)
    assert code == 2 and last_line(err).startswith("captum-gmar compare: error: cannot read image '") and "Traceback" not in err
    # go on with the run that stopped: the unreadable images are skipped, named once, counted
    assert main([*argv, "--resume", "--skip-unreadable"]) == 0
    captured = capsys.readouterr()
    assert [line.split("'")[1] for line in captured.err.splitlines() if line.startswith("skipped: ")] in (
        ["bag/2.png", "Trouser/1.png"],
        ["Trouser/1.png", "bag/2.png"],
    )
    run_json = json.loads((out / "results.run.json").read_text())
    assert run_json["unreadable_count"] == 2 and {entry["file"] for entry in run_json["unreadable"]} == {"bag/2.png", "Trouser/1.png"}
    counted = f"2 unreadable image(s) skipped, listed in {out / 'results.run.json'}"
    assert counted in captured.out and counted in (out / "summary.md").read_text()
    rows = list(read_csv(out / "results.csv"))
    assert sorted(row["file"] for row in rows) == ["Trouser/0.png", "bag/3.png"]
    assert (out / "comparison.png").is_file()  # drawn from the explained items only
    # resumed again: nothing read, the same rows and counts
    assert main([*argv, "--resume", "--skip-unreadable"]) == 0
    captured = capsys.readouterr()
    assert "skipped: " not in captured.err and counted in captured.out
    assert list(read_csv(out / "results.csv")) == rows and json.loads((out / "results.run.json").read_text()) == run_json


def test_a_decompression_bomb_is_a_one_line_error_or_skipped(model_dir, image_folder, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # the folder's images are 70 x 50 px, over twice that
    argv = [
        "compare",
        "--model",
        model_dir,
        "--data",
        str(image_folder),
        "--methods",
        "rollout",
        "--metrics",
        "faithfulness",
        "--device",
        "cpu",
        "--figure-rows",
        "0",
        "--limit",
        "1",
    ]
    code, err = run(capsys, *argv, "--out", str(tmp_path / "a"))
    assert (
        code == 2 and last_line(err).startswith("captum-gmar compare: error: cannot read image '") and "could be decompression bomb" in err
    )
    assert "Traceback" not in err
    code, err = run(capsys, "explain", photo, "--model", model_dir, "--device", "cpu", "--out", str(tmp_path / "fig.png"))  # 300 x 200 px
    assert (
        code == 2 and f"cannot read image {photo!r}: Image size (60000 pixels) exceeds limit" in last_line(err) and "Traceback" not in err
    )
    code, err = run(capsys, *argv, "--limit", "2", "--skip-unreadable", "--out", str(tmp_path / "b"))
    assert err.count("could be decompression bomb") == 2 and "Traceback" not in err
    listed = tmp_path / "b" / "results.run.json"
    assert (
        code == 2
        and last_line(err) == f"captum-gmar compare: error: no image could be read: 2 unreadable image(s) skipped, listed in {listed}"
    )


def test_compare_the_similarity_of_composites_of_the_bundled_photos(backbone_dir, tmp_path):
    for module in ("skimage", "sklearn"):
        pytest.importorskip(module, reason='the photos extra is not installed: pip install -e ".[photos]"')
    out = tmp_path / "similarity"
    argv = ["compare", "--task", "similarity", "--model", backbone_dir, "--scenes", "3", "--methods", "gmar-l1,rollout"]
    argv += ["--metrics", "faithfulness,localisation", "--deletion-steps", "2", "--figure-rows", "2", "--out", str(out)]
    assert main(argv) == 0
    summary = (out / "summary.md").read_text()
    assert "cosine similarity of the embeddings" in summary and "deletion/insertion baseline: the mean image" in summary
    entries = {entry["method"]: entry for entry in json.loads((out / "summary.json").read_text())}
    assert entries["Attention rollout"]["class_specificity"] == pytest.approx(0.0, abs=1e-5)
    rows = list(read_csv(out / "results.csv"))
    assert {row["photo"] for row in rows} <= {"astronaut", "chelsea", "coffee", "rocket", "hubble", "ihc", "retina", "china", "flower"}
    assert (out / "comparison.png").is_file()
