"""Real photos, and composites of them that say where each photo is.

The photos are the colour photographs bundled with scikit-image and scikit-learn (public
domain, CC0 or CC BY 2.0; :data:`PHOTOS` names each one's source and licence), so they
load offline. Where Debian's ``opencv-doc`` package is installed, the real colour
photographs among OpenCV's sample images (:data:`OPENCV_PHOTOS`, read in place from
:data:`OPENCV_DATA_DIR`, never copied) can be loaded by name too, and
:func:`available_photos` adds them to the pool. A composite places two or four of them side by side on one square canvas,
each filling a cell of a random split (the split point between 35% and 65% of the side,
each photo a random crop of its own with the cell's aspect ratio), so the ground truth of
"which pixels show photo ``k``" is the cell. A reference view of a photo is another random
crop of it, flipped left-right, as a retrieval query or a near-duplicate would be.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "OPENCV_DATA_DIR",
    "OPENCV_ENV_VAR",
    "OPENCV_PHOTOS",
    "PHOTOS",
    "Composites",
    "available_photos",
    "load_photos",
    "make_composites",
    "opencv_data_dir",
    "reference_views",
]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data  # an optional dependency: the "photos" extra

        return getattr(skimage.data, name)()

    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images  # an optional dependency: the "photos" extra

        return load_sample_images().images[index]

    return load


#: name -> (loader, what it shows, source and licence)
PHOTOS: dict[str, tuple[Callable[[], np.ndarray], str, str]] = {
    "astronaut": (_skimage("astronaut"), "an astronaut's portrait", "skimage.data.astronaut(): Eileen Collins, NASA; public domain"),
    "chelsea": (_skimage("chelsea"), "a tabby cat", "skimage.data.chelsea(): Stefan van der Walt; CC0"),
    "coffee": (_skimage("coffee"), "a cup of coffee", "skimage.data.coffee(): Rachel Michetti; CC0"),
    "rocket": (_skimage("rocket"), "a rocket launch", "skimage.data.rocket(): Falcon 9 launch of DSCOVR, SpaceX; public domain"),
    "hubble": (
        _skimage("hubble_deep_field"),
        "galaxies in deep space",
        "skimage.data.hubble_deep_field(): Hubble eXtreme Deep Field, NASA; public domain",
    ),
    "ihc": (
        _skimage("immunohistochemistry"),
        "a stained tissue slide (immunohistochemistry)",
        "skimage.data.immunohistochemistry(): colonic glands, CMMI; no known restrictions",
    ),
    "retina": (_skimage("retina"), "an eye's retina (fundus photograph)", "skimage.data.retina(): Mikael Häggström; CC0"),
    "china": (_sklearn(0), "the Summer Palace, Beijing", "sklearn.datasets.load_sample_images(), china.jpg: danielbuechele; CC BY 2.0"),
    "flower": (_sklearn(1), "a dahlia", "sklearn.datasets.load_sample_images(), flower.jpg: vultilion; CC BY 2.0"),
}


#: Where Debian's ``opencv-doc`` package (``apt-get install opencv-doc``) installs OpenCV's
#: sample images (``samples/data`` of the OpenCV source tree).
OPENCV_DATA_DIR = Path("/usr/share/doc/opencv-doc/examples/data")

#: Environment variable naming another folder that holds the files of :data:`OPENCV_PHOTOS`.
OPENCV_ENV_VAR = "CAPTUM_GMAR_OPENCV_DATA"

_OPENCV_SOURCE = "OpenCV's samples/data, Debian package opencv-doc; Apache-2.0 and BSD-3-Clause (the package's copyright file)"

#: name -> (file in :data:`OPENCV_DATA_DIR`, what it shows). The real colour photographs
#: among OpenCV's sample images, one of each stereo or viewpoint pair; left out: renders,
#: drawings and synthetic patterns, a painting, greyscale calibration shots, text
#: documents, a deliberately blurred car and a watermarked press photo. The Debian
#: package's copyright file puts the whole tree under Apache-2.0 and BSD-3-Clause (its
#: only excluded images are the Lena photos); it names no photographer per image.
OPENCV_PHOTOS: dict[str, tuple[str, str]] = {
    "aerial": ("aero1.jpg", "an aerial view of a town"),
    "aloe": ("aloeL.jpg", "an aloe in a pot (a Middlebury stereo view)"),
    "apple": ("apple.jpg", "an apple"),
    "baboon": ("baboon.jpg", "a mandrill's face"),
    "board": ("board.jpg", "a circuit board"),
    "building": ("building.jpg", "an office building"),
    "butterfly": ("butterfly.jpg", "a butterfly on a leaf"),
    "dog": ("chicky_512.png", "a small dog"),
    "notebook": ("ela_original.jpg", "a notebook with an elastic band"),
    "fruits": ("fruits.jpg", "cut citrus fruits and a kiwi"),
    "graffiti": ("graf1.png", "a graffiti wall (an Oxford affine-covariant view)"),
    "palace": ("home.jpg", "a palace's towers against the sky"),
    "books": ("left.jpg", "two books on a floor (a stereo view)"),
    "street": ("leuvenA.jpg", "a cobbled street in Leuven"),
    "orange": ("orange.jpg", "an orange"),
    "toys": ("rubberwhale1.png", "toys and a shell (a Middlebury optical-flow frame)"),
    "smarties": ("smarties.png", "sweets on white"),
    "squirrel": ("squirrel_cls.jpg", "a squirrel on a branch"),
    "desk": ("stuff.jpg", "a pencil, a lighter and caps on a desk"),
}


def opencv_data_dir() -> Path | None:
    """The folder the OpenCV photos are read from (``$CAPTUM_GMAR_OPENCV_DATA``, else
    :data:`OPENCV_DATA_DIR`), or ``None`` when it does not hold all of them."""
    folder = Path(os.environ.get(OPENCV_ENV_VAR) or OPENCV_DATA_DIR)
    files = [name for name, _ in OPENCV_PHOTOS.values()]
    return folder if all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in files) else None


def available_photos() -> list[str]:
    """The photo pool: the names of :data:`PHOTOS`, then those of :data:`OPENCV_PHOTOS`
    where :func:`opencv_data_dir` finds them (``apt-get install opencv-doc``)."""
    return list(PHOTOS) + (list(OPENCV_PHOTOS) if opencv_data_dir() is not None else [])


def describe_photo(name: str) -> str:
    """What photo ``name`` (of :data:`PHOTOS` or :data:`OPENCV_PHOTOS`) shows, in a few words."""
    return PHOTOS[name][1] if name in PHOTOS else OPENCV_PHOTOS[name][1]


def _read_opencv(name: str) -> np.ndarray:
    folder = opencv_data_dir()
    if folder is None:
        raise FileNotFoundError(
            f"the OpenCV photo {name!r} is read from Debian's opencv-doc package: `apt-get install opencv-doc` "
            f"(files land in {OPENCV_DATA_DIR}), or name a folder holding {', '.join(f for f, _ in OPENCV_PHOTOS.values())} "
            f"in the {OPENCV_ENV_VAR} environment variable"
        )
    path = folder / OPENCV_PHOTOS[name][0]
    data = path.read_bytes() if path.is_file() else gzip.decompress((folder / f"{path.name}.gz").read_bytes())
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def load_photos(names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The photos named (default: all of :data:`PHOTOS`; names of :data:`OPENCV_PHOTOS`
    too), ``uint8 (H, W, 3)`` RGB.

    Raises:
        ValueError: an unknown name.
        ImportError: scikit-image or scikit-learn is missing (``pip install "captum-gmar[photos]"``).
        FileNotFoundError: an OpenCV photo named, and ``opencv-doc`` not installed.
    """
    names = list(PHOTOS) if names is None else list(names)
    unknown = [name for name in names if name not in PHOTOS and name not in OPENCV_PHOTOS]
    if unknown:
        raise ValueError(
            f"unknown photo(s) {', '.join(unknown)}; the photos are {', '.join(PHOTOS)} and, from opencv-doc, {', '.join(OPENCV_PHOTOS)}"
        )
    try:
        return {name: np.ascontiguousarray(PHOTOS[name][0]()[..., :3] if name in PHOTOS else _read_opencv(name)) for name in names}
    except ImportError as error:
        raise ImportError(f'the bundled photos need scikit-image and scikit-learn: pip install "captum-gmar[photos]" ({error})') from error


@dataclass(frozen=True)
class Composites:
    """``N`` composites of up to four photos on a square canvas of side ``S``.

    Attributes:
        images: ``uint8 (N, S, S, 3)``.
        photos: ``int64 (N, 4)``, the index (in the list of photos given) of the photo
            in each slot, ``-1`` for an unused slot.
        masks: ``bool (N, 4, S, S)``, each slot's cell (all False when unused).
    """

    images: np.ndarray
    photos: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_photos(self) -> np.ndarray:
        """``(N,)`` photos per composite (2 or 4)."""
        return (self.photos >= 0).sum(1)


def make_composites(photos: Sequence[np.ndarray], n: int, seed: int, size: int = 448, counts: Sequence[int] = (2, 4)) -> Composites:
    """``n`` composites of distinct photos drawn from ``photos``, seeded.

    Args:
        photos: ``uint8 (H, W, 3)`` images, at least ``max(counts)`` of them.
        n: number of composites.
        seed: for the layouts, the photos chosen and their crops.
        size: the canvas side in pixels.
        counts: photos per composite, drawn uniformly among these (2: side by side or
            one above the other; 4: a 2 x 2 grid).
    """
    if not counts or any(c not in (2, 4) for c in counts):
        raise ValueError(f"counts must be among 2 and 4, got {list(counts)}")
    if len(photos) < max(counts):
        raise ValueError(f"{max(counts)} photos per composite need at least {max(counts)} photos, got {len(photos)}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    chosen = np.full((n, 4), -1, np.int64)
    masks = np.zeros((n, 4, size, size), bool)
    for i in range(n):
        count = int(rng.choice(counts))
        chosen[i, :count] = rng.choice(len(photos), count, replace=False)
        for slot, (top, bottom, left, right) in enumerate(_cells(rng, size, count)):
            images[i, top:bottom, left:right] = _fill(photos[chosen[i, slot]], bottom - top, right - left, rng)
            masks[i, slot, top:bottom, left:right] = True
    return Composites(images, chosen, masks)


def reference_views(photos: Sequence[np.ndarray], seed: int, keep: tuple[float, float] = (0.6, 0.85)) -> list[np.ndarray]:
    """Another view of each photo: a random crop keeping ``keep`` of each side (its
    position random too), flipped left-right."""
    rng = np.random.default_rng(seed)
    views = []
    for photo in photos:
        height, width = photo.shape[:2]
        h, w = (int(round(side * rng.uniform(*keep))) for side in (height, width))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        views.append(np.ascontiguousarray(photo[top : top + h, left : left + w][:, ::-1]))  # columns reversed: a mirror image
    return views


def _cells(rng: np.random.Generator, size: int, count: int) -> list[tuple[int, int, int, int]]:
    """``(top, bottom, left, right)`` of each cell of a random split of the canvas."""

    def cut() -> int:
        return int(round(size * rng.uniform(0.35, 0.65)))

    if count == 2:
        at = cut()
        return [(0, size, 0, at), (0, size, at, size)] if rng.random() < 0.5 else [(0, at, 0, size), (at, size, 0, size)]
    row, column = cut(), cut()
    return [(0, row, 0, column), (0, row, column, size), (row, size, 0, column), (row, size, column, size)]


def _fill(photo: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo`` with the cell's aspect ratio (70-100% of the largest
    such crop), resized to ``height x width``."""
    rows, cols = photo.shape[:2]
    scale = min(rows / height, cols / width) * rng.uniform(0.7, 1.0)
    h, w = max(1, int(height * scale)), max(1, int(width * scale))
    top, left = int(rng.integers(0, rows - h + 1)), int(rng.integers(0, cols - w + 1))
    crop = Image.fromarray(photo[top : top + h, left : left + w])
    return np.asarray(crop.resize((width, height), Image.Resampling.BICUBIC))
