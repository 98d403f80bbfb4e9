"""What :func:`~captum_gmar.exploration.explore` reads from a maps folder, checked before
anything is written: the methods and classes asked for, every record's fields per method,
each method's maps on its grid (read a chunk at a time), and the refusals of a folder a job
is still writing, of maps of two shapes, of NaN maps and of maps that say nothing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..dataset_maps import MapRecord, load_maps, read_maps
from ..dataset_maps.checks import read_job
from ..files import check_not_in_use
from .normalise import Part, flat_maps, pool
from .tables import Rows

__all__ = [
    "CHUNK",
    "check_finished",
    "check_not_flat",
    "chosen_methods",
    "chosen_targets",
    "job_class_names",
    "map_grid",
    "method_rows",
    "read_fields",
    "read_group_maps",
]

#: maps read per call of read_maps: a few shards' worth
CHUNK = 4096


def check_finished(folder: str | os.PathLike[str], records: Any) -> None:
    """Refuse a maps folder a job is still writing (it holds the folder's lock), saying how
    far it has come: its clusters would change as the job goes on."""
    try:
        check_not_in_use(folder)
    except ValueError:
        items = (read_job(folder) or {}).get("items")
        raise ValueError(
            f"{str(folder)!r} is still being written by a running captum-gmar job ({records.images:,} of "
            f"{f'{items:,}' if isinstance(items, int) else 'its'} images explained so far): "
            "explore it once the job has ended"
        ) from None
    except OSError:  # a folder we may not lock (read-only): no job can be writing it
        return


def job_class_names(folder: str | os.PathLike[str]) -> dict[int, str]:
    """Every class's name, as the job kept them (none for a job that did not)."""
    return dict(enumerate((read_job(folder) or {}).get("class_names") or []))


def chosen_methods(folder: str | os.PathLike[str], methods: Sequence[str] | None) -> list[str] | None:
    """The methods asked for, each checked against the job (``None``: all of the job's)."""
    if methods is None:
        return None
    if isinstance(methods, str) or not methods:
        raise ValueError(f"methods must be a list of method keys, got {methods!r}")
    for key in methods:
        load_maps(folder, method=key)  # a method not in the job: its ValueError names the job's
    return list(dict.fromkeys(methods))


def chosen_targets(folder: str | os.PathLike[str], records: Sequence[MapRecord], classes: Sequence[int | str] | None) -> set[int] | None:
    """The explained classes asked for, as indices, each checked against the maps
    (``None``: all)."""
    if classes is None:
        return None
    if isinstance(classes, str) or not classes:
        raise ValueError(f"classes must be a list of class indices or names, got {classes!r}")
    names = {record.target: record.target_name for record in records}
    by_name = {name: target for target, name in names.items()}
    chosen = set()
    for given in classes:
        target = by_name.get(given) if isinstance(given, str) and not given.isdigit() else int(given)
        if target not in names:
            raise ValueError(
                f"{str(folder)!r} holds no maps explaining class {given!r}; it explains {', '.join(f'{t} ({n})' for t, n in sorted(names.items()))}"
            )
        chosen.add(target)
    return chosen


def read_fields(
    records: Sequence[MapRecord], methods: list[str] | None, targets: set[int] | None
) -> tuple[dict[str, Rows], dict[str, tuple[int, ...]], dict[int, str]]:
    """Every record's fields (not its map), per method (and of ``targets`` only, where
    given); each method's map shape; and the explained classes' names (index -> name)."""
    fields: dict[str, dict[str, list[Any]]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    class_names: dict[int, str] = {}
    for record in records:
        if (methods is not None and record.method not in methods) or (targets is not None and record.target not in targets):
            continue
        class_names.setdefault(record.target, record.target_name)
        if shapes.setdefault(record.method, tuple(record.shape)) != tuple(record.shape):
            raise ValueError(
                f"the maps of {record.method!r} are of two shapes ({shapes[record.method]} and {tuple(record.shape)}): explore reads one grid per method"
            )
        columns = fields.setdefault(
            record.method, {name: [] for name in ("image", "item", "target", "label", "predicted", "score", "margin")}
        )
        for name, column in columns.items():
            column.append(getattr(record, name))
    rows = {
        key: Rows(
            columns["image"],
            np.array(columns["item"], dtype=np.int64),
            np.array(columns["target"], dtype=np.int64),
            np.array(columns["label"], dtype=np.int64),
            np.array(columns["predicted"], dtype=np.int64),
            np.array(columns["score"], dtype=np.float64),
            np.array(columns["margin"], dtype=np.float64),
        )
        for key, columns in fields.items()
    }
    if methods is not None:
        rows = {key: rows[key] for key in methods if key in rows}
    reference = next(iter(rows.values()), None)
    for key, other in rows.items():  # every image has every method: rows line up
        if reference is not None and not (np.array_equal(other.item, reference.item) and np.array_equal(other.target, reference.target)):
            raise ValueError(
                f"the maps of {key!r} are not of the same images and targets as the other methods': the maps folder is damaged"
            )
    return rows, shapes, dict(sorted(class_names.items()))


def method_rows(folder: str | os.PathLike[str], method: str) -> Rows:
    """One method's records' fields, every class's, in the rows explore reads them in."""
    return read_fields(load_maps(folder, method), None, None)[0][method]


def map_grid(shape: tuple[int, ...], max_side: int) -> tuple[int, int]:
    """The grid maps of ``shape`` are kept on: at most ``max_side`` on a side."""
    scale = min(1.0, max_side / max(shape))
    return (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))


def read_group_maps(
    records: Sequence[MapRecord],
    keys: list[str],
    targets: set[int] | None,
    rows: dict[str, Rows],
    grids: dict[str, tuple[int, int]],
    progress: bool,
) -> dict[str, np.ndarray]:
    """Each method's maps (of ``targets``, where given), ``float32 (rows, h, w)`` on its
    grid, read a chunk at a time."""
    values = {key: np.empty((len(rows[key].item), *grids[key]), dtype=np.float32) for key in keys}
    filled = dict.fromkeys(keys, 0)
    pending: dict[str, list[MapRecord]] = {key: [] for key in keys}

    def flush(key: str) -> None:
        chunk = pending[key]
        values[key][filled[key] : filled[key] + len(chunk)] = pool(read_maps(chunk).numpy(), grids[key])
        filled[key] += len(chunk)
        bar.update(len(chunk))
        pending[key] = []

    with tqdm(total=sum(len(rows[key].item) for key in keys), unit="map", desc="read maps", disable=not progress) as bar:
        for record in records:
            if record.method in pending and (targets is None or record.target in targets):
                pending[record.method].append(record)
                if len(pending[record.method]) == CHUNK:
                    flush(record.method)
        for key in keys:
            if pending[key]:
                flush(key)
    for key, array in values.items():
        finite = np.isfinite(array).all(axis=(1, 2))
        if not finite.all():
            bad = np.flatnonzero(~finite)
            first = rows[key]
            raise ValueError(
                f"{len(bad)} maps of {key!r} hold NaN or infinite values (the first: image {first.image[bad[0]]!r}, target {first.target[bad[0]]}); "
                "explain those images again"
            )
    return values


def check_not_flat(
    folder: str | os.PathLike[str], values: dict[str, np.ndarray], groups: dict[int, np.ndarray], part: Part, needed: int
) -> None:
    """Refuse maps that say nothing (constant), before any file is written: a method whose
    maps are all flat, or no group left with ``needed`` maps that are not."""
    left = 0
    for key, array in values.items():
        flat = flat_maps(array, part)
        if flat.all():
            raise ValueError(
                f"{str(folder)!r}: every map of {key!r} is constant ({part} part): it shows nothing to cluster; "
                "leave the method out (methods=, --methods) or explain those images again"
            )
        left = max(left, *(int((~flat[members]).sum()) for members in groups.values()))
    if left < needed:
        raise ValueError(
            f"{str(folder)!r}: no class has the {needed} maps that are not constant a method needs to be clustered (the most: {left}); "
            "explain more images, or lower neighbours and max_clusters (--neighbours, --max-clusters)"
        )
