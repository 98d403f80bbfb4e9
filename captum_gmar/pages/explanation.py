"""One image's explanations as a page (``captum-gmar explain --out page.html``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..visualization import MAP_CMAP, map_scale
from .images import colour, heat, hex_colours, png_data_uri, shrink
from .render import ExplanationPage, Markup, element, new_page_id, page_content, script_json

#: colour map of the head-weight tables (as :func:`~captum_gmar.visualization.head_weight_heatmap`)
HEAD_CMAP = "viridis"


def _head_table(weights: Tensor) -> dict:
    """One example's head weights ``(L, H)`` as values and cell colours (0 to their maximum)."""
    values = weights.detach().float().cpu().numpy()
    top = float(values.max()) or 1.0
    return {"values": np.round(values, 4).tolist(), "colours": hex_colours(values / top, HEAD_CMAP), "max": top}


def explanation_page(
    image: np.ndarray,
    maps: Mapping[str, Tensor],
    targets: Sequence[str],
    head_weights: Mapping[str, Tensor] | None = None,
    scores: Sequence[tuple[str, float]] = (),
    score_name: str = "p",
    title: str = "Explanation",
    caption: str = "",
    max_side: int = 640,
) -> ExplanationPage:
    """An interactive page of one image's explanations.

    Args:
        image: the image as the model saw it, ``(H, W, 3)`` in ``[0, 1]`` (e.g. from
            :func:`~captum_gmar.visualization.to_display_image`).
        maps: method name -> ``(T, H, W)`` non-negative maps, one per explained target.
        targets: ``T`` names of the explained targets (classes, prompts or references).
        head_weights: method name -> ``(T, L, H)`` head weights (GMAR's
            ``return_head_weights=True``), shown as a layers-by-heads table.
        scores: the model's top ``(name, score)`` pairs, listed on the page.
        score_name: what the scores are (``"p"``: probabilities, ``"cos"``: similarities).
        title: the page's heading.
        caption: a line under the heading (e.g. model, device, timings).
        max_side: the image and the maps are embedded at most this many pixels on their
            longer side (averaged down; the colour scales are the full maps'), so that a
            large image explained at its own resolution still makes a page of a few MB.

    Returns:
        an :class:`ExplanationPage`.
    """
    head_weights = head_weights or {}
    if not maps:
        raise ValueError("explanation_page needs at least one method's maps")
    height, width = image.shape[:2]
    for name, method_maps in maps.items():
        if tuple(method_maps.shape) != (len(targets), height, width):
            raise ValueError(
                f"maps of {name!r} are {tuple(method_maps.shape)}, expected ({len(targets)}, {height}, {width}): one per target, the image's size"
            )
    factor = min(1.0, max_side / max(height, width))
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    image = shrink(torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1), size).permute(1, 2, 0).numpy()
    grey = (image.mean(-1) * 255).round().astype(np.uint8)
    methods = []
    for name, method_maps in maps.items():
        full = method_maps.detach().float().cpu()
        own = [map_scale(m) for m in full]
        shared = max(own)
        arrays = shrink(full, size)
        methods.append(
            {
                "name": name,
                "maps": [
                    {"own": {"src": heat(m.numpy(), s), "scale": s}, "shared": {"src": heat(m.numpy(), shared), "scale": shared}}
                    for m, s in zip(arrays, own)
                ],
                "heads": [_head_table(w) for w in head_weights[name]] if name in head_weights else None,
            }
        )
    data = {
        "targets": list(targets),
        "methods": methods,
        "colourbar": png_data_uri(np.repeat(colour(np.linspace(0, 1, 256), MAP_CMAP)[None], 12, axis=0)),
    }
    content = page_content(
        "explanation",
        new_page_id(),
        title=title,
        caption=caption,
        image=png_data_uri((image * 255).round().astype(np.uint8)),
        grey=png_data_uri(grey),
        top=_top_scores(scores, score_name),
        data=script_json(data),
    )
    return ExplanationPage(title, content)


def _top_scores(scores: Sequence[tuple[str, float]], score_name: str) -> Markup:
    """The table of the model's top scores (nothing where there are none)."""
    if not scores:
        return Markup()
    head = element("tr", element("th", "name", scope="col"), element("th", score_name, scope="col"))
    rows = [element("tr", element("td", label), element("td", f"{score:.3f}")) for label, score in scores]
    return element("table", element("caption", "Model's top scores"), element("thead", head), element("tbody", *rows), class_="cg-top")
