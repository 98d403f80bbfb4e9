"""Read the Fashion-MNIST IDX files (Zalando Research, MIT licence).

The data is not bundled. On Debian/Ubuntu ``apt-get install dataset-fashion-mnist``
puts the four ``.gz`` files in :data:`DEFAULT_DATA_DIR`; any other directory holding
them can be given as an argument or through the environment variable
:data:`ENV_VAR`.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_DATA_DIR",
    "ENV_VAR",
    "Split",
    "load_fashion_mnist",
    "read_idx",
    "resolve_data_dir",
]

Split = Literal["train", "test"]

#: Class names, indexed by the Fashion-MNIST label.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where the Debian package ``dataset-fashion-mnist`` installs the files.
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Environment variable that overrides :data:`DEFAULT_DATA_DIR`.
ENV_VAR = "CAPTUM_GMAR_FASHION_MNIST"

_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# IDX type codes (third magic byte) -> big-endian numpy dtypes.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_HELP = (
    "Fashion-MNIST was not found at {where}. Install it with "
    "`apt-get install dataset-fashion-mnist` (files land in {default}), or point the "
    "`data_dir` argument or the {env} environment variable at a directory holding "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz."
)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory to read from: ``data_dir``, else ``$CAPTUM_GMAR_FASHION_MNIST``,
    else :data:`DEFAULT_DATA_DIR`. Raises ``FileNotFoundError`` (with install help) if
    it does not exist."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(_HELP.format(where=path, default=DEFAULT_DATA_DIR, env=ENV_VAR))
    return path


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse one IDX file (gzip-compressed if the name ends in ``.gz``).

    Returns an array with the dims and dtype the header declares, in native byte
    order, e.g. ``uint8 (N, 28, 28)`` for images and ``uint8 (N,)`` for labels.
    Raises ``ValueError`` for a bad magic number, an unknown type code, or a file
    whose payload is shorter or longer than its header says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()!r})")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: payload has {len(raw) - header} bytes, header {dims} needs {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=False)


@functools.lru_cache(maxsize=4)
def _load_cached(data_dir: Path, split: Split) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = _FILES[split]
    paths = [data_dir / image_file, data_dir / label_file]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(_HELP.format(where=p, default=DEFAULT_DATA_DIR, env=ENV_VAR))
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{data_dir}: {split} images {images.shape} and labels {labels.shape} do not match")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{data_dir}: {split} labels outside 0..{len(CLASS_NAMES) - 1}")
    # Cached arrays are shared between callers, so make them read-only.
    images.setflags(write=False)
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(split: Split, data_dir: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one split.

    Returns ``(images, labels)``: read-only ``uint8 (N, 28, 28)`` and ``int64 (N,)``
    with N = 60000 for ``"train"`` and 10000 for ``"test"``. Results are cached per
    directory and split.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _load_cached(resolve_data_dir(data_dir).resolve(), split)
