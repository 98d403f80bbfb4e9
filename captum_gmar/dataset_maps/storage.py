"""The maps folder: every map of a data set's explanation, in files other tools read.

Layout of ``OUT/``::

    maps.json                       the job: model, methods, targets, resolution, storage
                                    type, data set (a resumed job must match it)
    shards/rank<R>-<NNNNNN>.safetensors
                                    the maps of consecutive records of one process
    shards/damaged/                 shards a resumed job found damaged, set aside
    index.csv                       one row per map (:data:`INDEX_COLUMNS`), written when
                                    the job ends; the shards alone are complete
    unreadable.csv                  the images skipped as unreadable: item, image, error
    .captum-gmar.lock               locked by the job that writes the folder

A record is one explained (image, target) pair. A shard holds whole images (every target
and every method of an image is in the shard that holds it), as safetensors tensors:

- ``item`` int64 ``(n,)``: the image's index in the data set the job explained
  (``data[item]``: for a folder, its place in the order shuffled by the seed 0, see
  :func:`~captum_gmar.evaluation.data.open_dataset`);
- ``target`` int64 ``(n,)``: the explained class (prompt, reference) index;
- ``label`` int64 ``(n,)``: the image's label, ``-1`` where the data has none;
- ``predicted`` int64 ``(n,)``: the model's top class;
- ``score`` float32 ``(n,)``: the explained class's score (softmax probability, sigmoid
  for multi-label models, the similarity itself for an embedding);
- ``margin`` float32 ``(n,)``: ``score`` less the highest score of the other classes
  (negative where another class scores higher; NaN where there is no other class);
- ``maps.<method>`` float32 or float16 ``(n, h, w)``: the method's maps, on the patch
  grid or at the input's pixels;

and, in the header's metadata (strings), ``format`` (:data:`~.checks.FORMAT`), ``images``
and ``target_names`` (JSON lists of ``n`` strings), ``methods`` (JSON: key -> display
name), ``unreadable`` (JSON list of ``{"item", "image", "error"}``) and ``contents`` (JSON:
item -> what identified the image's content when it was read, for every image of the
shard). A file name that is not UTF-8 keeps its bytes losslessly: each byte that is not
UTF-8 is a lone surrogate U+DC80..U+DCFF (``os.fsdecode``'s reading; JSON writes it
``\\udcXX``), and in the CSV files ``\\xXX`` (:func:`text_name`). Each shard is written
to a new file renamed onto its name, so a job killed at any point leaves whole shards; a
resumed job keeps them and explains the images they do not hold.
"""

from __future__ import annotations

import csv
import json
import math
import os
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import accumulate, groupby
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors
from torch import Tensor

from ..files import replacing, write_atomic
from .checks import COLUMNS, FORMAT, INDEX, JOB_FILE, SHARDS, UNREADABLE, Shard, check_shards, read_job, shard_number, shard_paths

__all__ = [
    "INDEX_COLUMNS",
    "MapRecord",
    "MapRecords",
    "Record",
    "ShardWriter",
    "load_maps",
    "read_maps",
    "text_name",
    "write_index",
]

#: ``index.csv``'s columns: one row per map
INDEX_COLUMNS: dict[str, str] = {
    "image": "the image: its file relative to the data folder (bytes that are not UTF-8 as \\xXX), or its row in a saved data set",
    "item": "its index in the data set the job explained (for a folder, its place in the order shuffled by the seed 0)",
    "label": "its label (class index), -1 where the data has none",
    "label_name": "the label's name ('' where none)",
    "target": "the explained class, prompt or reference (index)",
    "target_name": "its name",
    "score": "the explained class's score: softmax probability, sigmoid for multi-label models, the similarity for an embedding",
    "margin": "the score less the highest score of the other classes (negative where another class scores higher; empty with one class)",
    "predicted": "the model's top class (index)",
    "method": "the method's key (e.g. gmar-l1)",
    "shape": "the map's shape, height x width (the patch grid, or the input's pixels)",
    "dtype": "float32 or float16",
    "shard": "the safetensors file holding the map, relative to the folder",
    "tensor": "the tensor of the map in that file",
    "row": "the map's row in that tensor",
}


@dataclass(frozen=True)
class Record:
    """One explained (image, target) pair, before it is written."""

    item: int
    image: str
    target: int
    target_name: str
    label: int
    predicted: int
    score: float
    #: ``score`` less the highest score of the other classes (NaN with one class)
    margin: float
    #: method key -> its map ``(h, w)``
    maps: Mapping[str, Tensor]


#: records a shard holds at most, whatever the maps' size: a record's fields and its maps'
#: views cost about a kilobyte of Python objects while they wait in the buffer, which
#: small maps (a 16 x 16 patch grid is 1 KiB) would otherwise let grow to a million
SHARD_RECORDS = 2048


class ShardWriter:
    """Writes one process's records into shards of at most ``shard_bytes`` of buffered
    maps (float32) and :data:`SHARD_RECORDS` records, whole batches each (a single batch
    beyond a bound is a shard of its own).

    Args:
        folder: the maps folder.
        rank: the process's rank (its shards' names start ``rank<R>-``).
        methods: method key -> display name, in order.
        dtype: the maps' storage type.
        shard_bytes: a shard is written once its maps reach this size.
    """

    def __init__(self, folder: Path, rank: int, methods: Mapping[str, str], dtype: torch.dtype, shard_bytes: int) -> None:
        self.folder = folder / SHARDS
        self.rank, self.methods, self.dtype, self.shard_bytes = rank, dict(methods), dtype, shard_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self.next = max((number for r, number in map(shard_number, shard_paths(folder)) if r == rank), default=-1) + 1
        self.records: list[Record] = []
        self.unreadable: list[dict[str, Any]] = []
        self.contents: dict[int, str] = {}
        self.bytes = 0

    def add(self, records: Sequence[Record], unreadable: Sequence[dict[str, Any]] = (), contents: Mapping[int, str] | None = None) -> None:
        """Buffer one batch's records (whole images) and unreadable images (``item``,
        ``image``, ``error``), with what identifies each image's content (``contents``, by
        item; ``""`` for those it lacks), first writing the buffer as a shard where they
        would take it past a bound (a batch larger than the bounds makes a shard of its own)."""
        size = sum(m.numel() * m.element_size() for record in records for m in record.maps.values())  # as buffered
        if self.records and (self.bytes + size > self.shard_bytes or len(self.records) + len(records) > SHARD_RECORDS):
            self.flush()
        self.records += records
        self.unreadable += unreadable
        for item in [r.item for r in records] + [entry["item"] for entry in unreadable]:
            self.contents[item] = (contents or {}).get(item, "")
        self.bytes += size
        if self.bytes >= self.shard_bytes or len(self.records) >= SHARD_RECORDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one shard (nothing when the buffer is empty)."""
        if not self.records and not self.unreadable:
            return
        records = self.records
        tensors = {name: torch.tensor([getattr(r, name) for r in records], dtype=_TORCH_DTYPES[dtype]) for name, dtype in COLUMNS.items()}
        for key in self.methods:
            tensors[f"maps.{key}"] = (
                torch.stack([r.maps[key] for r in records]).to(self.dtype) if records else torch.zeros(0, 0, 0, dtype=self.dtype)
            )
        metadata = {
            "format": FORMAT,
            "images": json.dumps([r.image for r in records]),
            "target_names": json.dumps([r.target_name for r in records]),
            "methods": json.dumps(self.methods),
            "unreadable": json.dumps(self.unreadable),
            "contents": json.dumps(self.contents),
        }
        # a new file renamed onto its name: a job killed now leaves no shard or a whole one
        write_atomic(self.folder / f"rank{self.rank}-{self.next:06d}.safetensors", save_tensors(tensors, metadata))
        self.next += 1
        self.records, self.unreadable, self.contents, self.bytes = [], [], {}, 0


#: :data:`~.checks.COLUMNS`' safetensors types as torch's
_TORCH_DTYPES = {"I64": torch.int64, "F32": torch.float32}


def drop_items(shard: Shard, items: set[int]) -> None:
    """Rewrite ``shard`` without the records and unreadable entries of ``items`` (its other
    images as they were), or remove it where it holds nothing else. The new shard replaces
    the old one whole: a job killed meanwhile leaves one of the two."""
    if not shard.items - items:
        shard.path.unlink()
        return
    with safe_open(str(shard.path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        kept = torch.tensor([item not in items for item in shard.columns["item"]], dtype=torch.bool)
        tensors = {name: handle.get_tensor(name)[kept] for name in handle.keys()}
    rows = kept.tolist()
    metadata.update(
        images=json.dumps([name for name, keep in zip(shard.images, rows) if keep]),
        target_names=json.dumps([name for name, keep in zip(shard.target_names, rows) if keep]),
        unreadable=json.dumps([entry for entry in shard.unreadable if entry["item"] not in items]),
        contents=json.dumps({item: text for item, text in shard.contents.items() if item not in items}),
    )
    write_atomic(shard.path, save_tensors(tensors, metadata))


class MapRecord:
    """One stored map: ``image``, ``item``, ``method``, ``target``, ``target_name``,
    ``label``, ``predicted``, ``score``, ``margin``, ``shape``, and ``map``, the ``(h, w)`` float32
    tensor, read from its shard when first asked for."""

    def __init__(self, shard: Shard, row: int, method: str) -> None:
        self._shard, self.row, self.method = shard, row, method
        self.image: str = shard.images[row]
        self.item: int = shard.columns["item"][row]
        self.target: int = shard.columns["target"][row]
        self.target_name: str = shard.target_names[row]
        self.label: int = shard.columns["label"][row]
        self.predicted: int = shard.columns["predicted"][row]
        self.score: float = shard.columns["score"][row]
        self.margin: float = shard.columns["margin"][row]
        self.shape, self.dtype = shard.maps[method]

    @property
    def shard(self) -> Path:
        """The safetensors file that holds the map."""
        return self._shard.path

    @cached_property
    def map(self) -> Tensor:
        """``(h, w)`` float32, the stored map."""
        with safe_open(str(self._shard.path), framework="pt") as handle:
            return handle.get_slice(f"maps.{self.method}")[self.row].float()

    def __repr__(self) -> str:
        return f"MapRecord(image={self.image!r}, method={self.method!r}, target={self.target} ({self.target_name}), score={self.score:.4g})"


class MapRecords(Sequence[MapRecord]):
    """The records of a maps folder (see :func:`load_maps`), in order: shard by shard, each
    image's targets in turn, each target's methods in the job's order. Each
    :class:`MapRecord` is made when asked for; only the shards' headers are held."""

    def __init__(self, shards: list[Shard], method: str | None, unreadable: list[dict[str, Any]]) -> None:
        self._shards = shards
        self._methods = [[key for key in shard.methods if method in (None, key)] for shard in shards]
        #: records before each shard, and in all
        self._starts = list(accumulate((len(shard.images) * len(keys) for shard, keys in zip(shards, self._methods)), initial=0))
        #: the images the job skipped as unreadable: ``item``, ``image``, ``error``
        self.unreadable = unreadable

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def images(self) -> int:
        """How many images the records explain (a shard holds whole images)."""
        return sum(len(set(shard.columns["item"])) for shard in self._shards)

    def __getitem__(self, index: int) -> MapRecord:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        index %= len(self)
        k = bisect_right(self._starts, index) - 1
        row, which = divmod(index - self._starts[k], len(self._methods[k]))
        return MapRecord(self._shards[k], row, self._methods[k][which])

    def __iter__(self) -> Iterator[MapRecord]:
        for shard, keys in zip(self._shards, self._methods):
            for row in range(len(shard.images)):
                for key in keys:
                    yield MapRecord(shard, row, key)

    def __repr__(self) -> str:
        return f"MapRecords({len(self)} maps, {len(self.unreadable)} unreadable images)"


def load_maps(folder: str | os.PathLike[str], method: str | None = None) -> MapRecords:
    """The maps a data set's explanation wrote to ``folder``, read lazily: the records'
    fields come from the shards' headers, each map from its shard when asked for.

    A stored map equals what the method returned for that image (float16 storage aside:
    about three significant digits). Works while a job is still writing (the shards
    written so far) and after one was killed. Every shard is checked against its header,
    the others and ``maps.json`` first (:func:`~captum_gmar.dataset_maps.checks.check_shards`):
    no image is read twice, none from a damaged shard.

    Args:
        folder: the job's output folder.
        method: only this method's maps (its key, e.g. ``"gmar-l1"``).

    Raises:
        FileNotFoundError: ``folder`` holds no maps.
        ValueError: ``maps.json`` or a shard is damaged (naming the file and what is wrong),
            or ``method`` is not in the job.
    """
    folder = Path(folder)
    job = read_job(folder)
    if job is None:
        raise FileNotFoundError(f"{str(folder)!r} holds no maps ({JOB_FILE} is missing): name the folder a job wrote")
    if method is not None and method not in job["methods"]:
        raise ValueError(f"the job in {str(folder)!r} has no method {method!r}; it has {', '.join(job['methods'])}")
    checked = check_shards(folder, job)
    if checked.damaged:
        raise checked.damaged[0]
    shards = [replace(shard, contents={}) for shard in checked.shards]  # the records need no contents, a large part of the headers
    return MapRecords(shards, method, [entry for shard in shards for entry in shard.unreadable])


def read_maps(records: Sequence[MapRecord]) -> Tensor:
    """The maps of ``records``, stacked: ``(n, h, w)`` float32, in their order.

    Each shard is opened once per run of consecutive records in it, and each of its
    methods' maps read once: reading a folder's records in :func:`load_maps`' order a few
    thousand at a time reads each shard about once, where ``record.map`` opens the shard
    for every map.

    Raises:
        ValueError: the records' maps are of different shapes.
    """
    shapes = {record.shape for record in records}
    if len(shapes) > 1:
        raise ValueError(f"the records' maps are of different shapes ({', '.join(sorted(map(str, shapes)))}): read each shape apart")
    out = torch.empty((len(records), *(shapes.pop() if shapes else (0, 0))))
    position = 0
    for shard, run in groupby(records, key=lambda record: record.shard):
        rows: dict[str, tuple[list[int], list[int]]] = {}
        for record in run:
            into, taken = rows.setdefault(record.method, ([], []))
            into.append(position)
            taken.append(record.row)
            position += 1
        with safe_open(str(shard), framework="pt") as handle:
            for method, (into, taken) in rows.items():
                out[into] = handle.get_tensor(f"maps.{method}")[taken].float()
    return out


def write_index(folder: str | os.PathLike[str], class_names: Mapping[int, str], records: MapRecords | None = None) -> tuple[int, int]:
    """Write ``index.csv`` (:data:`INDEX_COLUMNS`) and ``unreadable.csv`` from the
    folder's shards (``records``: :func:`load_maps`' of all methods, read again where not
    given); ``class_names`` names the labels. Names are written as :func:`text_name` gives
    them. Returns the number of maps and of unreadable images."""
    folder = Path(folder)
    records = load_maps(folder) if records is None else records
    maps = 0
    with replacing(folder / INDEX, newline="") as index, replacing(folder / UNREADABLE, newline="") as skipped:
        errors = csv.DictWriter(skipped, fieldnames=["item", "image", "error"])
        errors.writeheader()
        errors.writerows({**entry, "image": text_name(entry["image"])} for entry in records.unreadable)
        rows = csv.DictWriter(index, fieldnames=list(INDEX_COLUMNS))
        rows.writeheader()
        for record in records:
            rows.writerow(
                {
                    "image": text_name(record.image),
                    "item": record.item,
                    "label": record.label,
                    "label_name": class_names.get(record.label, ""),
                    "target": record.target,
                    "target_name": record.target_name,
                    "score": f"{record.score:.6g}",
                    "margin": "" if math.isnan(record.margin) else f"{record.margin:.6g}",
                    "predicted": record.predicted,
                    "method": record.method,
                    "shape": "x".join(map(str, record.shape)),
                    "dtype": record.dtype,
                    "shard": record.shard.relative_to(folder).as_posix(),
                    "tensor": f"maps.{record.method}",
                    "row": record.row,
                }
            )
            maps += 1
    return maps, len(records.unreadable)


def text_name(name: str) -> str:
    """``name`` as UTF-8 text holds it: each byte of a file name that is not UTF-8 (a lone
    surrogate U+DC80..U+DCFF, as ``os.fsdecode`` reads it) written ``\\xXX``. A folder's
    names hold no backslash (a scan reads it as ``/``), so this is lossless for them."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # another lone surrogate (a Windows name): written as its \u escape
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
