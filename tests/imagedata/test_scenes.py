"""Scene generator: shapes, determinism, labels, masks and the train/test split.

Most tests run on a tiny synthetic Fashion-MNIST whose items are solid shapes, which
makes the expected masks exact: a training item is a full square, a test item the left
half of a square (so its mask is about half as wide as tall).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from captum_gmar.imagedata import IMAGE_SIZE, Scenes, make_scenes, to_pixel_values
from captum_gmar.imagedata.fashion_mnist import DEFAULT_DATA_DIR


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def test_shapes_and_dtypes(fake_dir: Path) -> None:
    s = make_scenes(10, "train", 0, data_dir=fake_dir)
    assert isinstance(s, Scenes) and len(s) == 10
    assert s.images.shape == (10, IMAGE_SIZE, IMAGE_SIZE, 3) and s.images.dtype == np.uint8
    assert s.labels.shape == (10, 2) and s.labels.dtype == np.int64
    assert s.masks.shape == (10, 2, IMAGE_SIZE, IMAGE_SIZE) and s.masks.dtype == bool
    assert s.num_items.shape == (10,) and set(s.num_items) <= {1, 2}
    x = to_pixel_values(s.images)
    assert x.shape == (10, 3, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    one = s[3]
    assert len(one) == 1 and one.images.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    targets = s.targets()
    assert targets.shape == (10, 10)
    assert torch.equal(targets.sum(1), torch.from_numpy(s.num_items).float())


def test_deterministic_from_seed(fake_dir: Path) -> None:
    a = make_scenes(8, "train", 123, data_dir=fake_dir)
    b = make_scenes(8, "train", 123, data_dir=fake_dir)
    c = make_scenes(8, "train", 124, data_dir=fake_dir)
    for field in ("images", "labels", "masks", "num_items"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.images, c.images)
    # A Generator is consumed: two draws in a row differ, and replay from the seed.
    rng = np.random.default_rng(5)
    first, second = (make_scenes(4, "train", rng, data_dir=fake_dir) for _ in range(2))
    assert not np.array_equal(first.images, second.images)
    replay = np.random.default_rng(5)
    make_scenes(4, "train", replay, data_dir=fake_dir)
    np.testing.assert_array_equal(make_scenes(4, "train", replay, data_dir=fake_dir).images, second.images)


@pytest.mark.parametrize("num_items", [1, 2])
def test_labels_and_counts(fake_dir: Path, num_items: int) -> None:
    s = make_scenes(40, "train", 1, num_items=num_items, data_dir=fake_dir)
    assert (s.num_items == num_items).all()
    assert ((s.labels >= 0) & (s.labels < 10))[:, :num_items].all()
    if num_items == 1:
        assert (s.labels[:, 1] == -1).all() and not s.masks[:, 1].any()
    else:
        assert (s.labels[:, 0] != s.labels[:, 1]).all()


def test_mixed_counts(fake_dir: Path) -> None:
    counts = make_scenes(60, "train", 2, data_dir=fake_dir).num_items
    assert 10 < (counts == 1).sum() < 50


def test_one_item_mask_is_the_item(fake_dir: Path) -> None:
    s = make_scenes(30, "train", 3, num_items=1, data_dir=fake_dir)
    for image, mask in zip(s.images, s.masks[:, 0]):
        y0, y1, x0, x1 = _bbox(mask)
        # A solid square item gives a solid square mask of 28-40 px, inside the canvas,
        # with its corner on the 8-px patch grid.
        assert y1 - y0 == x1 - x0 and 28 <= y1 - y0 <= 40
        assert y0 % 8 == 0 and x0 % 8 == 0
        assert mask.sum() == (y1 - y0) * (x1 - x0)
        # Every pixel of the mask shows the item's single colour ...
        colour = image[mask][0]
        assert (image[mask] == colour).all()
        # ... and the item does not spill outside its mask.
        ring = np.zeros_like(mask)
        ring[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
        ring &= ~mask
        assert (image[ring] == colour).all(axis=1).mean() < 0.05


def test_two_item_masks_are_visible_parts(fake_dir: Path) -> None:
    s = make_scenes(30, "train", 4, num_items=2, data_dir=fake_dir)
    for image, masks in zip(s.images, s.masks):
        assert masks[0].any() and masks[1].any()
        assert not (masks[0] & masks[1]).any()
        for mask in masks:
            assert (image[mask] == image[mask][0]).all()  # one item, one colour
        # The later item is a full square drawn on top; the earlier one stays mostly
        # visible (full squares are the worst case for the overlap search).
        y0, y1, x0, x1 = _bbox(masks[1])
        assert masks[1].sum() == (y1 - y0) * (x1 - x0)
        assert 28 <= y1 - y0 <= 32  # never below Fashion-MNIST's native 28 px
        y0, y1, x0, x1 = _bbox(masks[0])
        assert masks[0].sum() >= 0.5 * (y1 - y0) * (x1 - x0)


def test_split_uses_its_own_sources(fake_dir: Path) -> None:
    # Training items are full squares, test items half-width rectangles.
    for split, ratio in (("train", 1.0), ("test", 0.5)):
        s = make_scenes(20, split, 5, num_items=1, data_dir=fake_dir)
        for mask in s.masks[:, 0]:
            y0, y1, x0, x1 = _bbox(mask)
            assert (x1 - x0) / (y1 - y0) == pytest.approx(ratio, abs=0.1)


def test_bad_arguments(fake_dir: Path) -> None:
    with pytest.raises(ValueError, match="num_items"):
        make_scenes(2, "train", 0, num_items=3, data_dir=fake_dir)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        make_scenes(2, "validation", 0, data_dir=fake_dir)  # type: ignore[arg-type]


@pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_scenes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPTUM_GMAR_FASHION_MNIST", raising=False)
    s = make_scenes(200, "test", 0)
    for n, labels, masks in zip(s.num_items, s.labels, s.masks):
        assert len(set(labels[:n].tolist())) == n
        sizes = masks[:n].sum(axis=(1, 2))
        assert (sizes >= 20).all() and (sizes <= 36 * 36).all()
        assert not (masks[0] & masks[1]).any()
    assert np.bincount(s.labels[s.labels >= 0], minlength=10).min() > 0
