"""The command line: arguments, outputs and errors."""

import numpy as np
import pytest
import torch
import transformers
from matplotlib import image as mpimg

from captum_gmar.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny 64 px multi-label ViT saved with its image processor, as a user would."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=10, problem_type="multi_label_classification",
    )
    path = tmp_path_factory.mktemp("model")
    transformers.ViTForImageClassification(config).save_pretrained(path)
    transformers.ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    return str(path)


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


def test_compare_writes_csv_table_and_figure(model_dir, tmp_path):
    try:
        from captum_gmar.datasets.fashion_mnist import resolve_data_dir

        resolve_data_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    out = tmp_path / "out"
    code = main(["compare", "--model", model_dir, "--scenes", "3", "--methods", "gmar-l1,saliency",
                 "--metrics", "localisation", "--device", "cpu", "--figure-rows", "2", "--out", str(out)])
    assert code == 0
    assert (out / "results.csv").is_file() and (out / "comparison.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "| GMAR (L1) |" in summary and "| Saliency |" in summary and "Device: cpu" in summary


def test_explain_one_image(model_dir, tmp_path, capsys):
    image = tmp_path / "scene.png"
    mpimg.imsave(image, np.random.default_rng(0).random((80, 72, 3)))
    out = tmp_path / "fig.png"
    assert main(["explain", str(image), "--model", model_dir, "--target", "3", "--out", str(out), "--device", "cpu"]) == 0
    assert out.is_file() and "GMAR (L1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--model", "/no/such/dir"], "does not exist or has no config.json"),
        (["compare", "--methods", "gmar-l1,lime"], "unknown method(s) lime"),
        (["compare", "--metrics", "beauty"], "unknown metric group(s) beauty"),
        (["compare", "--scenes", "0"], "--scenes must be at least 1"),
        (["explain", "x.png", "--model", "/no/such/dir", "--target", "1"], "does not exist"),
    ],
)
def test_argument_errors(capsys, argv, message):
    code, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_unreadable_image_and_bad_target(model_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    code, err = run(capsys, "explain", str(broken), "--model", model_dir, "--target", "1")
    assert code == 2 and "cannot read image" in err
    good = tmp_path / "good.png"
    mpimg.imsave(good, np.zeros((64, 64, 3)))
    code, err = run(capsys, "explain", str(good), "--model", model_dir, "--target", "10")
    assert code == 2 and "out of range" in err


def test_missing_subcommand(capsys):
    code, err = run(capsys)
    assert code == 2 and "required" in err
