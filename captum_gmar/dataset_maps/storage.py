"""The maps folder: every map of a data set's explanation, in files other tools read.

Layout of ``OUT/``::

    maps.json                       the job: model, methods, targets, resolution, storage
                                    type, data set (a resumed job must match it)
    shards/rank<R>-<NNNNNN>.safetensors
                                    the maps of consecutive records of one process
    index.csv                       one row per map (:data:`INDEX_COLUMNS`), written when
                                    the job ends; the shards alone are complete
    unreadable.csv                  the images skipped as unreadable: item, image, error

A record is one explained (image, target) pair. A shard holds whole images (every target
and every method of an image is in the shard that holds it), as safetensors tensors:

- ``item`` int64 ``(n,)``: the image's position in the data set;
- ``target`` int64 ``(n,)``: the explained class (prompt, reference) index;
- ``label`` int64 ``(n,)``: the image's label, ``-1`` where the data has none;
- ``predicted`` int64 ``(n,)``: the model's top class;
- ``score`` float32 ``(n,)``: the explained class's score (softmax probability, sigmoid
  for multi-label models, the similarity itself for an embedding);
- ``maps.<method>`` float32 or float16 ``(n, h, w)``: the method's maps, on the patch
  grid or at the input's pixels;

and, in the header's metadata (strings), ``format`` (:data:`FORMAT`), ``images`` and
``target_names`` (JSON lists of ``n`` strings), ``methods`` (JSON: key -> display name)
and ``unreadable`` (JSON list of ``{"item", "image", "error"}``). Each shard is written to
a new file renamed onto its name, so a job killed at any point leaves whole shards; a
resumed job keeps them and explains the images they do not hold.
"""

from __future__ import annotations

import csv
import json
import os
import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate, groupby
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors
from torch import Tensor

from ..files import replacing, write_atomic

__all__ = [
    "FORMAT",
    "INDEX_COLUMNS",
    "JOB_FILE",
    "MAPS_FILES",
    "MapRecord",
    "MapRecords",
    "Record",
    "ShardWriter",
    "load_maps",
    "read_maps",
    "write_index",
]

#: the ``format`` entry of every shard's metadata and of ``maps.json``
FORMAT = "captum-gmar-maps/1"
#: the job's description, written first
JOB_FILE = "maps.json"
SHARDS = "shards"
INDEX = "index.csv"
UNREADABLE = "unreadable.csv"
#: the names a maps folder holds (the folder's manifest lists them, see :func:`~captum_gmar.files.claim_files`)
MAPS_FILES = (JOB_FILE, SHARDS, INDEX, UNREADABLE)
#: ``index.csv``'s columns: one row per map
INDEX_COLUMNS: dict[str, str] = {
    "image": "the image: its file relative to the data folder, or its row in a saved data set",
    "item": "its position in the data set (0-based)",
    "label": "its label (class index), -1 where the data has none",
    "label_name": "the label's name ('' where none)",
    "target": "the explained class, prompt or reference (index)",
    "target_name": "its name",
    "score": "the explained class's score: softmax probability, sigmoid for multi-label models, the similarity for an embedding",
    "predicted": "the model's top class (index)",
    "method": "the method's key (e.g. gmar-l1)",
    "shape": "the map's shape, height x width (the patch grid, or the input's pixels)",
    "dtype": "float32 or float16",
    "shard": "the safetensors file holding the map, relative to the folder",
    "tensor": "the tensor of the map in that file",
    "row": "the map's row in that tensor",
}
#: safetensors' names of the storage types
_DTYPE_NAMES = {"F32": "float32", "F16": "float16"}
_SHARD_NAME = re.compile(r"rank(\d+)-(\d{6})\.safetensors")


def _tensor(method: str) -> str:
    """The shard's tensor holding a method's maps."""
    return f"maps.{method}"


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
        taken = [int(match[2]) for path in self.folder.iterdir() if (match := _SHARD_NAME.fullmatch(path.name)) and int(match[1]) == rank]
        self.next = max(taken, default=-1) + 1
        self.records: list[Record] = []
        self.unreadable: list[dict[str, Any]] = []
        self.bytes = 0

    def add(self, records: Sequence[Record], unreadable: Sequence[dict[str, Any]] = ()) -> None:
        """Buffer one batch's records (whole images) and unreadable images, first writing
        the buffer as a shard where they would take it past a bound (a batch larger than
        the bounds makes a shard of its own)."""
        size = sum(m.numel() * m.element_size() for record in records for m in record.maps.values())  # as buffered
        if self.records and (self.bytes + size > self.shard_bytes or len(self.records) + len(records) > SHARD_RECORDS):
            self.flush()
        self.records += records
        self.unreadable += unreadable
        self.bytes += size
        if self.bytes >= self.shard_bytes or len(self.records) >= SHARD_RECORDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one shard (nothing when the buffer is empty)."""
        if not self.records and not self.unreadable:
            return
        records = self.records
        tensors: dict[str, Tensor] = {
            "item": torch.tensor([r.item for r in records], dtype=torch.int64),
            "target": torch.tensor([r.target for r in records], dtype=torch.int64),
            "label": torch.tensor([r.label for r in records], dtype=torch.int64),
            "predicted": torch.tensor([r.predicted for r in records], dtype=torch.int64),
            "score": torch.tensor([r.score for r in records], dtype=torch.float32),
        }
        for key in self.methods:
            tensors[_tensor(key)] = (
                torch.stack([r.maps[key] for r in records]).to(self.dtype) if records else torch.zeros(0, 0, 0, dtype=self.dtype)
            )
        metadata = {
            "format": FORMAT,
            "images": json.dumps([r.image for r in records]),
            "target_names": json.dumps([r.target_name for r in records]),
            "methods": json.dumps(self.methods),
            "unreadable": json.dumps(self.unreadable),
        }
        # a new file renamed onto its name: a job killed now leaves no shard or a whole one
        write_atomic(self.folder / f"rank{self.rank}-{self.next:06d}.safetensors", save_tensors(tensors, metadata))
        self.next += 1
        self.records, self.unreadable, self.bytes = [], [], 0


@dataclass(frozen=True)
class _Shard:
    path: Path
    images: list[str]
    target_names: list[str]
    methods: dict[str, str]
    unreadable: list[dict[str, Any]]
    columns: dict[str, list[Any]]
    #: method key -> the shape ``(h, w)`` and dtype name of its maps
    maps: dict[str, tuple[tuple[int, ...], str]]


def _read_shard(path: Path) -> _Shard:
    """A shard's header and small tensors (not its maps)."""
    try:
        return _shard_header(path)
    except SafetensorError as error:
        raise ValueError(
            f"{str(path)!r} is not a readable shard ({error}): a file among the shards that captum-gmar did not write"
        ) from error


def _shard_header(path: Path) -> _Shard:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a shard of captum-gmar maps (format {metadata.get('format')!r}, expected {FORMAT!r})")
        columns = {name: handle.get_tensor(name).tolist() for name in ("item", "target", "label", "predicted", "score")}
        methods = json.loads(metadata["methods"])
        maps = {}
        for key in methods:
            part = handle.get_slice(_tensor(key))
            maps[key] = (tuple(part.get_shape()[1:]), _DTYPE_NAMES[part.get_dtype()])
    return _Shard(
        path,
        json.loads(metadata["images"]),
        json.loads(metadata["target_names"]),
        methods,
        json.loads(metadata["unreadable"]),
        columns,
        maps,
    )


def shard_paths(folder: str | os.PathLike[str]) -> list[Path]:
    """The folder's shards, in order (by rank, then number)."""
    shards = Path(folder) / SHARDS
    if not shards.is_dir():
        return []
    named = [(match, path) for path in shards.iterdir() if (match := _SHARD_NAME.fullmatch(path.name))]
    return [path for match, path in sorted(named, key=lambda entry: (int(entry[0][1]), int(entry[0][2])))]


def remove_leftovers(folder: str | os.PathLike[str]) -> None:
    """Remove the temporary files a killed job left among the shards (never a shard)."""
    for path in (Path(folder) / SHARDS).glob(".rank*.safetensors.*.tmp"):
        path.unlink(missing_ok=True)


def finished_items(folder: str | os.PathLike[str]) -> set[int]:
    """The items (images) the folder's shards hold, explained or listed as unreadable."""
    done: set[int] = set()
    for path in shard_paths(folder):
        shard = _read_shard(path)
        done.update(shard.columns["item"])
        done.update(entry["item"] for entry in shard.unreadable)
    return done


class MapRecord:
    """One stored map: ``image``, ``item``, ``method``, ``target``, ``target_name``,
    ``label``, ``predicted``, ``score``, ``shape``, and ``map``, the ``(h, w)`` float32
    tensor, read from its shard when first asked for."""

    def __init__(self, shard: _Shard, row: int, method: str) -> None:
        self._shard, self.row, self.method = shard, row, method
        self.image: str = shard.images[row]
        self.item: int = shard.columns["item"][row]
        self.target: int = shard.columns["target"][row]
        self.target_name: str = shard.target_names[row]
        self.label: int = shard.columns["label"][row]
        self.predicted: int = shard.columns["predicted"][row]
        self.score: float = shard.columns["score"][row]
        self.shape, self.dtype = shard.maps[method]

    @property
    def shard(self) -> Path:
        """The safetensors file that holds the map."""
        return self._shard.path

    @cached_property
    def map(self) -> Tensor:
        """``(h, w)`` float32, the stored map."""
        with safe_open(str(self._shard.path), framework="pt") as handle:
            return handle.get_slice(_tensor(self.method))[self.row].float()

    def __repr__(self) -> str:
        return f"MapRecord(image={self.image!r}, method={self.method!r}, target={self.target} ({self.target_name}), score={self.score:.4g})"


class MapRecords(Sequence[MapRecord]):
    """The records of a maps folder (see :func:`load_maps`), in order: shard by shard, each
    image's targets in turn, each target's methods in the job's order. Each
    :class:`MapRecord` is made when asked for; only the shards' headers are held."""

    def __init__(self, shards: list[_Shard], method: str | None, unreadable: list[dict[str, Any]]) -> None:
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
    written so far) and after one was killed.

    Args:
        folder: the job's output folder.
        method: only this method's maps (its key, e.g. ``"gmar-l1"``).

    Raises:
        FileNotFoundError: ``folder`` holds no maps.
        ValueError: a file among the shards is not one, or ``method`` is not in the job.
    """
    folder = Path(folder)
    if not (folder / JOB_FILE).is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no maps ({JOB_FILE} is missing): name the folder a job wrote")
    methods = json.loads((folder / JOB_FILE).read_text())["methods"]
    if method is not None and method not in methods:
        raise ValueError(f"the job in {str(folder)!r} has no method {method!r}; it has {', '.join(methods)}")
    shards = [_read_shard(path) for path in shard_paths(folder)]
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
                out[into] = handle.get_tensor(_tensor(method))[taken].float()
    return out


def write_index(folder: str | os.PathLike[str], class_names: Mapping[int, str]) -> tuple[int, int]:
    """Write ``index.csv`` (:data:`INDEX_COLUMNS`) and ``unreadable.csv`` from the
    folder's shards; ``class_names`` names the labels. Returns the number of maps and of
    unreadable images."""
    folder = Path(folder)
    maps = unreadable = 0
    with replacing(folder / INDEX, newline="") as index, replacing(folder / UNREADABLE, newline="") as skipped:
        rows = csv.DictWriter(index, fieldnames=list(INDEX_COLUMNS))
        rows.writeheader()
        errors = csv.DictWriter(skipped, fieldnames=["item", "image", "error"])
        errors.writeheader()
        for path in shard_paths(folder):
            shard = _read_shard(path)
            errors.writerows(shard.unreadable)
            unreadable += len(shard.unreadable)
            for row in range(len(shard.images)):
                for key in shard.methods:
                    record = MapRecord(shard, row, key)
                    rows.writerow(
                        {
                            "image": record.image,
                            "item": record.item,
                            "label": record.label,
                            "label_name": class_names.get(record.label, ""),
                            "target": record.target,
                            "target_name": record.target_name,
                            "score": f"{record.score:.6g}",
                            "predicted": record.predicted,
                            "method": key,
                            "shape": "x".join(map(str, record.shape)),
                            "dtype": record.dtype,
                            "shard": path.relative_to(folder).as_posix(),
                            "tensor": _tensor(key),
                            "row": row,
                        }
                    )
                    maps += 1
    return maps, unreadable
