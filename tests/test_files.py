"""Results are written without following symbolic links; a folder's lock keeps a second
job out and dies with the process that holds it."""

import os
import re
import signal
import stat
import subprocess
import sys
import threading

import pytest

from captum_gmar.files import (
    LOCK,
    MANIFEST,
    check_folder,
    check_not_in_use,
    claim_files,
    folder_lock,
    open_no_follow,
    replacing,
    write_atomic,
)

HOLD = (
    "import sys; from captum_gmar.files import folder_lock\nwith folder_lock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()"
)


def holding(folder):
    """A second process that holds ``folder``'s lock until its stdin closes (or it is killed)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"held\n"
    return process


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


def test_a_folder_locked_by_another_process_is_refused_until_it_dies(tmp_path):
    holder = holding(tmp_path)
    try:
        in_use = rf"^{re.escape(repr(str(tmp_path)))} is in use: a captum-gmar job is running there \(process {holder.pid} on {os.uname().nodename}\)"
        with pytest.raises(ValueError, match=in_use):
            check_not_in_use(tmp_path)
        with pytest.raises(ValueError, match=in_use), folder_lock(tmp_path):
            pass
        holder.send_signal(signal.SIGKILL)  # the system releases a dead process's lock
        holder.wait(timeout=30)
        check_not_in_use(tmp_path)
        with folder_lock(tmp_path), folder_lock(tmp_path):  # the holder's thread may enter again
            check_not_in_use(tmp_path)
            other = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], capture_output=True, timeout=60)
            assert other.returncode == 1 and b"a captum-gmar job is running there" in other.stderr
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / LOCK).is_file()  # kept: removing a lock file others may have opened would split the lock


def test_another_thread_is_refused_and_a_linked_lock_file_is_not_followed(tmp_path):
    refused = []

    def check() -> None:
        try:
            check_not_in_use(tmp_path)
        except ValueError as error:
            refused.append(str(error))

    with folder_lock(tmp_path):
        thread = threading.Thread(target=check)
        thread.start()
        thread.join()
    assert len(refused) == 1 and f"(process {os.getpid()} on {os.uname().nodename})" in refused[0]
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / LOCK).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="is a symbolic link"), folder_lock(linked):
        pass
    assert not (tmp_path / "elsewhere").exists()


def test_a_full_disk_leaves_the_old_file_and_says_which_folder(tmp_path, monkeypatch):
    import errno

    import captum_gmar.files
    from captum_gmar.errors import DiskFullError

    path = tmp_path / "index.csv"
    path.write_text("old rows")

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(captum_gmar.files.os, "fsync", full)
    with pytest.raises(DiskFullError, match=rf"^no space left on the disk of {re.escape(repr(str(tmp_path)))} to write 'index.csv'"):
        write_atomic(path, "new rows")
    assert path.read_text() == "old rows" and [p.name for p in tmp_path.iterdir()] == ["index.csv"]


WINDOWS = """
import sys, types
calls = []
sys.platform = "win32"  # no fcntl there: msvcrt locks the file's first byte
sys.modules["msvcrt"] = types.SimpleNamespace(LK_NBLCK=2, LK_UNLCK=0, locking=lambda fd, mode, n: calls.append((mode, n)))
from captum_gmar.files import check_not_in_use, folder_lock
with folder_lock(sys.argv[1]):
    check_not_in_use(sys.argv[1])
print(calls)
"""


def test_the_lock_takes_msvcrt_where_there_is_no_fcntl(tmp_path):
    done = subprocess.run([sys.executable, "-c", WINDOWS, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[(2, 1), (0, 1)]"


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
