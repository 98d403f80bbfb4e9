"""The bundled real photos, composites of them and reference views."""

import gzip
import io

import numpy as np
import pytest
from PIL import Image

from captum_gmar.imagedata.photos import (
    OPENCV_ENV_VAR,
    OPENCV_PHOTOS,
    PHOTOS,
    available_photos,
    load_photos,
    make_composites,
    reference_views,
)

for _module in ("skimage", "sklearn"):  # the bundled photos: pip install -e ".[photos]"
    pytest.importorskip(_module, reason='the photos extra is not installed: pip install -e ".[photos]"')


def synthetic(count: int, shape=(40, 60)) -> list[np.ndarray]:
    """Photos whose pixels are all distinct within each photo (to locate crops)."""
    rows, cols = shape
    index = np.arange(rows * cols).reshape(rows, cols)
    return [np.stack([index % 251, index // 251, np.full_like(index, k)], -1).astype(np.uint8) for k in range(count)]


def test_every_photo_loads_offline_as_rgb():
    photos = load_photos()
    assert list(photos) == list(PHOTOS) and len(photos) == 9
    for name, image in photos.items():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 300, name
        assert image.std() > 10, name  # a photo, not a flat image
    with pytest.raises(ValueError, match="unknown photo.*lena; the photos are astronaut"):
        load_photos(["chelsea", "lena"])


def test_the_opencv_photos_load_in_place_as_rgb(opencv_photos):
    assert available_photos() == list(PHOTOS) + list(OPENCV_PHOTOS) and len(available_photos()) == 28
    photos = load_photos(list(OPENCV_PHOTOS))
    for name, image in photos.items():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 300, name
        assert image.std() > 10, name
    assert len({image.tobytes() for image in photos.values()}) == len(photos)  # no photo twice


def test_without_the_opencv_photos_the_pool_is_the_nine(tmp_path, monkeypatch):
    monkeypatch.setenv(OPENCV_ENV_VAR, str(tmp_path))  # a folder without them
    assert available_photos() == list(PHOTOS)
    with pytest.raises(FileNotFoundError, match="apt-get install opencv-doc"):
        load_photos(["chelsea", "baboon"])


def test_opencv_photos_are_read_from_the_folder_named_compressed_or_not(tmp_path, monkeypatch):
    for k, (file, _) in enumerate(OPENCV_PHOTOS.values()):
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 12, 4 if k == 0 else 3), k, np.uint8)).save(buffer, format="PNG")  # the first with alpha
        if k % 2:
            (tmp_path / f"{file}.gz").write_bytes(gzip.compress(buffer.getvalue()))
        else:
            (tmp_path / file).write_bytes(buffer.getvalue())
    monkeypatch.setenv(OPENCV_ENV_VAR, str(tmp_path))
    assert available_photos()[len(PHOTOS) :] == list(OPENCV_PHOTOS)
    for k, (name, image) in enumerate(load_photos(list(OPENCV_PHOTOS)).items()):
        assert image.shape == (8, 12, 3) and (image == k).all(), name


@pytest.mark.parametrize("counts", [(2,), (4,), (2, 4)])
def test_composites_partition_the_canvas_into_distinct_photos(counts):
    photos = synthetic(5)
    composites = make_composites(photos, 12, seed=3, size=64, counts=counts)
    assert composites.images.shape == (12, 64, 64, 3) and composites.masks.shape == (12, 4, 64, 64)
    for i in range(12):
        used = composites.photos[i] >= 0
        assert used.sum() in counts and (composites.photos[i, ~used] == -1).all()
        assert len(set(composites.photos[i, used])) == used.sum()  # distinct photos
        assert (composites.masks[i, used].sum(0) == 1).all() and not composites.masks[i, ~used].any()  # a partition
        for slot in np.flatnonzero(used):
            cell = composites.images[i][composites.masks[i, slot]]
            assert (cell[:, 2] == composites.photos[i, slot]).all()  # the cell shows its own photo
            share = composites.masks[i, slot].mean()
            assert 0.35**2 - 0.02 <= share <= 0.65 + 0.02
    again = make_composites(photos, 12, seed=3, size=64, counts=counts)
    assert np.array_equal(again.images, composites.images) and np.array_equal(again.photos, composites.photos)
    assert not np.array_equal(make_composites(photos, 12, seed=4, size=64, counts=counts).photos, composites.photos)


def test_composite_arguments_are_checked():
    with pytest.raises(ValueError, match="counts must be among 2 and 4"):
        make_composites(synthetic(4), 1, seed=0, counts=(3,))
    with pytest.raises(ValueError, match="4 photos per composite need at least 4 photos, got 3"):
        make_composites(synthetic(3), 1, seed=0)


def test_a_reference_view_is_a_flipped_crop_of_its_photo():
    photos = synthetic(3)
    views = reference_views(photos, seed=0)
    assert len(views) == 3
    for photo, view in zip(photos, views):
        h, w = view.shape[:2]
        assert 0.6 * 40 - 1 <= h <= 0.85 * 40 + 1 and 0.6 * 60 - 1 <= w <= 0.85 * 60 + 1
        unflipped = view[:, ::-1]
        top, left = np.argwhere((photo[..., 0] == unflipped[0, 0, 0]) & (photo[..., 1] == unflipped[0, 0, 1]))[0]
        assert np.array_equal(photo[top : top + h, left : left + w], unflipped)
    assert not np.array_equal(reference_views(photos, seed=1)[0], views[0])
