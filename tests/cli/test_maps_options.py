"""The commands that read a maps folder (``explore``, ``heads``, ``repair``) refuse, in one
line before any work and with nothing written, a model other than the one the maps explain,
and options that name what does not fit (:mod:`captum_gmar.cli.maps_options`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import explain_scenes, last_line, run


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """The bundled sample scenes explained by the reference model with GAE."""
    return explain_scenes(tmp_path_factory.mktemp("job"), ["gae"])


def written(*roots: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for root in roots if root.exists() for path in root.rglob("*")}


@pytest.mark.parametrize(
    "command",
    [
        ["explore", "MAPS", "--images", "IMAGES", "--out", "OUT"],
        ["heads", "MAPS", "--cluster", "gae:0:1", "--images", "IMAGES", "--out", "OUT"],
        ["repair", "MAPS", "--cluster", "gae:0:1", "--images", "IMAGES", "--data", "IMAGES", "--out", "OUT"],
    ],
    ids=["explore", "heads", "repair"],
)
def test_another_model_than_the_maps_is_refused_in_one_line_before_any_work(job, other_model, tmp_path, capsys, command):
    places = {"MAPS": str(job / "maps"), "IMAGES": str(job / "scenes"), "OUT": str(tmp_path / "out")}
    before = written(job)
    code, err = run(capsys, *[places.get(word, word) for word in command], "--model", other_model)
    # the model loads to be fingerprinted: transformers' loading bar may come before the one line
    assert code == 2 and [line for line in err.strip().splitlines() if "Loading weights" not in line] == [last_line(err)], err
    assert last_line(err) == (  # a job run from Python names no model; one run by explain FOLDER does (--model NAME)
        f"captum-gmar {command[0]}: error: {job / 'maps'} holds the maps of another model than {other_model} "
        "(their weights differ): name the model they explain"
    )
    assert written(job) == before and not (tmp_path / "out").exists()


def test_explore_refuses_before_its_first_line_a_method_the_folder_lacks_and_an_out_inside_the_maps(job, tmp_path, capsys):
    for arguments, message in [
        (["--methods", "attnlrp", "--out", str(tmp_path / "exp")], "has no method 'attnlrp'; it has gae"),
        (["--out", str(job / "maps" / "exp")], "lies inside the maps folder"),
        (["--out", str(job / "scenes")], "is --images"),
    ]:
        code, err = run(capsys, "explore", str(job / "maps"), "--images", str(job / "scenes"), *arguments)
        out = capsys.readouterr().out
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
        assert "exploring" not in out + err
    assert not (tmp_path / "exp").exists() and not (job / "maps" / "exp").exists()


def test_heads_runs_inside_an_explore_folder_but_not_inside_the_maps_folder(job, tmp_path, capsys, no_model_loading):
    from captum_gmar import explore

    explore(job / "maps", tmp_path / "exp", progress=False)
    arguments = ["heads", str(job / "maps"), "--model", "vit-tiny", "--cluster", "gae:0:1", "--images", str(job / "scenes")]
    code, err = run(capsys, *arguments, "--out", str(job / "maps" / "heads"))
    assert code == 2 and "lies inside the maps folder" in err, err
    with pytest.raises(AssertionError, match="the model vit-tiny was loaded"):  # an explore folder's heads/: the checks pass
        run(capsys, *arguments, "--out", str(tmp_path / "exp" / "heads" / "gae-0-1"))
