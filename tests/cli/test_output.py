"""``--out``: refused before any model loads where it is not a file or folder captum-gmar
may write, never written through a link or over a file of the user."""

import json
from pathlib import Path

from cli_helpers import existing_results, run

from captum_gmar.files import MANIFEST


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
    (own / MANIFEST).write_text(json.dumps({"files": ["results.csv", "results.run.json", "summary.md", "summary.json"]}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("{")
    refused = f"--out {str(user)!r} holds files captum-gmar did not write (notes.txt, summary.md): name a new or empty folder"
    cases = [
        (["compare", "--model", model_dir, "--out", str(user)], refused),
        (["compare", "--model", model_dir, "--out", str(user), "--overwrite"], refused),
        (["demo", "--out", str(user)], refused),
        (
            ["compare", "--model", model_dir, "--out", str(own), "--overwrite"],
            f"--out {str(own)!r} holds 'comparison.png', which captum-gmar did not write and does not replace: move it, or name a new or empty folder",
        ),
        (["compare", "--model", model_dir, "--out", str(broken)], f"cannot read {str(broken / MANIFEST)!r}"),
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
    (manifest / MANIFEST).symlink_to(user_json)
    (tmp_path / "dangling").mkdir()
    dangling = existing_results(tmp_path / "dangling")
    (dangling / "comparison.png").symlink_to(tmp_path / "made-outside.png")
    (tmp_path / "out-link").symlink_to(tmp_path / "no-such-folder")
    (tmp_path / "figure.png").symlink_to(mine)
    compare = ["compare", "--model", model_dir, "--device", "cpu"]
    cases = [
        ([*compare, "--out", str(summary), "--overwrite"], f"holds 'summary.md' as a symbolic link (to {str(mine)!r})"),
        ([*compare, "--out", str(manifest)], f"holds {MANIFEST!r} as a symbolic link"),
        (["demo", "--out", str(dangling)], "holds 'comparison.png' as a symbolic link"),
        ([*compare, "--out", str(tmp_path / "out-link")], "is a symbolic link to"),
        (["explain", photo, "--out", str(tmp_path / "figure.png")], "is a symbolic link (to"),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    assert mine.read_text() == "the user's file" and user_json.read_text() == '{"files": []}'
    assert not (tmp_path / "made-outside.png").exists() and not (tmp_path / "no-such-folder").exists()
