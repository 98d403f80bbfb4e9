import matplotlib
import numpy as np
import pytest
import torch

from captum_gmar.visualization import comparison_grid, head_weight_heatmap, to_display_image

matplotlib.use("Agg")


def test_to_display_image_undoes_normalisation_or_scales():
    pixels = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 2, 2)
    shown = to_display_image(pixels, mean=[0.5] * 3, std=[0.5] * 3)
    assert shown.shape == (2, 2, 3)
    np.testing.assert_allclose(shown[0, 0], [0.0, 0.5, 1.0])
    scaled = to_display_image(pixels * 7)
    assert scaled.min() == 0.0 and scaled.max() == 1.0


def test_comparison_grid_has_a_row_per_image_and_a_column_per_method():
    images = [np.random.default_rng(0).random((16, 16, 3)) for _ in range(2)]
    maps = {"GMAR": torch.rand(2, 16, 16), "IG": torch.zeros(2, 16, 16)}
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    fig = comparison_grid(images, maps, row_titles=["a", "b"], masks=masks)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "GMAR", "IG"]


def test_head_weight_heatmap_shows_layers_by_heads():
    weights = torch.softmax(torch.randn(6, 4), dim=-1)
    fig = head_weight_heatmap(weights)
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (6, 4)
    assert fig.axes[0].get_ylabel() == "layer"
