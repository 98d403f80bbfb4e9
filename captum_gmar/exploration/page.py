"""The explorer page: ``explore.html``, opened from the disk with no server, and the
sidecar files it reads through ``<script>`` elements (a browser refuses ``fetch`` of
``file://``).

Layout, beside ``clusters.csv``::

    explore.html               the page: controls, scatter, cluster panel, card grid
                               (templates/explore.html and explore.js, pages.css)
    explore-data/index.js      every row's fields, each method's cluster, rank and place in
                               the scatter, the groups' spectra and clusters (JSON)
    explore-data/maps-NNNNN.js the maps of ``CHUNK`` rows, each method's as uint8 (0 none
                               of the map's mass, 255 its most), base64; loaded when a card
                               shows one of those rows
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

__all__ = ["CHUNK", "DATA", "PAGE", "PAGE_SIDE", "SHEET", "THUMB", "THUMBS", "Placement", "write_page"]

PAGE, DATA, THUMBS = "explore.html", "explore-data", "thumbs"
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
    index = {
        "title": f"Strategies of {model}, and where its explanations disagree",
        "maps": summary["maps"],
        "model": model,
        "targets": summary["targets"],
        "overview": summary["overview"],
        "flag_at": summary["flag_at"],
        "calibration": FLAG_CALIBRATION,
        "disagreement_scale": None
        if summary["disagreement"] is None
        else {k: summary["disagreement"][k] for k in ("unusual", "odd_margin")},
        "rows": count,
        "chunk": CHUNK,
        "part": part,
        "methods": list(values),
        "grids": {key: list(grid) for key, grid in grids.items()},
        "class_names": summary["class_names"],
        "colours": colour(np.linspace(0, 1, 256), MAP_CMAP).tolist(),  # the maps' 256 colours, RGB
        "thumbs": {"side": THUMB, "sheet": SHEET, "sheets": sheets} if sheets else None,
        "fields": {
            **{name: rows[name] for name in ("image", "item", "target", "label", "predicted")},
            "score": _round(rows["score"]),
            "margin": _round(rows["margin"]),
            "disagreement": None if disagreement is None else _round(disagreement[0]),
            "odd": None if disagreement is None else disagreement[1],
        },
        "placements": {
            key: {
                "cluster": placement.cluster.tolist(),
                "rank": placement.rank.tolist(),
                "x": _round(placement.place[:, 0]),
                "y": _round(placement.place[:, 1]),
            }
            for key, placement in placements.items()
        },
        "groups": [{name: value for name, value in group.items() if name != "embedding_axes"} for group in summary["groups"]],
    }
    write_atomic(data / "index.js", f"window.EXPLORE_INDEX = {script_json(index)};\n")
    with tqdm(total=count, unit="map", desc="page", disable=not progress) as bar:
        for number, start in enumerate(range(0, count, CHUNK)):
            chunk = {key: _encoded(array[start : start + CHUNK], grids[key], part) for key, array in values.items()}
            write_atomic(data / f"maps-{number:05d}.js", f"window.EXPLORE_CHUNK({number}, {json.dumps(chunk)});\n")
            bar.update(min(CHUNK, count - start))
    page_id = new_page_id()
    classes = len(summary["targets"])
    header = (
        f"{count:,} explained images of the maps folder {summary['maps']}; methods {', '.join(values)}; "
        f"{classes} {'class' if classes == 1 else 'classes'} explained"
    )
    body = page_content("explore", page_id, title=index["title"], header=header)
    ExplanationPage(index["title"], body).save(folder / PAGE)


def _page_grid(shape: Sequence[int]) -> tuple[int, int]:
    scale = min(1.0, PAGE_SIDE / max(shape))
    return (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))


def _round(values: Any) -> list[float | None]:
    """Numbers for JSON, rounded; ``None`` for NaN."""
    return [None if not np.isfinite(v) else float(f"{v:.{_DIGITS}g}") for v in np.asarray(values, dtype=np.float64)]


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
