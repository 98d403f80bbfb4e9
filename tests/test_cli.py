"""The command line: arguments, outputs and errors."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import captum_gmar
from captum_gmar import cli
from captum_gmar.cli import main
from captum_gmar.evaluation.report import read_csv


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny 64 px multi-label ViT saved with an image processor that does not resize, as
    the bundled reference model's does."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=64,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=10,
        problem_type="multi_label_classification",
        id2label={
            i: name
            for i, name in enumerate(
                ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
            )
        },
    )
    path = tmp_path_factory.mktemp("model")
    transformers.ViTForImageClassification(config).save_pretrained(path)
    transformers.ViTImageProcessor(do_resize=False, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    return str(path)


@pytest.fixture
def photo(tmp_path):
    """A 300 x 200 px RGB photo."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path)
    return str(path)


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if a model is loaded: argument and file errors must come first."""

    def refuse(spec, embedding=False):
        raise AssertionError(f"the model {spec} was loaded")

    monkeypatch.setattr(cli, "load_model", refuse)


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


def test_explain_resizes_to_the_models_size_and_explains_the_predicted_class(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main(["explain", photo, "--model", model_dir, "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "predicted: " in printed and "explaining" not in printed  # the default target is the prediction
    assert "GMAR (L1)" in printed and out.is_file()
    assert Image.open(out).size[0] > 500


def test_explain_an_image_whose_name_holds_dollars_draws_it_as_given(tmp_path, monkeypatch):
    """matplotlib reads ``$...$`` as mathtext: ``$\\bad$`` failed to draw, after the work."""
    from captum_gmar import visualization

    image = tmp_path / "$\\bad$.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    figures = []
    grid = visualization.comparison_grid
    monkeypatch.setattr(visualization, "comparison_grid", lambda *args, **kwargs: figures.append(grid(*args, **kwargs)) or figures[-1])
    out = tmp_path / "fig.png"
    argv = ["explain", str(image), "--model", "vit-tiny", "--methods", "gmar-l1,rollout", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0 and Image.open(out).size[0] > 500
    title = figures[0]._suptitle
    assert title.get_text().startswith("$\\bad$.png (") and not title.get_parse_math()


def test_explain_a_class_by_name_or_index(model_dir, photo, tmp_path, capsys, monkeypatch):
    from captum_gmar.evaluation import methods

    seen = []

    original = methods.Method.maps_and_head_weights  # explain takes GMAR's head weights too, for --out page.html

    def spy(self, images, targets):
        seen.append((tuple(images.shape), targets.tolist()))
        return original(self, images, targets)

    monkeypatch.setattr(methods.Method, "maps_and_head_weights", spy)
    main(
        [
            "explain",
            photo,
            "--model",
            model_dir,
            "--target",
            "sneaker",
            "--methods",
            "rollout",
            "--out",
            str(tmp_path / "a.png"),
            "--device",
            "cpu",
        ]
    )
    main(
        [
            "explain",
            photo,
            "--model",
            model_dir,
            "--target",
            "7",
            "--methods",
            "rollout",
            "--native-resolution",
            "--out",
            str(tmp_path / "b.png"),
            "--device",
            "cpu",
        ]
    )
    assert seen == [((1, 3, 64, 64), [7]), ((1, 3, 200, 300), [7])]


def test_help_and_version_do_not_import_torch():
    code = "import sys; from captum_gmar.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    for argv in (["--help"], ["--version"], ["explain", "--help"], ["export-scenes", "--help"], ["compare", "--scenes", "0"]):
        result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
        assert result.stdout.strip().endswith("False"), (argv, result.stdout, result.stderr)
    version = subprocess.run([sys.executable, "-m", "captum_gmar", "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"captum-gmar {captum_gmar.__version__}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--methods", "gmar-l1,lime"], "unknown method(s) lime"),
        (["compare", "--metrics", "beauty"], "unknown metric group(s) beauty"),
        (["compare", "--scenes", "0"], "--scenes: must be at least 1, got 0"),
        (["compare", "--ig-steps", "0"], "--ig-steps: must be at least 1, got 0"),
        (["compare", "--figure-rows", "-1"], "--figure-rows: must be at least 0, got -1"),
        (["compare", "--robustness-scenes", "-1"], "--robustness-scenes: must be at least 0, got -1"),
        (["compare", "--batch-size", "two"], "--batch-size: expected an integer, got 'two'"),
        (["compare", "--device", "gpu"], "unknown device 'gpu'"),
        (["demo", "--device", "tpu"], "unknown device 'tpu'"),
        (["explain", "x.png", "--methods", ""], "unknown method(s) (none given)"),
        (["compare", "--data", "/no/such/folder"], "'/no/such/folder' is not a folder"),
        (["compare", "--data", ".", "--scenes", "3"], "not allowed with argument"),
        (["compare", "--resume", "--overwrite"], "not allowed with argument"),
        (["compare", "--limit", "0"], "--limit: must be at least 1, got 0"),
        (["compare", "--workers", "-1"], "--workers: must be at least 0, got -1"),
        (["compare", "--ablation", "tokens"], "unknown ablation(s) tokens; choose from layers, heads"),
        (["compare", "--ablation", "layers", "--methods", "gmar-l1"], "--methods must include gmar-l1 and rollout"),
        (["export-scenes", "x", "--n", "0"], "--n: must be at least 1, got 0"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, message, no_model_loading):
    code, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def make_folder(tmp_path, name, architecture, weights=True):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"architectures": ["{architecture}"], "id2label": {{"0": "a"}}, "patch_size": 8}}')
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    return str(folder)


def test_file_and_model_errors_come_before_any_model_loads(capsys, tmp_path, photo, model_dir, no_model_loading, hub_cache):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tiny)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    loop = tmp_path / "loop.png"
    loop.symlink_to("loop.png")
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to("gone.png")
    cases = [
        (
            ["compare", "--model", "/no/such/dir"],
            "neither a reference model (vit-tiny, dinov2-small, dinov2-small-backbone), nor a folder with a config.json",
        ),
        (
            ["explain", photo, "--model", "google/vit-base-patch16-224"],
            "nor a model in the Hugging Face cache (download one with: hf download MODEL_ID)",
        ),
        (
            ["compare", "--model", make_folder(tmp_path, "empty", "ViTForImageClassification", weights=False)],
            "has a config.json but no weights",
        ),
        (
            ["explain", photo, "--model", make_folder(tmp_path, "swin", "SwinForImageClassification")],
            "windowed attention has no global map",
        ),
        (["explain", photo, "--model", make_folder(tmp_path, "convnext", "ConvNextForImageClassification")], "supported: ViT, DeiT"),
        (["explain", "missing.png", "--model", model_dir], "image 'missing.png' does not exist"),
        (["explain", str(broken), "--model", model_dir], "cannot read image"),
        (
            ["explain", str(tiny), "--model", model_dir, "--native-resolution"],
            "is 4x4 px, smaller than one 8x8 patch of the model: drop --native-resolution",
        ),
        (["explain", str(tmp_path), "--model", model_dir], f"image {str(tmp_path)!r} is a folder, not an image file"),
        (["explain", str(loop), "--model", model_dir], f"image {str(loop)!r} is a symbolic link loop, which cannot be resolved"),
        (
            ["explain", str(dangling), "--model", model_dir],
            f"image {str(dangling)!r} is a symbolic link to 'gone.png', which does not exist",
        ),
        (["explain", photo, "--model", model_dir, "--target", "10"], "--target 10 is out of range: the model has 10 classes"),
        (
            ["explain", photo, "--model", model_dir, "--target", "Cat"],
            "'Cat' is not a class of this model; its classes: T-shirt/top, Trouser",
        ),
        (["compare", "--model", model_dir, "--data-dir", str(tmp_path / "nothing")], "Fashion-MNIST"),
        (["compare", "--model", model_dir, "--limit", "3"], "--limit applies to --data"),
        (["compare", "--model", model_dir, "--skip-unreadable"], "--skip-unreadable applies to --data"),
        (["compare", "--model", model_dir, "--data", str(tmp_path), "--data-dir", str(tmp_path)], "--data-dir is the Fashion-MNIST folder"),
        (["compare", "--model", model_dir, "--data", str(tmp_path)], "holds no images"),
        (["compare", "--model", model_dir, "--out", str(existing_results(tmp_path))], "results.csv exists: add --resume"),
        (["export-scenes", str(tmp_path)], "is not an empty folder"),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)


def existing_results(tmp_path):
    """An output folder holding the results of an earlier run."""
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "results.csv").write_text("method,item\n")
    (out / cli.MANIFEST).write_text(
        json.dumps({"files": ["results.csv", "results.run.json", "summary.md", "summary.json", "comparison.png"]})
    )
    return out


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of the test model (one named in lower case), four images of another size
    than the model's; masks for the Trouser ones."""
    rng = np.random.default_rng(0)
    for i, label in enumerate(["Trouser", "Trouser", "bag", "bag"]):
        for base, array in (
            (tmp_path / "data", rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)),
            (tmp_path / "data" / "masks", np.eye(50, 70, dtype=np.uint8)),
        ):
            if base.name == "masks" and label != "Trouser":
                continue
            (base / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(base / label / f"{i}.png")
    return tmp_path / "data"


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
    assert json.loads((out / cli.MANIFEST).read_text())["files"] == [
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


def test_export_scenes_writes_a_folder_compare_reads(tmp_path, capsys, fashion_mnist):
    assert main(["export-scenes", str(tmp_path / "scenes"), "--n", "4", "--seed", "1"]) == 0
    assert "and their masks to" in capsys.readouterr().out
    images = sorted(p.relative_to(tmp_path / "scenes").as_posix() for p in (tmp_path / "scenes").rglob("*.png"))
    masks = [p for p in images if p.startswith("masks/")]
    assert len(masks) * 2 == len(images) and {"masks/" + p for p in images if p not in masks} == set(masks)
    assert (
        main(
            [
                "compare",
                "--data",
                str(tmp_path / "scenes"),
                "--methods",
                "rollout",
                "--metrics",
                "localisation",
                "--device",
                "cpu",
                "--figure-rows",
                "0",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert all(row["pointing_game"] in (0.0, 1.0) for row in read_csv(tmp_path / "out" / "results.csv"))


def test_missing_subcommand(capsys):
    code, err = run(capsys)
    assert code == 2 and "required" in err


def test_native_resolution_too_large_for_memory_fails_before_the_prediction(model_dir, photo, capsys, monkeypatch):
    import captum_gmar.evaluation.runner
    import captum_gmar.methods.base

    def no_prediction(vit):
        raise AssertionError("the model ran")

    monkeypatch.setattr(captum_gmar.methods.base, "available_bytes", lambda device: 2**20)
    monkeypatch.setattr(captum_gmar.evaluation.runner, "score_function", no_prediction)
    code, err = run(capsys, "explain", photo, "--model", model_dir, "--native-resolution", "--device", "cpu")
    assert code == 2 and "200x300 px" in err and "drop --native-resolution" in err


@pytest.mark.parametrize("method", ["gmar-l1", "attnlrp"])
def test_a_call_too_slow_for_any_method_fails_before_the_prediction(model_dir, photo, capsys, monkeypatch, method):
    import captum_gmar.evaluation.runner
    import captum_gmar.methods.base

    def no_prediction(vit):
        raise AssertionError("the model ran")

    monkeypatch.setattr(captum_gmar.methods.base, "SLOW_CALL_SECONDS", 0.0)
    monkeypatch.setattr(captum_gmar.evaluation.runner, "score_function", no_prediction)
    code, err = run(capsys, "explain", photo, "--model", model_dir, "--methods", method, "--device", "cpu")
    assert code == 2 and "allow_slow=True" in err and "Traceback" not in err


def test_bad_outputs_are_refused_before_any_model_loads(capsys, tmp_path, photo, model_dir, no_model_loading, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a relative --out would land
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["explain", photo, "--out", str(tmp_path / "fig.txt")], "the figure's format comes from its extension, one of"),
        (["explain", photo, "--out", str(tmp_path / "fig")], ".png"),
        (["explain", photo, "--out", str(tmp_path)], "is a folder: name the figure file"),
        (["explain", photo, "--out", str(a_file / "sub" / "fig.png")], f"{str(a_file)!r} is a file, so no folder can be made there"),
        (["compare", "--model", model_dir, "--out", str(a_file)], "is a file: name a folder for the results"),
        (["compare", "--model", model_dir, "--out", str(a_file / "out")], f"{str(a_file)!r} is a file, so no folder can be made there"),
        (["demo", "--out", str(a_file / "out")], f"{str(a_file)!r} is a file, so no folder can be made there"),
        (
            ["demo", "--out", "demo.png"],
            "--out 'demo.png' names a figure, but --out is the folder of the results (the figure is its comparison.png): "
            "name a folder, e.g. 'demo'",
        ),
        (["compare", "--model", model_dir, "--out", str(tmp_path / "cmp.PDF")], "names a figure, but --out is the folder of the results"),
    ]
    if Path("/proc/self").is_dir():  # a folder not even root may write in
        cases += [
            (["explain", photo, "--out", "/proc/self/fig.png"], "'/proc/self' is not writable"),
            (["compare", "--model", model_dir, "--out", "/proc/self/out"], "'/proc/self' is not writable"),
        ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "fig.txt").exists() and not Path("demo.png").exists()


def test_an_output_folder_holding_files_of_the_user_is_refused_before_any_model_loads(capsys, tmp_path, model_dir, no_model_loading):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    (user / "summary.md").write_text("my summary")
    own = existing_results(tmp_path)
    (own / "comparison.png").write_bytes(b"the user's figure")  # beside the package's files, not listed in its manifest
    (own / cli.MANIFEST).write_text(json.dumps({"files": ["results.csv", "results.run.json", "summary.md", "summary.json"]}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / cli.MANIFEST).write_text("{")
    refused = f"--out {str(user)!r} holds files captum-gmar did not write (notes.txt, summary.md): name a new or empty folder"
    cases = [
        (["compare", "--model", model_dir, "--out", str(user)], refused),
        (["compare", "--model", model_dir, "--out", str(user), "--overwrite"], refused),
        (["demo", "--out", str(user)], refused),
        (
            ["compare", "--model", model_dir, "--out", str(own), "--overwrite"],
            f"--out {str(own)!r} holds 'comparison.png', which captum-gmar did not write and does not replace: move it, or name a new or empty folder",
        ),
        (["compare", "--model", model_dir, "--out", str(broken)], f"cannot read {str(broken / cli.MANIFEST)!r}"),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    assert (user / "summary.md").read_text() == "my summary" and (own / "comparison.png").read_bytes() == b"the user's figure"


def test_links_in_the_output_are_refused_before_any_model_loads(capsys, tmp_path, photo, model_dir, no_model_loading):
    """A results file, the manifest or --out itself planted as a symbolic link is refused:
    the files it leads to (or would make, dangling) outside the folder are left alone."""
    mine = tmp_path / "mine.md"
    mine.write_text("the user's file")
    summary = existing_results(tmp_path)
    (summary / "summary.md").symlink_to(mine)
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    user_json = tmp_path / "mine.json"
    user_json.write_text('{"files": []}')  # reads as a manifest
    (manifest / cli.MANIFEST).symlink_to(user_json)
    (tmp_path / "dangling").mkdir()
    dangling = existing_results(tmp_path / "dangling")
    (dangling / "comparison.png").symlink_to(tmp_path / "made-outside.png")
    (tmp_path / "out-link").symlink_to(tmp_path / "no-such-folder")
    (tmp_path / "figure.png").symlink_to(mine)
    compare = ["compare", "--model", model_dir, "--device", "cpu"]
    cases = [
        ([*compare, "--out", str(summary), "--overwrite"], f"holds 'summary.md' as a symbolic link (to {str(mine)!r})"),
        ([*compare, "--out", str(manifest)], f"holds {cli.MANIFEST!r} as a symbolic link"),
        (["demo", "--out", str(dangling)], "holds 'comparison.png' as a symbolic link"),
        ([*compare, "--out", str(tmp_path / "out-link")], "is a symbolic link to"),
        (["explain", photo, "--out", str(tmp_path / "figure.png")], "is a symbolic link (to"),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    assert mine.read_text() == "the user's file" and user_json.read_text() == '{"files": []}'
    assert not (tmp_path / "made-outside.png").exists() and not (tmp_path / "no-such-folder").exists()


def last_line(err: str) -> str:
    """The error line; transformers' progress bars may come before it."""
    return err.strip().splitlines()[-1]


def test_images_smaller_than_a_patch_are_resized_by_explain_as_by_compare(tmp_path, capsys):
    """The reference model's processor resizes a 1x1 or a 1x10000 px image to 64 px, for
    explain as for compare --data; only --native-resolution needs a patch."""
    for name, size in (("dot.png", (1, 1)), ("line.png", (10000, 1))):
        image = Image.fromarray(np.full((size[1], size[0], 3), 200, dtype=np.uint8))
        image.save(tmp_path / name)
        (tmp_path / "data" / "Trouser").mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "data" / "Trouser" / name)
        argv = ["explain", str(tmp_path / name), "--model", "vit-tiny", "--methods", "rollout", "--device", "cpu"]
        assert main([*argv, "--out", str(tmp_path / f"{name}.svg")]) == 0 and (tmp_path / f"{name}.svg").stat().st_size
        assert "predicted: " in capsys.readouterr().out
        code, err = run(capsys, *argv, "--native-resolution", "--out", str(tmp_path / "native.png"))
        assert code == 2 and f"is {size[0]}x{size[1]} px, smaller than one 8x8 patch of the model" in err
    out = tmp_path / "out"
    argv = ["compare", "--model", "vit-tiny", "--data", str(tmp_path / "data"), "--methods", "rollout", "--metrics", "faithfulness"]
    assert main([*argv, "--device", "cpu", "--figure-rows", "0", "--gallery", "0", "--out", str(out)]) == 0
    assert sorted({row["file"] for row in read_csv(out / "results.csv")}) == ["Trouser/dot.png", "Trouser/line.png"]


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


def test_explain_a_model_of_the_hugging_face_cache(model_dir, photo, tmp_path, capsys, hub_cache):
    argv = ["explain", photo, "--model", "someone/tiny-vit", "--methods", "rollout", "--device", "cpu", "--out", str(tmp_path / "fig.png")]
    code, err = run(capsys, *argv)
    assert code == 2 and "nor a model in the Hugging Face cache (download one with: hf download MODEL_ID)" in err
    hub_cache("someone/tiny-vit", model_dir)
    assert main(argv) == 0 and (tmp_path / "fig.png").is_file()
    assert "predicted: " in capsys.readouterr().out


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    """A tiny DINOv2 backbone (no head) saved with an image processor that resizes to 32 px."""
    torch.manual_seed(0)
    config = transformers.Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2)
    path = tmp_path_factory.mktemp("backbone")
    transformers.Dinov2Model(config).save_pretrained(path)
    transformers.BitImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False).save_pretrained(path)
    return str(path)


def test_explain_the_similarity_to_reference_images(backbone_dir, photo, tmp_path, capsys):
    references = []
    for k in range(2):
        path = tmp_path / f"ref{k}.png"
        Image.fromarray(np.random.default_rng(k + 1).integers(0, 255, (50 + 10 * k, 40, 3), dtype=np.uint8)).save(path)
        references.append(str(path))
    out = tmp_path / "similar.png"
    assert (
        main(["explain", photo, "--model", backbone_dir, "--similar-to", *references, "--methods", "gmar-l1,attnlrp", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "similarity to ref0.png: cos " in printed and "similarity to ref1.png: cos " in printed
    assert Image.open(out).size[0] > 0
    assert (
        main(
            [
                "explain",
                photo,
                "--model",
                backbone_dir,
                "--similar-to",
                *references,
                "--center",
                "references",
                "--methods",
                "rollout",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "(centred)" in capsys.readouterr().out


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


def test_similarity_errors_are_one_line_before_any_model_loads(capsys, tmp_path, photo, backbone_dir, model_dir, no_model_loading):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    loop = tmp_path / "loop.png"
    loop.symlink_to("loop.png")
    cases = [
        (["explain", photo, "--model", backbone_dir, "--similar-to", "missing.png"], "image 'missing.png' does not exist"),
        (["explain", photo, "--model", backbone_dir, "--similar-to", photo, str(broken)], "cannot read image"),
        (["explain", photo, "--model", backbone_dir, "--similar-to", str(tmp_path)], "is a folder, not an image file"),
        (["explain", photo, "--model", backbone_dir, "--similar-to", str(loop)], "is a symbolic link loop, which cannot be resolved"),
        (["explain", photo, "--model", backbone_dir, "--similar-to", photo, "--target", "0"], "--target names a class; with --similar-to"),
        (["explain", photo, "--model", model_dir, "--center", "references"], "--center applies to --similar-to"),
        (
            ["explain", photo, "--model", backbone_dir],
            "returns an embedding, not classes: explain its similarity to reference images with --similar-to",
        ),
        (["compare", "--model", backbone_dir], "returns an embedding, not classes"),
        (["compare", "--model", model_dir, "--center", "references"], "--center applies to --task similarity"),
        (["compare", "--task", "similarity", "--data", str(tmp_path)], "--task similarity runs on composites of the bundled photos"),
        (
            ["compare", "--task", "similarity", "--model", make_folder(tmp_path, "convnext", "ConvNextModel")],
            "for similarity, the embedding models Dinov2Model",
        ),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)


def test_explain_never_writes_over_its_images(capsys, tmp_path, photo, backbone_dir, no_model_loading):
    reference = tmp_path / "reference.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(reference)
    (tmp_path / "hard-link.png").hardlink_to(reference)
    before = Path(photo).read_bytes(), reference.read_bytes()
    cases = [
        (["explain", photo, "--out", photo], f"--out {photo!r} is the image {photo!r}, which the figure would replace: name another file"),
        (["explain", photo, "--out", str(tmp_path / "." / "photo.jpg")], "which the figure would replace"),
        (
            ["explain", photo, "--model", backbone_dir, "--similar-to", photo, str(reference), "--out", str(tmp_path / "hard-link.png")],
            f"is the image {str(reference)!r}",
        ),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    assert (Path(photo).read_bytes(), reference.read_bytes()) == before


def test_an_embedding_model_without_references_is_refused_before_it_loads(capsys, photo, no_model_loading):
    cases = [
        ["explain", photo, "--model", "dinov2-small-backbone"],
        ["compare", "--model", "dinov2-small-backbone", "--device", "cpu"],
    ]
    for argv in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and "'dinov2-small-backbone' is a Dinov2Model, which returns an embedding, not classes" in err, (argv, err)


def test_a_classifier_given_for_a_similarity_is_explained_through_its_backbone(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "backbone.png"
    assert main(["explain", photo, "--model", model_dir, "--similar-to", photo, "--methods", "gmar-l1", "--out", str(out)]) == 0
    assert "similarity to photo.jpg: cos 1.000" in capsys.readouterr().out  # the same image: its own reference
