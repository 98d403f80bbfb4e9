"""IDX parsing and Fashion-MNIST loading."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from captum_gmar.imagedata import fashion_mnist as fm

REAL_DIR = fm.DEFAULT_DATA_DIR


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def _write_dataset(directory: Path, n_train: int = 12, n_test: int = 7) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        _write_gz(directory / f"{prefix}-images-idx3-ubyte.gz", _idx_bytes(images, 0x08))
        _write_gz(directory / f"{prefix}-labels-idx1-ubyte.gz", _idx_bytes(labels, 0x08))


def test_class_names() -> None:
    assert len(fm.CLASS_NAMES) == 10
    assert fm.CLASS_NAMES[0] == "T-shirt/top" and fm.CLASS_NAMES[9] == "Ankle boot"


@pytest.mark.parametrize(("dtype", "code"), [(np.uint8, 0x08), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D)])
def test_read_idx_roundtrip(tmp_path: Path, dtype: type, code: int) -> None:
    array = np.arange(24).reshape(2, 3, 4).astype(dtype) * (1 if dtype is np.uint8 else -300)
    out = fm.read_idx(_write_gz(tmp_path / "a.gz", _idx_bytes(array, code)))
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_read_idx_uncompressed(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(labels, 0x08))
    np.testing.assert_array_equal(fm.read_idx(path), labels)


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    payload = b"\x01\x02" + _idx_bytes(np.zeros(4, np.uint8), 0x08)[2:]
    with pytest.raises(ValueError, match="magic"):
        fm.read_idx(_write_gz(tmp_path / "a.gz", payload))


def test_read_idx_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="type code"):
        fm.read_idx(_write_gz(tmp_path / "a.gz", _idx_bytes(np.zeros(4, np.uint8), 0x0A)))


def test_read_idx_truncated_payload(tmp_path: Path) -> None:
    payload = _idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08)[:-10]
    with pytest.raises(ValueError, match="payload"):
        fm.read_idx(_write_gz(tmp_path / "a.gz", payload))


def test_read_idx_truncated_gzip(tmp_path: Path) -> None:
    path = _write_gz(tmp_path / "a.gz", _idx_bytes(np.arange(200, dtype=np.uint8), 0x08))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="gzip"):
        fm.read_idx(path)


def test_missing_dir_explains_how_to_get_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        fm.load_fashion_mnist("train", tmp_path / "nope")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert fm.ENV_VAR in message


def test_missing_file_explains_how_to_get_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        fm.load_fashion_mnist("test", tmp_path)


def test_env_var_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_dataset(tmp_path)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    images, labels = fm.load_fashion_mnist("train")
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int64
    # An explicit argument wins over the environment variable.
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "elsewhere"))
    images, _ = fm.load_fashion_mnist("test", tmp_path)
    assert images.shape == (7, 28, 28)
    assert not images.flags.writeable


def test_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        fm.load_fashion_mnist("val", tmp_path)  # type: ignore[arg-type]


@pytest.mark.skipif(not REAL_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = fm.load_fashion_mnist(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,)
        assert labels.min() == 0 and labels.max() == 9
        assert np.bincount(labels).tolist() == [n // 10] * 10
