"""Images into an image processor: PIL images and arrays of any height read with the right
layout, on the slow (PIL) and, where torchvision is installed, the fast (torchvision)
processors, which the transformers releases 5.0 to 5.22 read differently."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from captum_gmar.imagedata.processing import image_array, load_processor, process_images, processed_pixels, processor_options

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
FAST = importlib.util.find_spec("torchvision") is not None and hasattr(transformers, "ViTImageProcessorFast")
KINDS = ["slow", "fast"] if FAST else ["slow"]


def no_resize_processor(kind: str):
    cls = transformers.ViTImageProcessorFast if kind == "fast" else transformers.ViTImageProcessor
    return cls(do_resize=False, image_mean=MEAN, image_std=STD)


def expected(array: np.ndarray) -> torch.Tensor:
    """What a rescale and normalisation of ``uint8 (H, W, 3)`` must give, ``(3, H, W)``."""
    x = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(20, 30), (1, 30), (3, 30), (30, 3)])  # 1 and 3 px high: read as channels first if guessed
@pytest.mark.parametrize("as_pil", [True, False])
def test_images_keep_their_layout(kind, shape, as_pil):
    array = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    image = Image.fromarray(array) if as_pil else array
    out = process_images(no_resize_processor(kind), image)
    assert out.shape == (1, 3, *shape)
    torch.testing.assert_close(out[0], expected(array), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_images_of_several_sizes_one_by_one(kind):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((8, 12), (3, 5), (8, 12))]
    images = [Image.fromarray(a) for a in arrays]
    processor = no_resize_processor(kind)
    out = processed_pixels(processor, {}, images)
    for got, array in zip(out, arrays):
        torch.testing.assert_close(got, expected(array), atol=1e-5, rtol=0)
    resized = processed_pixels(processor, processor_options(processor, (6, 4)), images)
    assert [tuple(p.shape) for p in resized] == [(3, 6, 4)] * 3


def test_grey_and_rgba_images_become_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert image_array(grey).shape == (3, 4, 3) and (image_array(grey)[..., 2] == grey).all()
    rgba = Image.fromarray(np.zeros((3, 4, 4), dtype=np.uint8), mode="RGBA")
    assert image_array(rgba).shape == (3, 4, 3)
    batch = np.zeros((2, 5, 6, 3), dtype=np.uint8)  # (N, H, W, 3): N images
    assert process_images(no_resize_processor("slow"), batch).shape == (2, 3, 5, 6)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4, 4), dtype=np.uint8)])
def test_other_arrays_are_refused(bad):
    with pytest.raises(ValueError, match="uint8"):
        image_array(bad)


def test_a_processor_loads_from_its_folder_or_says_it_needs_torchvision(tmp_path):
    transformers.ViTImageProcessor(do_resize=False).save_pretrained(tmp_path)
    try:
        expected = transformers.AutoImageProcessor.from_pretrained(tmp_path, local_files_only=True)
    except ImportError:  # some transformers 5 releases load image processors only with torchvision
        with pytest.raises(
            ImportError, match=r"^transformers \S+ loads image processors only with torchvision installed: pip install torchvision"
        ):
            load_processor(tmp_path)
    else:
        assert type(load_processor(tmp_path)) is type(expected)
