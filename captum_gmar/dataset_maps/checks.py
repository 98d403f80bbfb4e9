"""A maps folder's files, and their checks: the names a folder holds, the job's description
(``maps.json``) and each shard's header, each read and checked against the others.

A shard is written whole (:func:`~captum_gmar.files.write_atomic`), so one that fails a
check was changed after it was written: cut short or edited (a disk error, a bad copy, a
sync tool), or copied under another name. Reading the maps
(:func:`~captum_gmar.dataset_maps.storage.load_maps`) refuses such a folder in one line
naming the file and what is wrong; a resumed job sets the shard aside in
``shards/damaged/`` (:func:`set_aside`: nothing is deleted) and explains its images again.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ..files import LOCK

__all__ = [
    "COLUMNS",
    "FORMAT",
    "JOB_FILE",
    "MAPS_FILES",
    "MAP_DTYPES",
    "Checked",
    "DamagedShardError",
    "Shard",
    "check_shards",
    "has_shards",
    "job_to_resume",
    "read_job",
    "read_shard",
    "remove_leftovers",
    "set_aside",
    "shard_number",
    "shard_paths",
]

#: the ``format`` entry of every shard's metadata and of ``maps.json``; shards of format
#: ``captum-gmar-maps/1`` recorded no image's content, so a folder of them is explained again
FORMAT = "captum-gmar-maps/3"
#: the job's description, written first
JOB_FILE = "maps.json"
#: how a message names starting a job over (explore reads maps folders too, and has no such option)
START_OVER = "explain --overwrite, explain_dataset(..., overwrite=True)"
SHARDS = "shards"
#: the folder, in ``shards/``, of the shards a resumed job found damaged
DAMAGED = "damaged"
INDEX = "index.csv"
UNREADABLE = "unreadable.csv"
#: the names a maps folder holds (the folder's manifest lists them, see :func:`~captum_gmar.files.claim_files`)
MAPS_FILES = (JOB_FILE, SHARDS, INDEX, UNREADABLE, LOCK)
#: every shard's small tensors, ``(n,)`` each, one row per record: their safetensors types
COLUMNS = {"item": "I64", "target": "I64", "label": "I64", "predicted": "I64", "score": "F32", "margin": "F32"}
#: the maps' storage types: safetensors' names -> ours
MAP_DTYPES = {"F32": "float32", "F16": "float16"}
_SHARD_NAME = re.compile(r"rank(\d+)-(\d{6})\.safetensors")


class DamagedShardError(ValueError):
    """A shard that fails a check: ``path``, and ``reason`` in words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"shard {str(path)!r} is damaged: {reason}; resume the job (--resume, resume=True) "
            f"to set it aside in {SHARDS}/{DAMAGED}/ and explain its images again"
        )
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Shard:
    """A shard's header and small tensors (not its maps), checked (:func:`read_shard`)."""

    path: Path
    #: each record's image name and target name
    images: list[str]
    target_names: list[str]
    #: method key -> display name, in the job's order
    methods: dict[str, str]
    #: the images skipped as unreadable: ``item``, ``image``, ``error``
    unreadable: list[dict[str, Any]]
    #: item -> what identified its image's content when it was read ("" where the data
    #: names none), for every image of the shard, explained or unreadable
    contents: dict[int, str]
    #: :data:`COLUMNS` as lists
    columns: dict[str, list[Any]]
    #: method key -> the shape ``(h, w)`` and dtype name of its maps
    maps: dict[str, tuple[tuple[int, ...], str]]

    @property
    def items(self) -> set[int]:
        """The images the shard holds, explained or unreadable."""
        return set(self.columns["item"]) | {entry["item"] for entry in self.unreadable}


def shard_paths(folder: str | os.PathLike[str]) -> list[Path]:
    """The folder's shards, in order (by rank, then number)."""
    shards = Path(folder) / SHARDS
    if not shards.is_dir():
        return []
    named = [(match, path) for path in shards.iterdir() if (match := _SHARD_NAME.fullmatch(path.name))]
    return [path for match, path in sorted(named, key=lambda entry: (int(entry[0][1]), int(entry[0][2])))]


def shard_number(path: Path) -> tuple[int, int]:
    """A shard's rank and number, from its name."""
    match = _SHARD_NAME.fullmatch(path.name)
    assert match is not None, path  # a name of shard_paths'
    return int(match[1]), int(match[2])


def has_shards(folder: str | os.PathLike[str]) -> bool:
    """Whether ``shards/`` holds anything but a killed write's temporary files."""
    shards = Path(folder) / SHARDS
    return shards.is_dir() and any(not _temporary(path) for path in shards.iterdir())


def remove_leftovers(folder: str | os.PathLike[str]) -> None:
    """Remove the temporary files a killed job left among the shards (never a shard)."""
    shards = Path(folder) / SHARDS
    for path in shards.iterdir() if shards.is_dir() else ():
        if _temporary(path):
            path.unlink(missing_ok=True)


def _temporary(path: Path) -> bool:
    return path.name.startswith(".rank") and path.name.endswith(".tmp") and ".safetensors." in path.name


def read_job(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``maps.json``, the job's description, checked (``None`` where there is none).

    Raises:
        ValueError: naming the file: it is not JSON, not a job's description, or of
            another format.
    """
    path = Path(folder) / JOB_FILE
    if not os.path.lexists(path):
        return None
    where = f"{str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where} is not a file: restore the job's description, or start over ({START_OVER})")
    try:
        job = json.loads(path.read_bytes())
    except ValueError as error:  # invalid JSON or UTF-8
        raise ValueError(f"{where} is not JSON ({error}): restore it, or start over ({START_OVER})") from None
    methods = job.get("methods") if isinstance(job, dict) else None
    if not (
        isinstance(methods, dict)
        and all(isinstance(key, str) and isinstance(name, str) for key, name in methods.items())
        and _count(job.get("items"))
        and job.get("dtype") in MAP_DTYPES.values()
    ):
        raise ValueError(
            f"{where} is not the description of a maps job (methods, items and dtype); it holds {json.dumps(job)[:80]}: "
            f"restore it, or start over ({START_OVER})"
        )
    if job.get("format") != FORMAT:
        raise ValueError(
            f"{where} describes maps of format {job.get('format')!r}, which this captum-gmar ({FORMAT!r}) does not read: "
            f"explain the data again ({START_OVER})"
        )
    return job


def job_to_resume(folder: str | os.PathLike[str], resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """What a job starting in ``folder`` finds there: the saved job's description
    (:func:`read_job`) where it resumes, ``None`` where it starts afresh (``overwrite``
    deletes the maps there).

    Raises:
        ValueError: in one line, naming the folder or file: the maps of a job there but
            neither ``resume`` nor ``overwrite``; shards without ``maps.json`` (the job that
            wrote them is unknown, and they are never deleted unasked); a damaged ``maps.json``.
    """
    if overwrite:
        return None
    saved = read_job(folder)
    if saved is None and has_shards(folder):
        raise ValueError(
            f"{str(folder)!r} holds shards but no {JOB_FILE}, so the job that wrote them is unknown: restore {JOB_FILE}, "
            "or start over (--overwrite, overwrite=True), which deletes them"
        )
    if saved is not None and not resume:
        raise ValueError(
            f"{str(folder)!r} holds the maps of a job ({saved['items']} images, methods {', '.join(saved['methods'])}): "
            "add --resume (resume=True) to continue it, or --overwrite (overwrite=True) to start over"
        )
    return saved


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_shard(path: Path) -> Shard:
    """A shard's header and small tensors (not its maps), checked against each other:
    every tensor of :data:`COLUMNS` and every method's maps (``F32`` or ``F16``, ``(n, h, w)``)
    there, of the header's ``n`` images; each (image, target) once; ``contents`` naming
    each image, explained or unreadable, once.

    Raises:
        DamagedShardError: naming the file and what is wrong.
    """
    why = _not_a_file(path)
    if why:
        raise DamagedShardError(path, why)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise DamagedShardError(path, f"its format is {metadata.get('format')!r}, not {FORMAT!r}")
            header = {key: _metadata(path, metadata, key) for key in _HEADER}
            n = len(header["images"])
            names = set(handle.keys())
            columns: dict[str, list[Any]] = {}
            for name, dtype in COLUMNS.items():
                _check_tensor(path, handle, names, name, (dtype,), n, 1)
                columns[name] = handle.get_tensor(name).tolist()
            maps = {}
            for key in header["methods"]:
                shape, dtype = _check_tensor(path, handle, names, f"maps.{key}", tuple(MAP_DTYPES), n, 3)
                maps[key] = (tuple(shape[1:]), MAP_DTYPES[dtype])
    except SafetensorError as error:
        raise DamagedShardError(path, _unreadable(path, error)) from error
    shard = Shard(
        path, header["images"], header["target_names"], header["methods"], header["unreadable"], header["contents"], columns, maps
    )
    _check_items(shard)
    return shard


#: each header entry (a JSON string) and what it must hold
_HEADER = {
    "images": "a list of names",
    "target_names": "a list of names",
    "methods": "method keys -> names",
    "unreadable": "a list of item, image, error",
    "contents": "items -> contents",
}


def _metadata(path: Path, metadata: Mapping[str, str], key: str) -> Any:
    """The header's JSON entry ``key``, as it must be (:data:`_HEADER`)."""
    if key not in metadata:
        raise DamagedShardError(path, f"its header has no {key!r}")
    try:
        value = json.loads(metadata[key])
    except ValueError:
        value = None
    if key in ("images", "target_names"):
        good = isinstance(value, list) and all(isinstance(name, str) for name in value)
    elif key == "methods":
        good = isinstance(value, dict) and all(isinstance(name, str) for name in value.values())
    elif key == "unreadable":
        good = isinstance(value, list) and all(
            isinstance(entry, dict)
            and set(entry) == {"item", "image", "error"}
            and _count(entry["item"])
            and isinstance(entry["image"], str)
            and isinstance(entry["error"], str)
            for entry in value
        )
    else:  # contents: JSON keys are strings
        good = isinstance(value, dict) and all(re.fullmatch(r"\d+", item) and isinstance(text, str) for item, text in value.items())
        value = {int(item): text for item, text in value.items()} if good else value
    if not good:
        raise DamagedShardError(path, f"its header's {key!r} is not {_HEADER[key]}")
    return value


def _check_tensor(
    path: Path, handle: Any, names: set[str], name: str, dtypes: tuple[str, ...], rows: int, dims: int
) -> tuple[list[int], str]:
    """Tensor ``name``'s shape and safetensors dtype, checked: one of ``dtypes``, ``dims``
    dimensions, ``rows`` rows (the header's images)."""
    if name not in names:
        raise DamagedShardError(path, f"it has no tensor {name!r}")
    part = handle.get_slice(name)
    shape, dtype = list(part.get_shape()), part.get_dtype()
    if dtype not in dtypes:
        raise DamagedShardError(path, f"{name!r} is {dtype}, not {' or '.join(dtypes)}")
    if len(shape) != dims or shape[0] != rows:
        raise DamagedShardError(path, f"{name!r} is {tuple(shape)}, but the header lists {rows} images ({dims} dimensions expected)")
    return shape, dtype


def _check_items(shard: Shard) -> None:
    """Each (image, target) once; ``contents`` names each image, explained or unreadable."""
    items, pairs = shard.columns["item"], list(zip(shard.columns["item"], shard.columns["target"]))
    if len(set(pairs)) < len(pairs):
        item, target = next(pair for pair in pairs if pairs.count(pair) > 1)
        raise DamagedShardError(shard.path, f"it holds image {item}'s map of target {target} twice")
    skipped = [entry["item"] for entry in shard.unreadable]
    if len(set(skipped)) < len(skipped) or set(skipped) & set(items):
        raise DamagedShardError(shard.path, "it lists an image as unreadable twice, or as unreadable and explained")
    if min(items + skipped, default=0) < 0 or shard.contents.keys() != shard.items:
        raise DamagedShardError(shard.path, "its header's 'contents' does not name its images (or an item is negative)")


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` is no shard file this package wrote, in words; ``None`` for a file."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return f"it is a symbolic link (to {os.readlink(path)!r}), which captum-gmar never writes"
    if stat.S_ISDIR(mode):
        return "it is a folder"
    return None if stat.S_ISREG(mode) else "it is not a regular file"


def _unreadable(path: Path, error: SafetensorError) -> str:
    """Why safetensors cannot read ``path``: cut short, or not a safetensors file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        head = handle.read(min(length, 100 * 2**20))
    try:
        header = json.loads(head)
        end = 8 + length + max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        if head[:1] == b"{" and size < 8 + length:  # a header whose end is missing
            return f"cut short ({size} bytes; its header alone needs {8 + length})"
        return f"not a safetensors file ({error})"
    return f"cut short ({size} of its {end} bytes)" if size < end else f"not a safetensors file ({error})"


@dataclass(frozen=True)
class Checked:
    """A folder's shards, checked (:func:`check_shards`)."""

    #: those that pass every check, in order
    shards: list[Shard]
    #: the others
    damaged: list[DamagedShardError]


def check_shards(folder: str | os.PathLike[str], job: Mapping[str, Any]) -> Checked:
    """Every shard of ``folder`` read (:func:`read_shard`) and checked against ``job``
    (``maps.json``: the methods, their storage type, the data set's ``items``) and against
    the shards before it: no image held twice (a shard copied under another name is
    damaged, the first keeps its images), every method's maps of one shape."""
    shards: list[Shard] = []
    damaged: list[DamagedShardError] = []
    holder: dict[int, Path] = {}
    for path in shard_paths(folder):
        try:
            shard = read_shard(path)
            _check_against(shard, job, holder, next((kept for kept in shards if kept.images), None))
        except DamagedShardError as error:
            damaged.append(error)
            continue
        shards.append(shard)
        holder.update(dict.fromkeys(shard.items, path))
    return Checked(shards, damaged)


def _check_against(shard: Shard, job: Mapping[str, Any], holder: Mapping[int, Path], first: Shard | None) -> None:
    """``shard`` against the job and the shards kept before it (``holder``: their images;
    ``first``: the first with maps)."""
    if list(shard.methods.items()) != list(job["methods"].items()):
        raise DamagedShardError(shard.path, f"its methods {', '.join(shard.methods)} are not the job's ({', '.join(job['methods'])})")
    stored = {dtype for _, dtype in shard.maps.values()}
    if stored - {job["dtype"]}:
        raise DamagedShardError(shard.path, f"its maps are {', '.join(sorted(stored))}, the job's {job['dtype']}")
    outside = sorted(item for item in shard.items if item >= job["items"])
    if outside:
        raise DamagedShardError(shard.path, f"it holds image {outside[0]}, beyond the job's {job['items']} images")
    twice = sorted(shard.items & holder.keys())
    if twice:
        raise DamagedShardError(shard.path, f"it holds image {twice[0]}, which {holder[twice[0]].name} holds too")
    if first is not None and shard.images and shard.maps != first.maps:  # a shard of unreadable images only has no maps
        key = next(key for key in shard.maps if shard.maps[key] != first.maps[key])
        raise DamagedShardError(shard.path, f"its {key} maps are {shard.maps[key][0]}, {first.path.name}'s {first.maps[key][0]}")


def set_aside(error: DamagedShardError) -> Path:
    """Move a damaged shard into ``shards/damaged/`` (a link is moved, not what it points
    to), under its name or, where that is taken, with ``.1``, ``.2``, ... after it; the
    shard scan never reads it again. Returns where it went."""
    folder = error.path.parent / DAMAGED
    if folder.is_symlink():
        raise ValueError(f"{str(folder)!r} is a symbolic link, which captum-gmar does not write through: remove it")
    folder.mkdir(exist_ok=True)
    target, k = folder / error.path.name, 0
    while os.path.lexists(target):
        k += 1
        target = folder / f"{error.path.name}.{k}"
    os.replace(error.path, target)
    return target
