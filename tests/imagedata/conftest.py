"""Shared fixtures of the data tests: a tiny synthetic Fashion-MNIST."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


def _write_idx_gz(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fake_fashion_mnist")
    labels = np.repeat(np.arange(10), 3).astype(np.uint8)
    train = np.full((30, 28, 28), 255, dtype=np.uint8)
    test = np.zeros((30, 28, 28), dtype=np.uint8)
    test[:, :, :14] = 255
    for prefix, images in (("train", train), ("t10k", test)):
        _write_idx_gz(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx_gz(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory
