"""GMAR's output goes straight into Captum's metrics and visualisation."""

import matplotlib
import numpy as np
import pytest
import torch
from captum.attr import visualization
from captum.metrics import infidelity, sensitivity_max

from captum_gmar import AttentionRollout, GMARAttribution

matplotlib.use("Agg")


@pytest.fixture
def gmar(load_tiny):
    return GMARAttribution(load_tiny("DeiTForImageClassificationWithTeacher"))


def test_infidelity(gmar, images):
    targets = torch.tensor([0, 2, 4])
    attributions = gmar.attribute(images, target=targets)

    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(0)) * 0.1
        return noise, inputs - noise

    scores = infidelity(gmar.forward_func, perturb, images, attributions, target=targets, n_perturb_samples=4)
    assert scores.shape == (3,) and torch.isfinite(scores).all() and (scores >= 0).all()


@pytest.mark.parametrize("method", [GMARAttribution, AttentionRollout])
def test_sensitivity_max(load_tiny, images, method):
    attribution = method(load_tiny("ViTForImageClassification"))
    targets = torch.tensor([1, 1, 3])
    scores = sensitivity_max(attribution.attribute, images, target=targets, n_perturb_samples=3, perturb_radius=0.01)
    assert scores.shape == (3,) and torch.isfinite(scores).all() and (scores >= 0).all()


def test_visualize_image_attr(gmar, images):
    attributions = gmar.attribute(images, target=1)
    attr = attributions[0].permute(1, 2, 0).numpy()
    image = (images[0].permute(1, 2, 0).numpy() - images.min().item()) / np.ptp(images.numpy())
    figure, axis = visualization.visualize_image_attr(
        attr, image, method="blended_heat_map", sign="positive", show_colorbar=True, use_pyplot=False
    )
    assert figure is not None and axis is not None
    single = attributions[0, :1].permute(1, 2, 0).numpy()  # H x W x 1
    visualization.visualize_image_attr(single, method="heat_map", sign="positive", use_pyplot=False)
