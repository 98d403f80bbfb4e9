import io
import re

import matplotlib
import numpy as np
import pytest
import torch

from captum_gmar.visualization import MAP_CMAP, comparison_grid, head_weight_heatmap, map_scale, show_map, to_display_image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def test_to_display_image_undoes_normalisation_or_scales():
    pixels = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 2, 2)
    shown = to_display_image(pixels, mean=[0.5] * 3, std=[0.5] * 3)
    assert shown.shape == (2, 2, 3)
    np.testing.assert_allclose(shown[0, 0], [0.0, 0.5, 1.0])
    scaled = to_display_image(pixels * 7)
    assert scaled.min() == 0.0 and scaled.max() == 1.0


def test_map_scale_is_the_99th_percentile_or_the_maximum_of_a_sparse_map():
    ramp = torch.arange(1000.0).view(10, 100)
    assert map_scale(ramp) == pytest.approx(float(torch.quantile(ramp.flatten(), 0.99)))
    sparse = torch.zeros(20, 20)
    sparse[3, 4] = 2.5
    assert map_scale(sparse) == 2.5
    assert map_scale(torch.zeros(4, 4)) == 0.0
    assert map_scale(-ramp) == 0.0  # negative relevance is no mass


def test_show_map_overlays_a_heat_map_on_its_own_scale_with_a_colour_bar():
    fig, ax = plt.subplots()
    attribution = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    show_map(ax, attribution, np.full((16, 16, 3), 0.5), title="GMAR")
    grey, heat = ax.images
    assert grey.get_cmap().name == "gray" and heat.get_cmap().name == MAP_CMAP
    assert heat.get_clim() == (0.0, pytest.approx(map_scale(attribution)))
    assert len(fig.axes) == 2  # the map and its colour bar
    plt.close(fig)


def test_an_all_zero_map_is_labelled_not_scaled():
    fig, ax = plt.subplots()
    show_map(ax, torch.zeros(8, 8), np.zeros((8, 8, 3)))
    assert [text.get_text() for text in ax.texts] == ["all zero"]
    assert len(ax.images) == 1 and len(fig.axes) == 1  # the image only, no colour bar
    plt.close(fig)


def test_comparison_grid_rows_columns_legend_and_caption():
    images = [np.random.default_rng(0).random((16, 16, 3)) for _ in range(2)]
    maps = {"GMAR": torch.rand(2, 16, 16), "IG": torch.zeros(2, 16, 16)}
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    fig = comparison_grid(images, maps, row_titles=["a", "b"], masks=masks, title="T", caption="device: cpu")
    cells = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(cells) == 6 and len(fig.axes) == 8  # 2 x (image + 2 maps), a colour bar per non-zero map
    assert [ax.get_title() for ax in cells[:3]] == ["a", "GMAR", "IG"]
    assert fig.legends[0].get_texts()[0].get_text() == "explained item (ground-truth mask)"
    assert fig._suptitle.get_text() == "T"
    assert any("device: cpu" in text.get_text() for text in fig.texts)
    plt.close(fig)


DOLLARS = ["$\\bad$.png", "cost $5 and $6"]  # mathtext would fail on the first and drop the second's dollars


def drawn_strings(fig: matplotlib.figure.Figure) -> list[str]:
    """The strings of the figure's texts as drawn: SVG with its text as ``<text>``
    elements (mathtext would be drawn glyph by glyph, or not at all)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    return [re.sub("&amp;", "&", text) for text in re.findall(r"<text[^>]*>([^<]*)</text>", buffer.getvalue())]


def test_titles_and_captions_are_drawn_as_given():
    """File names and class names with ``$`` are drawn as they are, not as mathtext."""
    images = [np.full((16, 16, 3), 0.5)] * 2
    fig = comparison_grid(images, {DOLLARS[1]: torch.rand(2, 16, 16)}, row_titles=DOLLARS, title=DOLLARS[0], caption=DOLLARS[1])
    fig.savefig(io.BytesIO(), format="png")
    drawn = drawn_strings(fig)
    assert drawn.count(DOLLARS[0]) == 2  # the title and a row title
    assert drawn.count(DOLLARS[1]) == 3  # a row title, the column title and the caption's line
    plt.close(fig)
    fig, ax = plt.subplots()
    show_map(ax, torch.zeros(8, 8), title=DOLLARS[0])
    head_weight_heatmap(torch.rand(2, 3), ax=fig.add_subplot(2, 1, 2), title=DOLLARS[1])
    fig.savefig(io.BytesIO(), format="png")
    assert {"all zero", *DOLLARS} <= set(drawn_strings(fig))
    plt.close(fig)


def test_titles_are_not_typeset_by_latex_where_usetex_is_set():
    """Under ``text.usetex`` a ``$``, ``\\`` or ``_`` of a file name is LaTeX markup."""
    with matplotlib.rc_context({"text.usetex": True}):
        fig = comparison_grid([np.full((16, 16, 3), 0.5)], {"GMAR": torch.rand(1, 16, 16)}, row_titles=DOLLARS[:1], title=DOLLARS[1])
    titles = [text for text in fig.findobj(matplotlib.text.Text) if text.get_text() in DOLLARS]
    assert len(titles) == 2 and not any(text.get_usetex() or text.get_parse_math() for text in titles)
    plt.close(fig)


def test_head_weight_heatmap_shows_layers_by_heads():
    weights = torch.softmax(torch.randn(6, 4), dim=-1)
    fig = head_weight_heatmap(weights)
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (6, 4)
    assert fig.axes[0].get_ylabel() == "layer"


def test_a_half_image_mask_is_outlined_all_round_not_only_at_the_divide():
    """The left and the right half of a two-photo composite: each outline is its own
    rectangle (both would otherwise be the one line down the middle)."""
    from captum_gmar.visualization import outline

    left = torch.zeros(16, 32, dtype=torch.bool)
    left[:, :16] = True
    boxes = []
    for mask in (left, ~left):
        fig, ax = plt.subplots()
        ax.imshow(np.zeros((16, 32)))
        outline(ax, mask)
        points = np.concatenate([path.vertices for path in ax.collections[-1].get_paths()])
        boxes.append((points[:, 0].min(), points[:, 0].max(), points[:, 1].min(), points[:, 1].max()))
        plt.close(fig)
    # pixel edges: the image spans -0.5 .. 31.5 across and -0.5 .. 15.5 down; the halves meet at 15.5
    assert boxes[0] == pytest.approx((-0.5, 15.5, -0.5, 15.5), abs=0.01)
    assert boxes[1] == pytest.approx((15.5, 31.5, -0.5, 15.5), abs=0.01)
