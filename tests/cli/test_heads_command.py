"""``captum-gmar heads MAPS``: a cluster of a real job's maps located against its class,
heads.csv / heads.json / heads.png written, the model without its first head saved and
loadable; bad input is one line before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import transformers
from cli_helpers import explain_scenes, last_line, run

from captum_gmar.cli import main
from captum_gmar.vit.model import VisionTransformer


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """The bundled sample scenes explained by the reference model with GMAR."""
    return explain_scenes(tmp_path_factory.mktemp("heads"), ["gmar-l1"])


def test_heads_locates_a_clusters_heads_and_saves_the_model_without_the_first(job, tmp_path, capsys):
    out = tmp_path / "heads"
    code = main(
        [
            "heads",
            str(job / "maps"),
            "--model",
            "vit-tiny",
            "--cluster",
            "gmar-l1:T-shirt/top:1",
            "--images",
            str(job / "scenes"),
            "--out",
            str(out),
            "--remove",
            "1",
            "--mode",
            "mean",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("locating the heads of gmar-l1:T-shirt/top:1 in ") and printed[0].endswith("(6 layers of 4 heads)")
    table = pd.read_csv(out / "heads.csv")
    assert len(table) == 24 and list(table.columns[:3]) == ["rank", "layer", "head"] and list(table["rank"]) == list(range(1, 25))
    assert list(table["zero-logit"]) == sorted(table["zero-logit"], reverse=True)
    summary = json.loads((out / "heads.json").read_text())
    assert summary["class"] == 0 and summary["images"] + summary["reference_images"] == 12 and summary["ablated"] == 24
    assert summary["removed"]["heads"] == [[int(table.layer[0]), int(table["head"][0])]] and summary["removed"]["mode"] == "mean"
    assert (out / "heads.png").stat().st_size > 10_000
    without = transformers.ViTForImageClassification.from_pretrained(out / "model").eval()
    layer, head = summary["removed"]["heads"][0]
    block = VisionTransformer(without).blocks[layer]
    size = block.output.in_features // block.num_heads
    assert torch.count_nonzero(block.output.weight[:, head * size : (head + 1) * size]) == 0
    assert transformers.AutoImageProcessor.from_pretrained(out / "model") is not None


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--cluster", "gmar-l1:0"], "--cluster: a cluster is METHOD:CLASS:RANK"),
        (["--cluster", "gmar-l1:0:0"], "--cluster: a cluster is METHOD:CLASS:RANK"),
        (["--cluster", "gae:0:1"], "has no method 'gae'"),
        (["--cluster", "gmar-l1:Dress:1"], "holds no maps of 'gmar-l1' explaining class 'Dress'"),
        (["--cluster", "gmar-l1:0:9"], "form .* clusters: the rank must be at most that"),
    ],
)
def test_bad_input_is_one_line(job, tmp_path, capsys, arguments, message):
    code, err = run(
        capsys, "heads", str(job / "maps"), "--model", "vit-tiny", "--images", str(job / "scenes"), "--out", str(tmp_path / "h"), *arguments
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert last_line(err).startswith("captum-gmar heads: error: ")
    import re

    assert re.search(message, err), err
