"""``captum-gmar explore MAPS``: the same as ``explore`` from Python, its first line naming
what is explored; bad input is one line before any work, with nothing written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import last_line, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exploration"))
from synthetic_maps import planted_maps, write_folder  # noqa: E402  (the exploration tests' maps)

from captum_gmar import explore  # noqa: E402
from captum_gmar.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> Path:
    """A maps folder of 60 maps of class 0 and 20 of class 1, two methods."""
    found, _ = planted_maps(80, seed=3)
    return write_folder(tmp_path_factory.mktemp("cli") / "maps", {"a": found, "b": found**2}, np.array([0] * 60 + [1] * 20))


def test_explore_writes_what_explore_writes_and_names_what_it_explores(maps, tmp_path, capsys):
    assert main(["explore", str(maps), "--out", str(tmp_path / "cli"), "--clusters", "3", "--neighbours", "5", "--classes", "class 0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"exploring {maps}: 80 images explained by a model, 160 maps of 2 methods (exploring a, b); "
        "2 explained classes: class 0 (60), class 1 (20)"
    )
    assert out[-1].startswith(f"wrote clusters.csv, disagreement.csv, strategies.json, explore.html, explore-data to {tmp_path / 'cli'}")
    explore(maps, tmp_path / "python", classes=[0], n_clusters=3, neighbours=5, progress=False)
    for name in ("clusters.csv", "disagreement.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / name), pd.read_csv(tmp_path / "python" / name))
    assert set(pd.read_csv(tmp_path / "cli" / "clusters.csv").target) == {0}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--methods", "a,c"], "has no method 'c'; it has a, b"),
        (["--classes", "dog"], r"holds no maps explaining class 'dog'; it explains 0 \(class 0\), 1 \(class 1\)"),
        (["--clusters", "59", "--max-clusters", "59"], r"no class has the 61 maps a method needs to be clustered \(the most: 60\)"),
        (["--clusters", "5", "--max-clusters", "4"], "--clusters 5 is more than --max-clusters 4"),
        (["--feature-layer", "1"], "--feature-layer chooses the model's layer whose features are clustered: give --model too"),
        (["--feature-layer", "-1"], "argument --feature-layer: must be at least 0, got -1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(maps, tmp_path, capsys, arguments, message):
    code, err = run(capsys, "explore", str(maps), "--out", str(tmp_path / "exp"), *arguments)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert last_line(err).startswith("captum-gmar explore: error: ") and re.search(message, err), err
    assert not (tmp_path / "exp").exists()


def test_a_folder_that_is_not_a_maps_folder_is_refused(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code, err = run(capsys, "explore", str(tmp_path / "photos"), "--out", str(tmp_path / "exp"))
    assert code == 2
    assert err == f"captum-gmar explore: error: '{tmp_path / 'photos'}' holds no maps (maps.json is missing): name the folder a job wrote\n"
    code, err = run(capsys, "explore", str(tmp_path / "nowhere"))
    assert code == 2 and last_line(err).endswith("nowhere' is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_the_last_line_names_what_confirmed_the_first_shortcut_with_no_place():
    from types import SimpleNamespace

    from captum_gmar.cli.explore import _in_features

    def result(*clusters):
        return SimpleNamespace(summary={"features": {"layer": 4, "groups": [{"target_name": "Shirt", "clusters": list(clusters)}]}})

    plain = {"flagged": False, "confirmed_by": [], "cluster": 0, "size": 9, "direction": {"rise": 0.01}, "tone curve": {"rise": 0.02}}
    contrast = {
        "flagged": True,
        "confirmed_by": ["tone curve"],
        "cluster": 1,
        "size": 61,
        "direction": {"rise": 0.182},
        "tone curve": {"rise": 0.613},
    }
    assert _in_features(result(plain, contrast)) == (
        "; in the model's features (layer 4): 1 shortcut with no place, the first: Shirt, feature cluster 1 (61 images, "
        "confirmed by its tone curve's rise +0.613)"
    )
    both = {**contrast, "confirmed_by": ["direction", "tone curve"]}
    assert "confirmed by its direction's rise +0.182, its tone curve's rise +0.613)" in _in_features(result(both))
    joined = {**contrast, "size": 60, "parts": [32, 28]}
    assert "feature cluster 1 (60 images, joined from 32 + 28, confirmed by its tone curve's rise +0.613)" in _in_features(result(joined))
    blur = {**plain, "flagged": True, "confirmed_by": ["filter"], "filter": {"rise": 0.512}}
    assert _in_features(result(blur)).endswith("feature cluster 0 (9 images, confirmed by its filter's rise +0.512)")
    assert _in_features(result(plain)).endswith(
        "no cluster that no map isolates raised the class beyond its null, by its direction, its tone curve or its filter)"
    )
    assert _in_features(SimpleNamespace(summary={"features": None})) == ""
