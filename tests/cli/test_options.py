"""The parser and the options: ``--help`` and ``--version`` without torch, and argument,
file and model errors as one line before any model loads."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import existing_results, make_folder, run
from PIL import Image

import captum_gmar
from captum_gmar.cli import compare
from captum_gmar.evaluation.settings import Settings


def test_help_and_version_do_not_import_torch():
    code = "import sys; from captum_gmar.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    for argv in (
        ["--help"],
        ["--version"],
        ["explain", "--help"],
        ["explore", "--help"],
        ["export-scenes", "--help"],
        ["compare", "--scenes", "0"],
    ):
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
        (["compare", "--ablation", "layers", "--methods", "gmar-l1"], "the methods must include gmar-l1 and rollout"),
        (["export-scenes", "x", "--n", "0"], "--n: must be at least 1, got 0"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, message, no_model_loading):
    code, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_subcommand(capsys):
    code, err = run(capsys)
    assert code == 2 and "required" in err


def test_file_and_model_errors_come_before_any_model_loads(capsys, tmp_path, photo, model_dir, no_model_loading, hub_cache):
    empty = tmp_path / "empty-folder"
    empty.mkdir()
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
        (["explain", str(empty), "--model", model_dir], f"data folder {str(empty)!r} holds no images"),  # a folder is a data set
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


def test_the_run_settings_default_to_those_of_settings():
    parser = argparse.ArgumentParser()
    compare.add_parser(parser.add_subparsers(), "compare")
    args = parser.parse_args(["compare"])
    assert args.options(args).run.settings == Settings()
    args = parser.parse_args(["compare", "--task", "similarity"])
    options = args.options(args)
    assert options.run.model == "dinov2-small-backbone" and options.run.settings == Settings(baseline="zero")
