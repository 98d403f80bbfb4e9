"""A maps folder explored: :func:`explore` finds each class's strategies and where the
methods disagree, and writes them to a folder the explorer page reads.

Layout of ``EXP/``::

    clusters.csv        one row per map (:data:`CLUSTER_COLUMNS`)
    disagreement.csv    one row per explained image and target (:data:`DISAGREEMENT_COLUMNS`,
                        then each pair's and each method's columns); only with two methods or more
    strategies.json     per method and explained class: the spectrum, the clusters ranked by
                        suspicion with their mean maps, typical images and purity
                        (:func:`explore` documents its keys)
    explore.html        the explorer page, with explore-data/ and thumbs/
                        (:mod:`~captum_gmar.exploration.page`)

The maps are read through :func:`~captum_gmar.dataset_maps.load_maps` and
:func:`~captum_gmar.dataset_maps.read_maps`, a few thousand at a time, into one
preallocated float32 array per method: memory grows with the number of maps (4 bytes
per patch each), never with a Python object per map.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..dataset_maps import MapRecord, load_maps, read_maps
from ..files import check_folder, claim_files, replacing, write_atomic
from ._extra import require
from .disagreement import FIGURES, Disagreement, check_top_share, find_disagreement
from .normalise import Part, flat_maps, pool
from .page import DATA, PAGE, THUMBS, Placement, write_page
from .strategies import Strategies, check_settings, find_strategies, maps_needed

__all__ = ["CLUSTER_COLUMNS", "DISAGREEMENT_COLUMNS", "EXPLORE_FILES", "FORMAT", "Exploration", "explore"]

#: the ``format`` entry of ``strategies.json``
FORMAT = "captum-gmar-explore/1"
CLUSTERS, DISAGREEMENT, STRATEGIES = "clusters.csv", "disagreement.csv", "strategies.json"
#: the files an explore folder holds (its manifest lists them)
EXPLORE_FILES = (CLUSTERS, DISAGREEMENT, STRATEGIES, PAGE, DATA, THUMBS)
#: ``clusters.csv``'s columns: one row per map
CLUSTER_COLUMNS: dict[str, str] = {
    "image": "the image, as the maps folder's index.csv names it",
    "item": "its position in the data set (0-based)",
    "method": "the method's key",
    "target": "the explained class (index)",
    "target_name": "its name",
    "label": "the image's label, -1 where the data has none",
    "predicted": "the model's top class",
    "score": "the explained class's score",
    "margin": "the score less the other classes' best (empty with one class)",
    "cluster": "the map's cluster among the maps of its method and target; -1: flat (constant), set aside; empty: not clustered (too few maps)",
    "rank": "its cluster's rank by suspicion, 1 the most suspicious; empty where cluster is -1 or empty",
    "x": "the map's embedding, first coordinate; empty where not clustered",
    "y": "second coordinate",
}
#: ``disagreement.csv``'s first columns; then ``FIGURE:A:B`` for each of
#: :data:`~captum_gmar.exploration.disagreement.FIGURES` (``spearman``, ``pearson``,
#: ``overlap``, ``bhattacharyya``) and each pair of methods ``A``, ``B``; ``disagreement:M``
#: for each method ``M`` (its disagreement with the others); ``disagreement`` (the score);
#: ``odd_method`` (the method that disagrees most, empty with two methods)
DISAGREEMENT_COLUMNS: dict[str, str] = {
    "image": "the image",
    "item": "its position in the data set",
    "target": "the explained class",
    "target_name": "its name",
    "label": "the image's label, -1 where none",
    "predicted": "the model's top class",
    "score": "the explained class's score",
    "margin": "the score less the other classes' best (empty with one class)",
}
#: maps read per call of read_maps: a few shards' worth
_CHUNK = 4096
#: significant digits of the written floats
_DIGITS = 6


@dataclass(frozen=True)
class Exploration:
    """What :func:`explore` found and wrote."""

    #: the folder written
    folder: Path
    #: ``(method, target)`` -> the strategies of that method's maps of that class
    strategies: dict[tuple[str, int], Strategies]
    #: ``(method, target)`` -> why those maps were not clustered
    skipped: dict[tuple[str, int], str]
    #: the methods' disagreement, row ``i`` the ``i``-th explained (image, target) in the
    #: maps folder's order (``None`` with one method)
    disagreement: Disagreement | None
    #: the files written, relative to ``folder``
    files: tuple[str, ...]


@dataclass
class _Rows:
    """The fields of one method's records, in the maps folder's order (row ``i`` of every
    method is the same image and target)."""

    image: list[str]
    item: np.ndarray
    target: np.ndarray
    label: np.ndarray
    predicted: np.ndarray
    score: np.ndarray
    margin: np.ndarray


def explore(
    maps_folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    methods: Sequence[str] | None = None,
    classes: Sequence[int | str] | None = None,
    images: str | os.PathLike[str] | None = None,
    n_clusters: int | None = None,
    max_clusters: int = 10,
    neighbours: int = 10,
    part: Part = "positive",
    typical: int = 8,
    top_share: float = 0.1,
    max_side: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> Exploration:
    """Find the strategies of each method and class in a maps folder, and where the
    methods disagree, and write them to ``out``.

    The maps of each method and explained class (``target``) are clustered with
    :func:`~captum_gmar.exploration.find_strategies`; a group with fewer maps than it
    needs (:func:`~captum_gmar.exploration.strategies.maps_needed`, flat maps not
    counted) is skipped, with a note in ``strategies.json`` and a line on stderr. Every
    explained image's maps are compared across methods with
    :func:`~captum_gmar.exploration.find_disagreement`. Maps larger than ``max_side`` on a
    side (a job's ``resolution="pixels"``) are averaged onto a grid of at most that side
    as they are read.

    ``strategies.json`` holds ``format``, ``maps`` (the folder read), ``settings``,
    ``methods``, ``class_names`` (index -> name, of the classes seen as targets),
    ``files`` (those written), ``disagreement`` (``pairs``, ``top_k``, ``grid``, ``rows``;
    ``null`` with one method) and ``groups``, one per method and target: ``method``,
    ``target``, ``target_name``, ``maps``, ``flat``, ``grid`` ``[h, w]``, ``note`` (why it
    was not clustered, else ``null``) and, where clustered, ``eigenvalues``,
    ``eigengaps``, ``n_clusters``, ``embedding_axes`` (two ``h x w`` maps) and
    ``clusters``, most suspicious first, each with ``cluster``, ``rank``, ``size``,
    ``suspicion``, ``small``, ``tight``, ``concentrated``, ``away``, ``reason``,
    ``mean_map`` (``h x w``, sums to 1), ``typical`` (``item`` and ``image`` of its most
    typical maps), ``labels`` and ``predictions`` (``counts`` by class, ``majority``,
    ``purity``: the majority's share; ``null`` where no map is labelled) and
    ``correct`` (the share of its labelled maps whose prediction is the label, or ``null``).

    Args:
        maps_folder: a folder :func:`~captum_gmar.explain_dataset` wrote.
        out: the folder to write: new, empty, or one this package wrote.
        methods: the methods to explore (their keys; default: the job's).
        classes: the explained classes to explore, by index or name (default: all).
        images: the image folder the maps folder's job read: the page shows each image's
            thumbnail (its ``image`` names the file in this folder); default: none.
        n_clusters, max_clusters, neighbours, part, typical, seed: as
            :func:`~captum_gmar.exploration.find_strategies`'s, for every group.
        top_share: as :func:`~captum_gmar.exploration.find_disagreement`'s (``part`` too).
        max_side: the largest grid side the maps keep.
        progress: progress bars (maps read, groups clustered) on stderr.

    Returns:
        :class:`Exploration`.

    Raises:
        FileNotFoundError: ``maps_folder`` holds no maps.
        ValueError: before any map is read: a method or class not in the job, a bad
            setting, an ``out`` holding files this package did not write, or no group with
            enough maps to cluster; before any file is written: NaN or infinite maps
            (naming how many), a method whose maps are all constant, or no group left with
            enough maps that are not.
        ImportError: scikit-learn or SciPy is missing (``pip install 'captum-gmar[explore]'``).
    """
    check_settings(n_clusters, max_clusters, neighbours, typical, part)
    check_top_share(top_share)
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 2:
        raise ValueError(f"max_side must be an integer of at least 2, got {max_side!r}")
    require()
    records = load_maps(maps_folder)
    chosen = _methods(maps_folder, methods)
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"images {str(images)!r} is not a folder: name the image folder the maps folder's job read")
    if Path(out).resolve() == Path(maps_folder).resolve():
        raise ValueError(f"out {str(out)!r} is the maps folder: name another folder, which explore writes alone")
    check_folder(out, EXPLORE_FILES)
    targets = _targets(maps_folder, records, classes)
    rows, shapes, class_names = _read_fields(records, chosen, targets)
    keys = list(rows)
    if not keys:
        raise ValueError(f"{str(maps_folder)!r} holds no maps of {', '.join(chosen) if chosen else 'any method'} yet")
    needed = maps_needed(neighbours, max_clusters, n_clusters)
    first = rows[keys[0]]
    groups = {target: np.flatnonzero(first.target == target) for target in np.unique(first.target).tolist()}
    if all(len(members) < needed for members in groups.values()):
        largest = max(len(members) for members in groups.values())
        raise ValueError(
            f"{str(maps_folder)!r}: no class has the {needed} maps a method needs to be clustered (the most: {largest}); "
            "explain more images, or lower neighbours and max_clusters"
        )
    grids = {key: _grid(shape, max_side) for key, shape in shapes.items()}
    values = _read_maps(records, keys, targets, rows, grids, progress)
    _check_not_flat(maps_folder, values, groups, part, needed)
    clustering: dict[str, Any] = {
        "n_clusters": n_clusters,
        "max_clusters": max_clusters,
        "neighbours": neighbours,
        "part": part,
        "typical": typical,
        "seed": seed,
    }
    found: dict[tuple[str, int], Strategies] = {}
    skipped: dict[tuple[str, int], str] = {}
    flat: dict[tuple[str, int], int] = {}
    with tqdm(total=len(keys) * len(groups), unit="group", desc="cluster", disable=not progress) as bar:
        for key in keys:
            for target, members in groups.items():
                group = values[key][members]
                flat[key, target] = int(flat_maps(group, part).sum())
                if len(members) - flat[key, target] >= needed:
                    found[key, target] = find_strategies(group, **clustering)
                else:
                    skipped[key, target] = (
                        f"{len(members)} maps, {flat[key, target]} of them flat: fewer than the {needed} that clustering needs"
                    )
                    tqdm.write(f"explore: {key}, {class_names[target]}: not clustered ({skipped[key, target]})", file=sys.stderr)
                bar.update(1)
    compared = find_disagreement({key: values[key] for key in keys}, top_share=top_share, part=part) if len(keys) > 1 else None
    folder = Path(out)
    files = (
        *sorted([CLUSTERS, STRATEGIES] + ([DISAGREEMENT] if compared is not None else [])),
        PAGE,
        DATA,
        *([THUMBS] if images is not None else []),
    )
    claim_files(folder, EXPLORE_FILES)
    placements = {key: _placement(len(rows[key].item), key, groups, found) for key in keys}
    with replacing(folder / CLUSTERS, newline="") as handle:
        _write_clusters(handle, rows, placements, class_names)
    if compared is not None:
        with replacing(folder / DISAGREEMENT, newline="") as handle:
            _write_disagreement(handle, first, compared, class_names)
    else:
        (folder / DISAGREEMENT).unlink(missing_ok=True)  # an earlier exploration's, of other methods
    summary = {
        "format": FORMAT,
        "maps": str(maps_folder),
        "settings": {**clustering, "top_share": top_share, "max_side": max_side},
        "methods": keys,
        "class_names": {str(target): name for target, name in class_names.items()},
        "files": list(files),
        "disagreement": None if compared is None else _disagreement_summary(compared),
        "groups": [
            _group_summary(
                (key, target),
                members,
                first,
                grids[key],
                flat[key, target],
                found.get((key, target)),
                skipped.get((key, target)),
                class_names,
            )
            for key in keys
            for target, members in groups.items()
        ],
    }
    write_atomic(folder / STRATEGIES, json.dumps(summary, indent=1) + "\n")
    fields = {name: getattr(first, name) for name in ("item", "target", "label", "predicted", "score", "margin")}
    write_page(
        folder,
        summary,
        {"image": first.image, **{name: column.tolist() for name, column in fields.items()}},
        placements,
        values,
        None if compared is None else (compared.score, [compared.methods[i] if i >= 0 else "" for i in compared.odd]),
        part,
        images,
        progress,
    )
    return Exploration(folder, found, skipped, compared, files)


def _methods(folder: str | os.PathLike[str], methods: Sequence[str] | None) -> list[str] | None:
    """The methods asked for, each checked against the job (``None``: all of the job's)."""
    if methods is None:
        return None
    if isinstance(methods, str) or not methods:
        raise ValueError(f"methods must be a list of method keys, got {methods!r}")
    for key in methods:
        load_maps(folder, method=key)  # a method not in the job: its ValueError names the job's
    return list(dict.fromkeys(methods))


def _targets(folder: str | os.PathLike[str], records: Sequence[MapRecord], classes: Sequence[int | str] | None) -> set[int] | None:
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


def _read_fields(
    records: Sequence[MapRecord], methods: list[str] | None, targets: set[int] | None
) -> tuple[dict[str, _Rows], dict[str, tuple[int, ...]], dict[int, str]]:
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
        key: _Rows(
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


def _grid(shape: tuple[int, ...], max_side: int) -> tuple[int, int]:
    """The grid maps of ``shape`` are kept on: at most ``max_side`` on a side."""
    scale = min(1.0, max_side / max(shape))
    return (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))


def _read_maps(
    records: Sequence[MapRecord],
    keys: list[str],
    targets: set[int] | None,
    rows: dict[str, _Rows],
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
                if len(pending[record.method]) == _CHUNK:
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


def _check_not_flat(
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
            "explain more images, or lower neighbours and max_clusters"
        )


def _placement(count: int, key: str, groups: dict[int, np.ndarray], found: dict[tuple[str, int], Strategies]) -> Placement:
    """Method ``key``'s rows as the clustering of each of its groups left them."""
    cluster = np.full(count, -2, dtype=np.int64)
    rank = np.zeros(count, dtype=np.int64)
    place = np.full((count, 2), np.nan)
    for target, members in groups.items():
        strategies = found.get((key, target))
        if strategies is None:
            continue
        ranks = {c.label: position + 1 for position, c in enumerate(strategies.ranking)}
        cluster[members] = strategies.labels
        rank[members] = [ranks.get(int(label), 0) for label in strategies.labels]
        place[members] = strategies.embedding
    return Placement(cluster, rank, place)


def _number(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.{_DIGITS}g}"


def _write_clusters(handle: Any, rows: dict[str, _Rows], placements: dict[str, Placement], class_names: dict[int, str]) -> None:
    writer = csv.writer(handle)
    writer.writerow(CLUSTER_COLUMNS)
    for key, fields in rows.items():
        # each row's cluster, rank and (x, y), empty where its group was not clustered
        placement = placements[key]
        cluster = ["" if c == -2 else c for c in placement.cluster.tolist()]
        rank = ["" if r == 0 else r for r in placement.rank.tolist()]
        place = placement.place
        for i in range(len(fields.item)):
            writer.writerow(
                [
                    fields.image[i],
                    fields.item[i],
                    key,
                    fields.target[i],
                    class_names[int(fields.target[i])],
                    fields.label[i],
                    fields.predicted[i],
                    _number(fields.score[i]),
                    _number(fields.margin[i]),
                    cluster[i],
                    rank[i],
                    _number(place[i, 0]),
                    _number(place[i, 1]),
                ]
            )


def _write_disagreement(handle: Any, fields: _Rows, compared: Disagreement, class_names: dict[int, str]) -> None:
    writer = csv.writer(handle)
    pairs = [f"{a}:{b}" for a, b in compared.pairs]
    figures = [f"{figure}:{pair}" for figure in FIGURES for pair in pairs]
    writer.writerow([*DISAGREEMENT_COLUMNS, *figures, *(f"disagreement:{key}" for key in compared.methods), "disagreement", "odd_method"])
    # (N, figures, pairs) flattened: figure by figure, each pair in turn, as the header
    values = compared.figures.transpose(0, 2, 1).reshape(len(fields.item), -1)
    for i in range(len(fields.item)):
        writer.writerow(
            [
                fields.image[i],
                fields.item[i],
                fields.target[i],
                class_names[int(fields.target[i])],
                fields.label[i],
                fields.predicted[i],
                _number(fields.score[i]),
                _number(fields.margin[i]),
                *map(_number, values[i]),
                *map(_number, compared.per_method[i]),
                _number(compared.score[i]),
                compared.methods[compared.odd[i]] if compared.odd[i] >= 0 else "",
            ]
        )


def _purity(values: np.ndarray) -> dict[str, Any] | None:
    """``counts`` by class, the ``majority`` class and its share (``purity``) of ``values``
    (``-1``, no label, left out); ``None`` where none is left."""
    counts = Counter(int(v) for v in values if v >= 0)
    if not counts:
        return None
    majority, most = max(counts.items(), key=lambda entry: (entry[1], -entry[0]))
    return {"counts": {str(k): v for k, v in sorted(counts.items())}, "majority": majority, "purity": _rounded(most / sum(counts.values()))}


def _rounded(value: float) -> float:
    return float(f"{value:.{_DIGITS}g}")


def _nested(array: np.ndarray) -> Any:
    """An array as nested lists of rounded floats, for JSON."""
    return np.vectorize(_rounded, otypes=[float])(array).tolist()


def _disagreement_summary(compared: Disagreement) -> dict[str, Any]:
    """``strategies.json``'s entry on the disagreement: what its columns compare."""
    return {
        "pairs": [list(pair) for pair in compared.pairs],
        "top_k": compared.top_k,
        "grid": list(compared.grid),
        "rows": len(compared.score),
    }


def _group_summary(
    group: tuple[str, int],
    members: np.ndarray,
    fields: _Rows,
    grid: tuple[int, int],
    flat: int,
    strategies: Strategies | None,
    note: str | None,
    class_names: dict[int, str],
) -> dict[str, Any]:
    """One method's and class's entry of ``strategies.json``."""
    key, target = group
    entry: dict[str, Any] = {
        "method": key,
        "target": target,
        "target_name": class_names[target],
        "maps": len(members),
        "flat": flat,
        "grid": list(grid),
        "note": note,
    }
    if strategies is None:
        return entry
    labels, predicted = fields.label[members], fields.predicted[members]
    clusters = []
    for rank, cluster in enumerate(strategies.ranking, start=1):
        inside = strategies.labels == cluster.label
        labelled = inside & (labels >= 0)
        clusters.append(
            {
                "cluster": cluster.label,
                "rank": rank,
                "size": cluster.size,
                "suspicion": _rounded(cluster.suspicion),
                "small": _rounded(cluster.small),
                "tight": _rounded(cluster.tight),
                "concentrated": _rounded(cluster.concentrated),
                "away": _rounded(cluster.away),
                "reason": cluster.reason,
                "mean_map": _nested(strategies.mean_maps[cluster.label]),
                "typical": [
                    {"item": int(fields.item[members[i]]), "image": fields.image[members[i]]} for i in strategies.typical[cluster.label]
                ],
                "labels": _purity(labels[inside]),
                "predictions": _purity(predicted[inside]),
                "correct": _rounded(float(np.mean(labels[labelled] == predicted[labelled]))) if labelled.any() else None,
            }
        )
    entry.update(
        eigenvalues=_nested(strategies.eigenvalues),
        eigengaps=_nested(strategies.eigengaps),
        n_clusters=strategies.n_clusters,
        embedding_axes=_nested(strategies.embedding_axes),
        clusters=clusters,
    )
    return entry
