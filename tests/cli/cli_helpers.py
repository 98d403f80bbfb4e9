"""Helpers of the command line's tests: run a command expecting it to exit, make model
folders and earlier results."""

import json

import pytest

from captum_gmar.cli import main
from captum_gmar.files import MANIFEST


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def make_folder(tmp_path, name, architecture, weights=True):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"architectures": ["{architecture}"], "id2label": {{"0": "a"}}, "patch_size": 8}}')
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    return str(folder)


def existing_results(tmp_path):
    """An output folder holding the results of an earlier run."""
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "results.csv").write_text("method,item\n")
    (out / MANIFEST).write_text(json.dumps({"files": ["results.csv", "results.run.json", "summary.md", "summary.json", "comparison.png"]}))
    return out


def last_line(err: str) -> str:
    """The error line; transformers' progress bars may come before it."""
    return err.strip().splitlines()[-1]
