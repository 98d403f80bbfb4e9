"""The explorer page: ``explore.html``, opened from the disk with no server, and the
sidecar files it reads through ``<script>`` elements (a browser refuses ``fetch`` of
``file://``).

Layout, beside ``clusters.csv``::

    explore.html               the page: controls, scatter, cluster panel, card grid
                               (templates/explore.html and explore.js, pages.css)
    explore-data/index.js      the groups' spectra and clusters, the overview's order, the
                               classes and their files (JSON): what the first view needs
    explore-data/class-KKKKK.js the rows of the K-th explained class: their row numbers,
                               labels, predictions, scores, margins and disagreement, as
                               base64 of little-endian typed arrays; loaded when the class
                               is shown
    explore-data/group-MM-KKKKK.js method M's cluster, rank and place in the scatter for
                               those rows, the same way; loaded when the method is shown
                               (or a card frames its maps)
    explore-data/heads.js      the heads runs written into ``heads/`` (their figures show
                               under their cluster)
    explore-data/maps-NNNNN.js the maps of ``CHUNK`` rows, each method's as uint8 (0 none
                               of the map's mass, 255 its most), base64, and the rows'
                               image names; loaded when a card shows one of those rows
    thumbs/NNNNN.jpg           with ``images``: ``SHEET`` thumbnails of ``THUMB`` pixels,
                               a sheet per ``SHEET`` rows

The page draws the maps itself from those bytes, on a grid of at most ``PAGE_SIDE``
patches a side. It opens on the group (method and explained class) whose most suspicious
cluster is flagged and most suspicious, with an overview of every group in that order.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..files import write_atomic
from ..pages.images import colour
from ..pages.render import ExplanationPage, new_page_id, page_content, script_json
from ..visualization import MAP_CMAP
from .normalise import Part, pool
from .suspicion import FLAG_CALIBRATION

__all__ = ["CHUNK", "DATA", "HEADS", "PAGE", "PAGE_SIDE", "SHEET", "THUMB", "THUMBS", "Placement", "write_heads_list", "write_page"]

PAGE, DATA, THUMBS = "explore.html", "explore-data", "thumbs"
#: the folder of the heads runs written into an explore folder (``captum-gmar heads --out EXP/heads/...``)
HEADS = "heads"
#: rows per maps file: a card grid's page loads one or two
CHUNK = 1024
#: the largest side, in patches, of the maps the page draws
PAGE_SIDE = 16
#: a thumbnail's side in pixels, and thumbnails per sheet (a square of them)
THUMB, SHEET = 64, 256
#: digits kept of the page's numbers
_DIGITS = 4


@dataclass(frozen=True)
class Placement:
    """One method's maps as the clustering left them, row by row (``N`` rows)."""

    #: ``int64 (N,)``: the cluster; ``-1`` a flat map; ``-2`` not clustered (too few maps)
    cluster: np.ndarray
    #: ``int64 (N,)``: the cluster's rank by suspicion, 1 the most suspicious; 0 none
    rank: np.ndarray
    #: ``float64 (N, 2)``: the place in the scatter; NaN where not clustered
    place: np.ndarray


def write_page(
    folder: Path,
    summary: dict[str, Any],
    rows: dict[str, list[Any]],
    placements: dict[str, Placement],
    values: dict[str, np.ndarray],
    disagreement: tuple[np.ndarray, list[str]] | None,
    part: Part,
    images: str | os.PathLike[str] | None,
    progress: bool,
) -> None:
    """Write ``explore.html`` and its sidecar files into ``folder`` (claimed already).

    Args:
        folder: the explore folder.
        summary: ``strategies.json``'s content (its groups are shown per cluster).
        rows: ``image``, ``item``, ``target``, ``label``, ``predicted``, ``score``, ``margin``: one
            list each, a value per row (an explained image and target).
        placements: method -> its :class:`Placement`.
        values: method -> its maps ``float32 (N, h, w)``.
        disagreement: each row's score and the method that disagrees most ("" with two
            methods), or ``None`` with one method.
        part: the part of a map drawn (as the clustering read it).
        images: the image folder the maps folder's job read (``image`` names its files,
            relative to it): thumbnails; ``None``: no thumbnails.
        progress: progress bars on stderr.
    """
    data = folder / DATA
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(folder / THUMBS, ignore_errors=True)
    data.mkdir()
    count = len(rows["item"])
    grids = {key: _page_grid(array.shape[1:]) for key, array in values.items()}
    sheets = _write_thumbs(folder / THUMBS, rows["image"], images, progress) if images is not None else 0
    model = summary.get("model") or "a model"
    targets = np.asarray(rows["target"], dtype=np.int64)
    classes = []
    for number, target in enumerate(summary["targets"]):
        members = np.flatnonzero(targets == target)
        classes.append({"target": target, "rows": len(members), "file": f"class-{number:05d}.js"})
        _write_class(data, number, target, members, rows, disagreement, list(values))
        for m, key in enumerate(values):  # the methods in the index's order
            _write_group(data, m, number, members, placements[key])
    index = {
        "title": f"Strategies of {model}, and where its explanations disagree",
        "maps": summary["maps"],
        "model": model,
        "given": summary.get("given", {"model": None, "images": None}),
        "targets": summary["targets"],
        "overview": summary["overview"],
        "flag_rule": summary.get("flag_rule", f"suspicion {summary['flag_at']} or more"),
        "calibration": FLAG_CALIBRATION,
        "confirms_by": summary["confirms_by"],
        "flag_by_transplant": summary.get("flag_by_transplant"),
        "features": summary.get("features"),
        "disagreement_scale": None
        if summary["disagreement"] is None
        else {k: summary["disagreement"][k] for k in ("unusual", "odd_margin")},
        "rows": count,
        "chunk": CHUNK,
        "part": part,
        "methods": list(values),
        "grids": {key: list(grid) for key, grid in grids.items()},
        "class_names": summary["class_names"],
        "classes": classes,
        "colours": colour(np.linspace(0, 1, 256), MAP_CMAP).tolist(),  # the maps' 256 colours, RGB
        "thumbs": {"side": THUMB, "sheet": SHEET, "sheets": sheets} if sheets else None,
        "groups": [_shown_group(group, rows) for group in summary["groups"]],
    }
    write_atomic(data / "index.js", f"window.EXPLORE_INDEX = {script_json(index)};\n")
    write_heads_list(folder)
    with tqdm(total=count, unit="map", desc="page", disable=not progress) as bar:
        for number, start in enumerate(range(0, count, CHUNK)):
            chunk: dict[str, Any] = {key: _encoded(array[start : start + CHUNK], grids[key], part) for key, array in values.items()}
            chunk["names"] = rows["image"][start : start + CHUNK]
            write_atomic(data / f"maps-{number:05d}.js", f"window.EXPLORE_CHUNK({number}, {json.dumps(chunk)});\n")
            bar.update(min(CHUNK, count - start))
    page_id = new_page_id()
    explained = len(summary["targets"])
    header = (
        f"{count:,} explained images of the maps folder {summary['maps']}; methods {', '.join(values)}; "
        f"{explained} {'class' if explained == 1 else 'classes'} explained"
    )
    body = page_content("explore", page_id, title=index["title"], header=header)
    ExplanationPage(index["title"], body).save(folder / PAGE)


def _shown_group(group: dict[str, Any], rows: dict[str, list[Any]]) -> dict[str, Any]:
    """A group of ``strategies.json`` as the page reads it: without the embedding's axes,
    each typical image with its row (its thumbnail's place)."""
    shown = {name: value for name, value in group.items() if name not in ("embedding_axes", "clusters")}
    if "clusters" in group:
        where = {(t, i): row for row, (t, i) in enumerate(zip(rows["target"], rows["item"])) if t == group["target"]}
        shown["clusters"] = [
            {**cluster, "typical": [{**typical, "row": where.get((group["target"], typical["item"]))} for typical in cluster["typical"]]}
            for cluster in group["clusters"]
        ]
    return shown


def write_heads_list(folder: Path) -> None:
    """``explore-data/heads.js``: the heads runs in ``folder/heads/`` (``captum-gmar heads
    --out EXP/heads/METHOD-CLASS-RANK``), whose figures the page shows under their cluster."""
    runs = sorted(path.parent.name for path in (folder / HEADS).glob("*/heads.png"))
    write_atomic(folder / DATA / "heads.js", f"window.EXPLORE_HEADS = {json.dumps(runs)};\n")


def _typed(values: Any, dtype: str) -> str:
    """``values`` as base64 of a little-endian typed array (``"<i4"``, ``"<f4"`` ...): the
    page reads it with one ``atob`` and a typed view, whatever the number of rows."""
    return base64.b64encode(np.ascontiguousarray(np.asarray(values), dtype=np.dtype(dtype)).tobytes()).decode("ascii")


def _write_class(
    data: Path, number: int, target: int, members: np.ndarray, rows: dict[str, list[Any]], disagreement: Any, methods: list[str]
) -> None:
    """``class-KKKKK.js``: the K-th explained class's rows (their numbers and fields)."""

    def column(name: str) -> np.ndarray:
        return np.asarray(rows[name])[members]

    content = {
        "rows": _typed(members, "<i4"),
        "label": _typed(column("label"), "<i4"),
        "predicted": _typed(column("predicted"), "<i4"),
        "score": _typed(column("score"), "<f4"),
        "margin": _typed(column("margin"), "<f4"),  # NaN: none
        "disagreement": None if disagreement is None else _typed(np.asarray(disagreement[0])[members], "<f4"),
        "odd": None
        if disagreement is None
        else _typed([methods.index(m) if m else -1 for m in np.asarray(disagreement[1], dtype=object)[members]], "<i1"),
    }
    write_atomic(data / f"class-{number:05d}.js", f"window.EXPLORE_CLASS({number}, {json.dumps(content)});\n")


def _write_group(data: Path, method: int, number: int, members: np.ndarray, placement: Placement) -> None:
    """``group-MM-KKKKK.js``: method M's clusters, ranks and places for the K-th class's rows."""
    content = {
        "cluster": _typed(placement.cluster[members], "<i4"),
        "rank": _typed(placement.rank[members], "<i4"),
        "x": _typed(placement.place[members, 0], "<f4"),
        "y": _typed(placement.place[members, 1], "<f4"),
    }
    write_atomic(data / f"group-{method:02d}-{number:05d}.js", f"window.EXPLORE_GROUP({method}, {number}, {json.dumps(content)});\n")


def _page_grid(shape: Sequence[int]) -> tuple[int, int]:
    scale = min(1.0, PAGE_SIDE / max(shape))
    return (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))


def _encoded(maps: np.ndarray, grid: tuple[int, int], part: Part) -> str:
    """``maps`` ``(n, h, w)`` on ``grid``, their ``part`` scaled to 0-255 map by map, as
    base64 of ``n * h' * w'`` bytes (row-major)."""
    pooled = pool(maps, grid)
    mass = np.maximum(pooled, 0) if part == "positive" else np.abs(pooled)
    top = mass.max(axis=(1, 2), keepdims=True)
    scaled = np.divide(mass, top, out=np.zeros_like(mass), where=top > 0)
    return base64.b64encode(np.round(scaled * 255).astype(np.uint8).tobytes()).decode("ascii")


def _write_thumbs(folder: Path, names: list[str], images: str | os.PathLike[str], progress: bool) -> int:
    """Sheets of :data:`SHEET` thumbnails (``folder/NNNNN.jpg``), row ``i`` at place
    ``i % SHEET`` of sheet ``i // SHEET``, left to right then down; an image that cannot be
    read stays grey. Returns the number of sheets."""
    from PIL import Image, ImageOps

    folder.mkdir()
    side = int(SHEET**0.5)
    sheets = 0
    with tqdm(total=len(names), unit="image", desc="thumbnails", disable=not progress) as bar:
        for sheets, start in enumerate(range(0, len(names), SHEET), start=1):
            sheet = Image.new("RGB", (side * THUMB, side * THUMB), (200, 200, 200))
            for place, name in enumerate(names[start : start + SHEET]):
                try:
                    with Image.open(Path(images) / name) as image:
                        thumb = ImageOps.pad(image.convert("RGB"), (THUMB, THUMB), color=(255, 255, 255))
                except (OSError, ValueError, Image.DecompressionBombError):
                    thumb = None
                if thumb is not None:
                    sheet.paste(thumb, ((place % side) * THUMB, (place // side) * THUMB))
                bar.update()
            sheet.save(folder / f"{sheets - 1:05d}.jpg", quality=80)
    return sheets
