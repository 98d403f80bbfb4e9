"""``captum-gmar repair MAPS``: a cluster of a real job's maps repaired, the model folder
(config, weights, image processor) and its report written, the folder reloaded and
explained again; bad input is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from cli_helpers import last_line, run

from captum_gmar import GMARAttribution, explain_dataset, load_reference_model, load_sample_scenes
from captum_gmar.cli import main


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """The bundled sample scenes explained by the reference model with GAE, each image
    for its label (so that several classes hold images); the same scenes as --data."""
    from captum_gmar.evaluation.data import open_dataset
    from captum_gmar.imagedata.fashion_mnist import CLASS_NAMES
    from captum_gmar.imagedata.folder import export_scenes

    root = tmp_path_factory.mktemp("repair")
    export_scenes(load_sample_scenes(), root / "scenes", CLASS_NAMES)
    model = load_reference_model()
    processor = transformers.AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    data = open_dataset(root / "scenes", processor, dict(enumerate(CLASS_NAMES)), 64)
    explain_dataset(model, data, ["gae"], root / "maps", target=0, progress=False)
    return root


def command(job: Path, out: Path, *extra: str) -> list[str]:
    return ["repair", str(job / "maps"), "--model", "vit-tiny", "--cluster", "gae:T-shirt/top:1", "--images", str(job / "scenes")] + [
        "--data",
        str(job / "scenes"),
        "--out",
        str(out),
        *extra,
    ]


def test_repair_saves_a_model_folder_that_reloads_and_explains(job, tmp_path, capsys):
    out = tmp_path / "repaired"
    assert main(command(job, out, "--how", "finetune", "--steps", "2", "--budget", "100")) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("repairing vit-tiny of gae:T-shirt/top:1 (") and "saved the model repaired by finetune in" in printed
    report = json.loads((out / "repair.json").read_text())
    assert report["chosen"] == "finetune" and [row["repair"] for row in report["table"]] == ["none (as it was)", "finetune"]
    assert report["table"][1]["accuracy"] is not None and "| finetune |" in (out / "repair.md").read_text()
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(out)
    assert (out / "preprocessor_config.json").is_file()
    maps = GMARAttribution(reloaded).attribute(torch.randn(2, 3, 64, 64), target=0)
    assert maps.shape == (2, 3, 64, 64) and torch.isfinite(maps).all()
    assert main(command(job, out, "--how", "finetune", "--steps", "1", "--budget", "100")) == 0  # its own folder: replaced


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--cluster": "gae:T-shirt/top:9"}, "form 2 clusters: the rank must be at most that"),
        ({"--cluster": "gae:Sandal:1"}, "holds no maps of 'gae' explaining class 'Sandal'"),
        ({"--cluster": "gae-1"}, "--cluster: a cluster is METHOD:CLASS:RANK"),
        ({"--data": "nodata"}, "--data holds no image of the class 'T-shirt/top'"),
        ({"--model": "other"}, "holds the maps of another model than"),
    ],
)
def test_bad_input_is_one_line(job, tmp_path, capsys, change, message):
    args = command(job, tmp_path / "out")
    if change.get("--data") == "nodata":  # a labelled folder without the class
        data = tmp_path / "data"
        shutil.copytree(job / "scenes", data)
        shutil.rmtree(data / "T-shirt-top")
        change = {"--data": str(data)}
    if change.get("--model") == "other":  # another model's weights
        other = load_reference_model()
        with torch.no_grad():
            next(other.parameters()).add_(1.0)
        other.save_pretrained(tmp_path / "other")
        shutil.copy(Path(load_reference_model().name_or_path) / "preprocessor_config.json", tmp_path / "other")
        change = {"--model": str(tmp_path / "other")}
    for flag, value in change.items():
        args[args.index(flag) + 1] = value
    code, err = run(capsys, *args)
    assert code == 2 and last_line(err).startswith("captum-gmar repair: error: ") and message in last_line(err), err
