"""The user cache for files built on the user's machine (the converted DINOv2 weights).

Location: ``$CAPTUM_GMAR_CACHE`` if set, else ``$XDG_CACHE_HOME/captum_gmar``, else
``~/.cache/captum_gmar``. Every entry is a folder that appears complete or not at all:
it is written under a temporary name beside its final name and then renamed, so a
second process never reads a half-written file, and one that finds the folder does no
work again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root", "publish_dir"]

#: Environment variable that overrides the cache folder.
CACHE_ENV = "CAPTUM_GMAR_CACHE"


def cache_root() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "captum_gmar"


@contextmanager
def publish_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; when the block ends without an
    error, rename it to ``final`` (atomic on one file system).

    If another process published ``final`` in the meantime, its folder is kept and
    this one discarded: both were built from the same inputs. The temporary folder is
    removed after an error too.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
