"""Results are written without following symbolic links."""

import os
import stat

import pytest

from captum_gmar.files import MANIFEST, check_folder, claim_files, open_no_follow, replacing, write_atomic


def test_write_atomic_replaces_a_link_instead_of_writing_through_it(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's file")
    (tmp_path / "summary.md").symlink_to(mine)
    (tmp_path / "figure.png").symlink_to(tmp_path / "elsewhere.png")  # dangling
    write_atomic(tmp_path / "summary.md", "a summary")
    write_atomic(tmp_path / "figure.png", b"\x89PNG")
    assert mine.read_text() == "the user's file" and not (tmp_path / "elsewhere.png").exists()
    assert not (tmp_path / "summary.md").is_symlink() and (tmp_path / "summary.md").read_text() == "a summary"
    assert (tmp_path / "figure.png").read_bytes() == b"\x89PNG"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "summary.md").stat().st_mode) == 0o666 & ~umask  # as a file made with open()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "mine.txt", "summary.md"]  # no temporary file left


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old rows")
    with pytest.raises(RuntimeError), replacing(path) as handle:
        handle.write("new rows, cut short")
        raise RuntimeError
    assert path.read_text() == "old rows" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW on this system")
@pytest.mark.parametrize("mode", ["a", "w", "r+b"])
def test_open_no_follow_refuses_a_link(tmp_path, mode):
    mine = tmp_path / "mine.csv"
    mine.write_text("the user's file")
    (tmp_path / "results.csv").symlink_to(mine)
    with pytest.raises(OSError, match="is a symbolic link, which captum-gmar does not write through: .*results.csv"):
        open_no_follow(tmp_path / "results.csv", mode)
    assert mine.read_text() == "the user's file"
    with open_no_follow(mine, mode) as handle:  # a file of its own is opened as asked
        handle.write(b"x" if mode == "r+b" else "x")
    assert mine.read_text() == {"a": "the user's filex", "w": "x", "r+b": "xhe user's file"}[mode]


def test_check_folder_refuses_folders_the_package_may_not_write_into(tmp_path):
    check_folder(tmp_path / "new", ["a.csv"])  # missing: fine
    check_folder(tmp_path, ["a.csv"])  # empty: fine
    assert not (tmp_path / "new").exists() and not (tmp_path / MANIFEST).exists()  # nothing made
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files captum-gmar did not write \(notes.txt\): name a new or empty folder"):
        check_folder(tmp_path, ["a.csv"])
    claim_files(tmp_path / "own", ["a.csv"])
    check_folder(tmp_path / "own", ["a.csv", "b.csv"])  # the package's folder
    (tmp_path / "own" / "b.csv").write_text("someone's")
    with pytest.raises(ValueError, match="holds 'b.csv', which captum-gmar did not write and does not replace"):
        check_folder(tmp_path / "own", ["a.csv", "b.csv"])
    (tmp_path / "own" / "a.csv").symlink_to(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="a.csv' is a symbolic link, which captum-gmar does not write through"):
        check_folder(tmp_path / "own", ["a.csv"])
    with pytest.raises(ValueError, match="notes.txt' is a file, not a folder"):
        check_folder(tmp_path / "notes.txt", ["a.csv"])
