"""Figures: maps over images, method against method, and head weights.

Maps are drawn as a perceptually uniform heat map (``inferno``: dark is no relevance,
bright is the most) over a greyscale copy of the image, each on its own scale (0 to its
99th percentile, so that a few extreme pixels, common in gradient maps, do not wash the
rest out) with its own colour bar. Captum's ``visualize_image_attr`` takes the same
maps (see the docs); these figures draw with matplotlib directly to get the colour bars,
the mask outline and its legend.

Text is drawn as given: titles and captions hold file names, class names and model paths,
in which a ``$`` is a character, not the start of matplotlib's mathtext (``cost $5 and $6``
would lose its dollars, ``$\\bad$.png`` would fail to draw).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, overload

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from torch import Tensor

#: heat map of the maps: perceptually uniform, readable in greyscale print
MAP_CMAP = "inferno"
#: the upper end of each map's colour scale, as a percentile of its values
SCALE_PERCENTILE = 99.0
#: outline of the explained item's mask
MASK_STYLE: dict[str, Any] = {"colors": "#00e5ff", "linewidths": 1.0}
#: characters of 7 pt text per inch, and the height of one of its lines, to wrap and place captions
_CHARS_PER_INCH, _LINE_INCHES = 17, 0.13
_MASK_LABEL = "explained item (ground-truth mask)"
#: each colour bar's label: its values are the map's own, in the method's units
BAR_LABEL = "relevance"
#: what the colour bars show, under every grid
BARS_FOOTER = (
    "colour bars: each map's relevance in its method's own units, from 0 to the map's 99th percentile "
    "(its maximum where that is 0; higher values take the top colour); the scales differ between maps and methods. "
    "Maps are drawn over the image in grey."
)


def _as_given(artist: Artist) -> None:
    """Draw every text of ``artist`` (a figure or an axes) as its characters: no mathtext,
    and no LaTeX where ``text.usetex`` is set, for which a ``$``, ``\\`` or ``_`` of a
    file name is markup."""
    for text in artist.findobj(Text):
        text.set_parse_math(False)
        text.set_usetex(False)


def to_display_image(pixel_values: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> np.ndarray:
    """Turn one normalised image ``(C, H, W)`` into an ``(H, W, C)`` array in ``[0, 1]``.

    With ``mean`` and ``std`` (the image processor's) the normalisation is undone;
    without them the image is min-max scaled.
    """
    image = pixel_values.detach().float().cpu()
    if mean is not None and std is not None:
        image = image * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    else:
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


def map_scale(attribution: Tensor) -> float:
    """Upper end of a map's colour scale: its :data:`SCALE_PERCENTILE` th percentile, or its
    maximum where that percentile is 0 (sparse maps); 0 only for an all-zero map."""
    values = attribution.detach().float().cpu().clamp_min(0).flatten()
    scale = float(torch.quantile(values, SCALE_PERCENTILE / 100))
    return scale if scale > 0 else float(values.max())


def show_map(
    ax: plt.Axes,
    attribution: Tensor,
    image: np.ndarray | None = None,
    title: str | None = None,
    mask: Tensor | None = None,
    colorbar: bool = True,
) -> None:
    """Draw one ``(H, W)`` non-negative map on ``ax``.

    Over a greyscale ``image`` (``(H, W, C)`` in ``[0, 1]``) when given, on the map's own
    scale (see :func:`map_scale`) with a colour bar; ``mask`` ``(H, W)`` is outlined. An
    all-zero map (e.g. GMAR with ``alpha=1``) is drawn as such and labelled.
    """
    attr = attribution.detach().float().cpu().clamp_min(0).numpy()
    if image is not None:
        ax.imshow(image.mean(-1), cmap="gray", vmin=0, vmax=1)
    scale = map_scale(attribution)
    if scale > 0:
        heat = ax.imshow(attr, cmap=MAP_CMAP, vmin=0, vmax=scale, alpha=0.7 if image is not None else 1.0)
        if colorbar:
            bar = ax.figure.colorbar(heat, ax=ax, fraction=0.046, pad=0.02, ticks=[0, scale])
            bar.ax.set_yticklabels(["0", f"{scale:.2g}"], fontsize=6)
            bar.set_label(BAR_LABEL, fontsize=6, labelpad=-4)
    else:
        ax.text(0.5, 0.5, "all zero", transform=ax.transAxes, ha="center", va="center", color="red", fontsize=8)
    if mask is not None and mask.any():
        outline(ax, mask)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    _as_given(ax)


def outline(ax: plt.Axes, mask: Tensor) -> None:
    """Outline the ``(H, W)`` bool ``mask`` on ``ax`` all round, along the image's edges too:
    a mask that fills the left half of an image is a rectangle, not only the middle line
    (which the right half's outline would share)."""
    height, width = mask.shape
    padded = np.pad(mask.cpu().numpy().astype(float), 1)  # zero beyond the edges: the contour closes there
    # pixel centres at 0 .. W-1 as imshow draws them: the padding's at -1 and W, so the
    # edge contour runs along the image's border, half a pixel out from the outer centres
    lines = ax.contour(np.arange(-1, width + 1), np.arange(-1, height + 1), padded, levels=[0.5], **MASK_STYLE)
    lines.set_clip_on(False)  # the line on the border is drawn whole, over the axes' frame


def comparison_grid(
    images: Sequence[np.ndarray],
    maps: Mapping[str, Tensor],
    row_titles: Sequence[str] | None = None,
    masks: Tensor | None = None,
    cell_size: float = 1.9,
    title: str | None = None,
    caption: str | None = None,
    column_notes: Mapping[str, str] | None = None,
    mask_label: str | None = None,
) -> Figure:
    """One row per image: the image, then each method's map over it.

    Args:
        images: ``N`` display images ``(H, W, C)`` in ``[0, 1]``.
        maps: method name -> ``(N, H, W)`` maps, in column order.
        row_titles: ``N`` labels for the image column (e.g. the explained class).
        masks: optional ``(N, H, W)`` bool masks of the explained item, outlined (and
            named in a legend).
        title: figure title.
        caption: text under the grid (e.g. device and timings), wrapped to the figure's width.
        column_notes: method name -> a line under its column's title, wrapped likewise.
        mask_label: what the masks outline, in the legend (default: the explained item's ground-truth mask).
    """
    rows, cols = len(images), 1 + len(maps)
    width = cell_size * cols + 0.3 * len(maps)
    footer = "\n".join(textwrap.fill(text, int(width * _CHARS_PER_INCH)) for text in filter(None, [caption, BARS_FOOTER]))
    notes = {name: textwrap.fill(note, int(cell_size * _CHARS_PER_INCH * 0.8)) for name, note in (column_notes or {}).items()}
    header = max((note.count("\n") + 1 for note in notes.values()), default=0)  # lines under the column titles
    height = cell_size * rows + 0.7 + _LINE_INCHES * (footer.count("\n") + 1 + header)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    for i, image in enumerate(images):
        axes[i, 0].imshow(image)
        axes[i, 0].set_title(row_titles[i] if row_titles else "image", fontsize=8)
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        for j, (name, method_maps) in enumerate(maps.items(), start=1):
            heading = "\n".join(filter(None, [name, notes.get(name)])) if i == 0 else None
            show_map(axes[i, j], method_maps[i], image, heading, None if masks is None else masks[i])
    if title:
        fig.suptitle(title, fontsize=10)
    handles = (
        [Line2D([], [], color=MASK_STYLE["colors"], lw=MASK_STYLE["linewidths"], label=mask_label or _MASK_LABEL)]
        if masks is not None
        else []
    )
    fig.text(0.5, 0.01, footer, ha="center", va="bottom", fontsize=7)
    if handles:
        fig.legend(handles=handles, loc="upper right", fontsize=7, frameon=False)
    _as_given(fig)  # before tight_layout, which measures the texts as drawn
    bottom = (0.1 + _LINE_INCHES * (footer.count("\n") + 1)) / height
    fig.tight_layout(rect=(0, bottom, 1, 1 - 0.45 / height if title or handles else 1))
    return fig


@overload
def head_weight_heatmap(head_weights: Tensor, ax: None = None, title: str = ...) -> Figure: ...
@overload
def head_weight_heatmap(head_weights: Tensor, ax: plt.Axes, title: str = ...) -> Figure | SubFigure: ...


def head_weight_heatmap(head_weights: Tensor, ax: plt.Axes | None = None, title: str = "GMAR head weights") -> Figure | SubFigure:
    """Heat map of one example's head weights ``(L, H)``: layers down, heads across; returns
    the figure holding it (a new one when ``ax`` is ``None``)."""
    weights = head_weights.detach().float().cpu().numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * weights.shape[1] + 1.5, 0.35 * weights.shape[0] + 1.2))
    image = ax.imshow(weights, cmap="viridis", vmin=0, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(weights.shape[1]))
    ax.set_yticks(range(weights.shape[0]))
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.05)
    _as_given(ax)
    return ax.figure


def head_grids(grids: dict[str, Tensor], title: str = "") -> Figure:
    """One ``(L, H)`` grid per name side by side (layers down, heads across), each on a
    colour scale centred at 0 (blue below, red above) of its own, the largest head
    outlined: the effect of ablating each head beside each head score."""
    fig, axes = plt.subplots(
        1, len(grids), figsize=(2.4 * len(grids) + 0.6, 0.3 * next(iter(grids.values())).shape[0] + 1.9), squeeze=False
    )
    for ax, (name, grid) in zip(axes[0], grids.items()):
        values = grid.detach().float().cpu().numpy()
        finite = values[np.isfinite(values)]
        bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
        image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
        if finite.size:
            row, column = np.unravel_index(np.nanargmax(values), values.shape)
            ax.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("head", fontsize=8)
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(values.shape[0]))
        ax.tick_params(labelsize=6)
        fig.colorbar(image, ax=ax, fraction=0.06)
    axes[0][0].set_ylabel("layer", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _as_given(fig)
    fig.tight_layout()
    return fig
