"""Figures: maps over images with Captum's ``visualize_image_attr``, and head weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from captum.attr import visualization as captum_viz
from matplotlib.figure import Figure
from torch import Tensor


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


def show_map(
    ax: plt.Axes,
    attribution: Tensor,
    image: np.ndarray | None = None,
    title: str | None = None,
    mask: Tensor | None = None,
) -> None:
    """Draw one ``(H, W)`` map on ``ax`` with Captum's ``visualize_image_attr``.

    Blended over ``image`` (``(H, W, C)`` in ``[0, 1]``) when given, else a heat map. The
    map is treated as non-negative (``sign="positive"``); ``mask`` ``(H, W)`` is outlined.
    """
    attr = attribution.detach().float().cpu().clamp_min(0).unsqueeze(-1).numpy()
    if attr.any():
        captum_viz.visualize_image_attr(
            attr,
            image,
            method="blended_heat_map" if image is not None else "heat_map",
            sign="positive",
            plt_fig_axis=(ax.figure, ax),
            use_pyplot=False,
            alpha_overlay=0.6,
        )
    else:  # Captum cannot scale an all-zero map; say so instead of drawing noise
        ax.imshow(image if image is not None else np.zeros(attr.shape[:2]), cmap="gray")
        ax.text(0.5, 0.5, "all zero", transform=ax.transAxes, ha="center", va="center", color="red", fontsize=8)
    if mask is not None:
        ax.contour(mask.cpu().numpy().astype(float), levels=[0.5], colors="white", linewidths=0.8)
    if title:
        ax.set_title(title, fontsize=8)


def comparison_grid(
    images: Sequence[np.ndarray],
    maps: Mapping[str, Tensor],
    row_titles: Sequence[str] | None = None,
    masks: Tensor | None = None,
    cell_size: float = 1.6,
) -> Figure:
    """One row per image: the image, then each method's map over it.

    Args:
        images: ``N`` display images ``(H, W, C)`` in ``[0, 1]``.
        maps: method name -> ``(N, H, W)`` maps, in column order.
        row_titles: ``N`` labels for the image column (e.g. the explained class).
        masks: optional ``(N, H, W)`` bool masks of the explained item, outlined.
    """
    rows, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(cell_size * cols, cell_size * rows), squeeze=False)
    for i, image in enumerate(images):
        axes[i, 0].imshow(image)
        axes[i, 0].set_title(row_titles[i] if row_titles else "image", fontsize=8)
        for j, (name, method_maps) in enumerate(maps.items(), start=1):
            show_map(axes[i, j], method_maps[i], image, name if i == 0 else None, None if masks is None else masks[i])
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def head_weight_heatmap(head_weights: Tensor, ax: plt.Axes | None = None, title: str = "GMAR head weights") -> Figure:
    """Heat map of one example's head weights ``(L, H)``: layers down, heads across."""
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
    return ax.figure
