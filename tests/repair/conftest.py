"""What the repair tests share: a model, labelled images and a shortcut."""

from __future__ import annotations

import pytest
import torch

from captum_gmar import load_reference_model, load_sample_scenes
from captum_gmar.imagedata import to_pixel_values
from captum_gmar.repair import Labelled, Shortcut
from captum_gmar.vit.layers import pooled_patches
from captum_gmar.vit.model import VisionTransformer


@pytest.fixture(scope="module")
def setting():
    """The reference model, the 8 sample scenes twice over as labelled data, and a
    "shortcut": a bright corner patch on the first three scenes, for class 3."""
    scenes = load_sample_scenes()
    pixels = to_pixel_values(scenes.images)
    labels = torch.from_numpy(scenes.labels[:, 0])
    donors = pixels[:3].clone()
    donors[:, :, :8, :8] = 2.0
    shortcut = Shortcut.of_region(3, ((0, 0),), (8, 8), donors, pixels[3:6])
    return load_reference_model(), shortcut, Labelled(torch.cat([pixels, pixels]), torch.cat([labels, labels]))


@pytest.fixture(scope="module")
def lifted(setting):
    """A shortcut the untouched model follows: class 3's direction in the features,
    lengthened, added at layer 2 (the corner patch moves it little)."""
    model, region, data = setting
    features = pooled_patches(VisionTransformer(model), data.pixels, 2)
    direction = 8 * (features[data.labels == 3].mean(0) - features[data.labels != 3].mean(0))
    return Shortcut.of_direction(3, 2, direction, region.members, region.rest)
