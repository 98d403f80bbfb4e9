"""``--out`` checked before any work: a figure file or page (``explain``), or a results
folder (``demo``, ``compare``) that holds no file captum-gmar did not write."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..files import MANIFEST, first_names, foreign_files, other_results
from .options import CommandError


def check_output(path: str, figure: bool, files: Sequence[str] = ()) -> None:
    """``--out`` before any work, in a place that can be written (the missing folders of
    its path are made later): a figure file in a format matplotlib writes, or an ``.html``
    page (``figure=True``; one that exists is replaced, as named), or a results folder that is
    new, empty or written by this package (its :data:`~captum_gmar.files.MANIFEST`),
    where none of ``files`` exists unless this package wrote it. A symbolic link is refused
    where a file would be written: this package replaces its files, it never writes through
    a link (a results folder reached through a link is fine)."""
    from matplotlib.backend_bases import FigureCanvasBase  # light: no backend, no pyplot

    out = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.is_symlink() and figure:
        raise CommandError(
            f"--out {path!r} is a symbolic link (to {os.readlink(out)!r}), which captum-gmar does not write through: name a file"
        )
    if out.is_symlink() and not out.exists():
        raise CommandError(
            f"--out {path!r} is a symbolic link to {os.readlink(out)!r}, which does not exist: name a folder for the results"
        )
    if figure:
        if out.is_dir():
            raise CommandError(f"--out {path!r} is a folder: name the figure file, e.g. {str(out / 'explanation.png')!r}")
        if out.suffix.lower().lstrip(".") not in {*formats, "html"}:
            raise CommandError(
                f"--out {path!r}: the figure's format comes from its extension, one of {', '.join('.' + f for f in sorted(formats))}, "
                "or .html for an interactive page"
            )
    elif out.exists() and not out.is_dir():
        raise CommandError(f"--out {path!r} is a file: name a folder for the results")
    elif out.suffix.lower().lstrip(".") in formats:
        raise CommandError(
            f"--out {path!r} names a figure, but --out is the folder of the results (the figure is its comparison.png): "
            f"name a folder, e.g. {str(out.with_suffix(''))!r}"
        )
    elif out.is_dir() and any(out.iterdir()):
        _check_own_files(path, files)
    existing = out.parent if figure else out
    while not existing.exists():  # the nearest part of the path that exists must be a writable folder
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"--out {path!r}: {str(existing)!r} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK) or (figure and out.exists() and not os.access(out, os.W_OK)):
        raise CommandError(f"--out {path!r}: {str(out if figure and out.exists() else existing)!r} is not writable")


def _check_own_files(path: str, files: Sequence[str]) -> None:
    """Refuse a non-empty results folder ``path`` without this package's manifest (naming
    its first files), one where the manifest or a file of ``files`` is a symbolic link,
    or one where a file of ``files`` exists that the manifest does not list."""
    out = Path(path)
    for name in (MANIFEST, *files):
        if (out / name).is_symlink():
            raise CommandError(
                f"--out {path!r} holds {name!r} as a symbolic link (to {os.readlink(out / name)!r}), which captum-gmar "
                "does not write through: remove the link, or name a new or empty folder"
            )
    if not (out / MANIFEST).is_file():
        names = sorted(entry.name for entry in out.iterdir())
        raise CommandError(f"--out {path!r} holds files captum-gmar did not write ({first_names(names)}): name a new or empty folder")
    try:
        foreign = foreign_files(out, files)
    except ValueError as error:
        raise CommandError(f"{error} for --out") from error
    if foreign:
        raise CommandError(
            f"--out {path!r} holds {foreign[0]!r}, which captum-gmar did not write and does not replace: move it, or name a new or empty folder"
        )
    others = other_results(out, files) if files else []
    if others:
        raise CommandError(f"--out {path!r} holds another command's results ({first_names(others)}): name a new or empty folder")


def check_apart(path: str, inputs: Mapping[str, str | None], nest_in: str | None = None) -> None:
    """``--out`` refused where a run would write into what it reads, or into another
    command's results: the folder of one of ``inputs`` (what the option reads -> its folder)
    or a folder inside it, or a folder inside a results folder captum-gmar wrote (its
    :data:`~captum_gmar.files.MANIFEST`), unless that folder's manifest lists ``nest_in``
    (``heads`` runs go inside an explore folder, whose page lists them)."""
    out = Path(path).resolve()
    for what, folder in inputs.items():
        if folder is not None and out.is_relative_to(Path(folder).resolve()):
            where = "is" if out == Path(folder).resolve() else "lies inside"
            raise CommandError(f"--out {path!r} {where} {what} ({folder}), which this command reads: name a folder outside it")
    for parent in out.parents:
        if (parent / MANIFEST).is_file():
            try:
                listed = other_results(parent, [nest_in] if nest_in else [])
            except ValueError:
                listed = ["an unreadable manifest"]
            if listed:
                raise CommandError(
                    f"--out {path!r} lies inside {str(parent)!r}, another command's results ({first_names(listed)}): name a folder outside it"
                )
