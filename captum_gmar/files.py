"""Writing results without following symbolic links.

A results folder may hold a symbolic link that someone put there, by mistake or not, under
the name of a file the package writes. Every write therefore goes to a new file made in
the same folder and then renamed onto the name (:func:`write_atomic`, :func:`replacing`):
a rename replaces a link itself and never writes into what it points to, and a crash
leaves the old file or the new one, never half of one. A file that is appended to as a
run goes on is opened with ``O_NOFOLLOW`` (:func:`open_no_follow`), so that a link there
is an error instead of being followed.

A results folder also lists the files the package wrote there (:data:`MANIFEST`): a later
run replaces those, and only those (:func:`claim_files`). A job that writes a folder for a
long time holds the folder's lock (:func:`folder_lock`), so that a second job never writes
it at the same time.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from .errors import DiskFullError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

if sys.platform == "win32":  # no fcntl: msvcrt locks a byte of the file instead
    import msvcrt
else:
    import fcntl

__all__ = [
    "LOCK",
    "MANIFEST",
    "check_folder",
    "check_not_in_use",
    "claim_files",
    "first_names",
    "folder_lock",
    "foreign_files",
    "open_no_follow",
    "other_results",
    "own_files",
    "replacing",
    "save_figure",
    "write_atomic",
]

#: the list, in a results folder, of the files this package wrote there: the only ones it
#: replaces
MANIFEST = ".captum-gmar-output.json"
#: the file in a folder that a job writing it holds locked (:func:`folder_lock`); it names
#: the process
LOCK = ".captum-gmar.lock"

#: a full disk, or a disk quota reached
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # Windows has no EDQUOT
#: 0 where the system has no such flag (Windows), whose links need privileges to make
_NO_FOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FLAGS = {
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "r+b": os.O_RDWR,
}


@contextmanager
def replacing(path: str | os.PathLike[str], binary: bool = False, newline: str | None = None) -> Iterator[IO[Any]]:
    """A new file, open for writing (UTF-8 text, or bytes with ``binary``), that replaces
    ``path`` when the block ends without an error, and is removed when it raises (a full
    disk as :class:`~captum_gmar.errors.DiskFullError`, naming the folder).

    The file is made exclusively, under a fresh name in ``path``'s folder, with the
    permissions a new file gets there (``0o666`` less the umask), then synced and renamed
    onto ``path``: a symbolic link at ``path`` is replaced, never written through.
    """
    path = Path(path)
    while True:  # a name nobody holds: O_EXCL fails on any file there, a link included
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(descriptor, "wb" if binary else "w", encoding=None if binary else "utf-8", newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            raise DiskFullError(
                f"no space left on the disk of {str(path.parent)!r} to write {path.name!r} ({error.strerror}); it is as it was"
            ) from error
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace ``path`` with a file holding ``data`` (text as UTF-8), through
    :func:`replacing`: a symbolic link at ``path`` is replaced, not written through."""
    with replacing(path, binary=isinstance(data, bytes)) as handle:
        handle.write(data)


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """Save ``figure`` to ``path`` in the format of its extension, through :func:`write_atomic`,
    and close it: the package's figures are files, and pyplot would otherwise hold every one
    for the life of the process (a notebook or service running many comparisons)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=Path(path).suffix.lstrip(".").lower(), dpi=dpi)
    finally:
        plt.close(figure)
    write_atomic(path, buffer.getvalue())


def open_no_follow(path: str | os.PathLike[str], mode: Literal["a", "w", "r+b"], newline: str | None = None) -> IO[Any]:
    """``path`` opened to append UTF-8 text (``"a"``, made if missing), to write it from
    the start (``"w"``) or to read and write bytes (``"r+b"``), refusing a symbolic link.

    Raises:
        OSError: ``ELOOP``, naming ``path``, where it is a symbolic link (dangling or not).
    """
    try:
        descriptor = os.open(path, _OPEN_FLAGS[mode] | _NO_FOLLOW, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP and os.path.islink(path):
            raise OSError(errno.ELOOP, "is a symbolic link, which captum-gmar does not write through", str(path)) from None
        raise
    if mode == "r+b":
        return os.fdopen(descriptor, mode)
    return os.fdopen(descriptor, mode, encoding="utf-8", newline=newline)


def own_files(folder: str | os.PathLike[str]) -> set[str]:
    """The files this package wrote in ``folder``, as its :data:`MANIFEST` lists them (none
    where it has no manifest).

    Raises:
        ValueError: the manifest cannot be read.
    """
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return set()
    try:
        return set(json.loads(manifest.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"cannot read {str(manifest)!r} ({error!r}): name a new or empty folder") from error


def foreign_files(folder: str | os.PathLike[str], files: Sequence[str]) -> list[str]:
    """The names of ``files`` that exist in ``folder`` but that this package did not write
    there (see :func:`own_files`): it never replaces them."""
    own = own_files(folder)
    return [name for name in files if os.path.lexists(Path(folder) / name) and name not in own]


def claim_files(folder: str | os.PathLike[str], files: Sequence[str]) -> None:
    """List ``files`` in ``folder``'s :data:`MANIFEST` (making the folder), before any of
    them is written, so that a run cut short leaves them marked as this package's.

    Raises:
        FileExistsError: one of ``files`` exists there and this package did not write it.
    """
    from . import __version__

    folder = Path(folder)
    foreign = foreign_files(folder, files)
    if foreign:
        raise FileExistsError(_foreign(folder, foreign[0]))
    own = own_files(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(
        folder / MANIFEST, json.dumps({"written_by": f"captum-gmar {__version__}", "files": sorted(own | set(files))}, indent=2) + "\n"
    )


def check_folder(folder: str | os.PathLike[str], files: Sequence[str]) -> None:
    """Refuse, before any work, a folder where this package would write ``files``: one
    that is a file, one that holds files but no :data:`MANIFEST` (someone else's folder),
    one where one of ``files`` is a symbolic link, or one where one of them exists and
    this package did not write it. A missing or empty folder passes; nothing is made.

    Raises:
        ValueError: one line naming the folder and what to do.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is a file, not a folder: name a new or empty folder")
    linked = [name for name in files if (folder / name).is_symlink()]
    if linked:  # the package replaces its files and never writes through a link
        raise ValueError(f"{str(folder / linked[0])!r} is a symbolic link, which captum-gmar does not write through: remove it")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        shown = ", ".join(sorted(entry.name for entry in folder.iterdir())[:3])
        raise ValueError(f"{str(folder)!r} holds files captum-gmar did not write ({shown}): name a new or empty folder")
    foreign = foreign_files(folder, files)
    if foreign:
        raise ValueError(_foreign(folder, foreign[0]))
    others = other_results(folder, files)
    if others:
        raise ValueError(f"{str(folder)!r} holds another command's results ({first_names(others)}): name a new or empty folder")


def other_results(folder: str | os.PathLike[str], files: Sequence[str]) -> list[str]:
    """The files this package wrote in ``folder`` where none of them is one of ``files``:
    another command's results (a maps folder, an explore folder, a repaired model), which a
    command writing ``files`` must not mix its own into. Empty where the folder holds none
    of this package's files, or some of ``files`` (an earlier run of the same command)."""
    own = own_files(folder)
    return [] if own & set(files) else sorted(own)


def first_names(names: Sequence[str]) -> str:
    """The first three of ``names``, and how many more, for a one-line message."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _foreign(folder: Path, name: str) -> str:
    return f"{str(folder)!r} holds {name!r}, which captum-gmar did not write and does not replace: move it, or name a new or empty folder"


#: the locks this process holds: (lock file, thread) -> how many blocks hold it
_HELD: dict[tuple[str, int], int] = {}
_HELD_GUARD = threading.Lock()
#: errors of a file system that has no locks (some network and FUSE file systems)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``folder``'s lock for the block: an exclusive lock of the operating system on
    its :data:`LOCK` file (made if missing, never through a symbolic link), which the
    system releases when the process ends, however it ends (SIGKILL included), so a job
    killed never leaves the folder locked. The thread that holds it may enter the block
    again (the command line holds it around :func:`~captum_gmar.dataset_maps.explain_dataset`'s
    own). ``flock`` on POSIX systems, ``msvcrt.locking`` on Windows; on a file system
    without locks a warning says that nothing keeps a second job out.

    Raises:
        ValueError: another process (or thread) holds the lock: a job is running there.
    """
    path = Path(folder) / LOCK
    key = (os.path.realpath(path), threading.get_ident())
    with _HELD_GUARD:
        held = _HELD.get(key, 0)
        _HELD[key] = held + 1
    descriptor = None
    try:
        if not held:
            descriptor = _acquire(path)
            if descriptor is None:
                raise _in_use(folder)
            if descriptor >= 0:  # the holder named for the job that is refused
                os.ftruncate(descriptor, 0)
                os.write(descriptor, f"process {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        with _HELD_GUARD:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        if descriptor is not None and descriptor >= 0:
            _release(descriptor)


def check_not_in_use(folder: str | os.PathLike[str]) -> None:
    """Refuse ``folder`` where another process or thread holds its lock (:func:`folder_lock`),
    before a job starts; this thread's own lock is no refusal. Takes and releases a shared
    lock where it is free (on POSIX systems: processes that ask at once do not see each
    other, as the ranks of one job do).

    Raises:
        ValueError: a job is running there, naming its process.
    """
    path = Path(folder) / LOCK
    with _HELD_GUARD:
        if (os.path.realpath(path), threading.get_ident()) in _HELD:
            return
    if not path.is_file() or path.is_symlink():
        return
    descriptor = _acquire(path, shared=True)
    if descriptor is None:
        raise _in_use(folder)
    if descriptor >= 0:
        _release(descriptor)


def _in_use(folder: str | os.PathLike[str]) -> ValueError:
    return ValueError(
        f"{str(folder)!r} is in use: a captum-gmar job is running there ({_holder(Path(folder) / LOCK)}); "
        "wait for it to end, or name another folder"
    )


def _acquire(path: Path, shared: bool = False) -> int | None:
    """``path`` opened and locked (``shared``: a lock that other shared ones do not
    exclude, on POSIX systems): its descriptor; ``None`` where another holds the lock,
    ``-1`` where the file system has no locks (after a warning)."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError(f"{str(path)!r} is a symbolic link, which captum-gmar does not write through: remove it") from None
        raise
    try:
        if sys.platform == "win32":
            os.lseek(descriptor, 0, os.SEEK_SET)
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)  # the first byte: raises at once where it is locked
        else:
            fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno in _NO_LOCKS:
            warnings.warn(f"{str(path.parent)!r} cannot be locked ({error.strerror}): make sure no other job writes it", stacklevel=4)
            return -1
        if isinstance(error, BlockingIOError) or error.errno in (errno.EACCES, errno.EAGAIN, errno.EDEADLK):
            return None
        raise
    return descriptor


def _release(descriptor: int) -> None:
    if sys.platform == "win32":
        os.lseek(descriptor, 0, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
    os.close(descriptor)  # closing releases flock's lock


def _holder(path: Path) -> str:
    """The process that holds ``path``'s lock, as it wrote itself there."""
    try:
        return path.read_text(errors="replace").strip() or "a process"
    except OSError:  # Windows refuses to read a locked byte
        return "a process"
