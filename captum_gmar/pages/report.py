"""A comparison's page (``compare``'s ``report.html``) and the items of its gallery."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from ..visualization import MAP_CMAP
from .images import colour, own_scale, thumbnail_uri
from .render import ExplanationPage, Markup, element, new_page_id, page_content, script_json


def summary_cell(entry: Mapping[str, Any], column: str) -> str:
    """One summary value as the tables show it: ``mean ± sem`` to 3 decimals, the time in
    milliseconds, the memory in whole MB."""
    if column == "seconds_per_image":
        return f"{entry[column] * 1000:.2f} ms"
    if column == "peak_memory_mb":
        return f"{entry[column]:.0f}"
    return f"{entry[column]:.3f} ± {entry[column + '_sem']:.3f}"


def gallery_card(
    image: np.ndarray,
    maps: Mapping[str, Tensor],
    title: str,
    item_class: str,
    metrics: Mapping[str, Mapping[str, float]],
    thumbnail: int = 96,
) -> dict[str, object]:
    """One item of a comparison's gallery, its image and maps already shrunk to
    thumbnails (PNG data URIs): a gallery of many items holds thumbnails only, never the
    full-size maps.

    Args:
        image: ``(H, W, 3)`` in ``[0, 1]``.
        maps: method name -> ``(H, W)`` non-negative map of the image, each coloured on
            its own scale at full size before it is shrunk.
        title: the caption (the item, the explained class and its score).
        item_class: the explained class's name, for the class filter.
        metrics: method name -> metric -> value, for the gallery's sort (non-finite
            values are left out).
        thumbnail: the thumbnails' longest side, px.
    """
    return {
        "title": title,
        "class": item_class,
        "image": thumbnail_uri((image * 255).round().astype(np.uint8), thumbnail),
        "maps": {name: thumbnail_uri(colour(own_scale(m), MAP_CMAP), thumbnail) for name, m in maps.items()},
        "metrics": {name: {k: v for k, v in values.items() if math.isfinite(v)} for name, values in metrics.items()},
    }


def comparison_report(
    summary: Sequence[Mapping[str, object]],
    columns: Mapping[str, str],
    header: Sequence[str],
    methods: Sequence[str],
    cards: Sequence[Mapping[str, object]],
    left_out: int = 0,
    title: str = "Comparison",
    left_out_where: str = "results.csv",
) -> ExplanationPage:
    """The page of a comparison (``compare``'s ``report.html``): its settings, the summary
    table sortable by any column, and a gallery of explained items, sortable by a
    method's metric and filterable by class.

    Args:
        summary: one entry per method (see :func:`~captum_gmar.evaluation.report.summarize`):
            ``"method"``, each metric's mean and ``<metric>_sem``; none for a gallery
            alone (a maps folder's page: no summary table).
        columns: the metrics shown, name -> description (the column header's tooltip).
        header: lines naming the model, the settings, the device and the command.
        methods: the methods' names, in the order the gallery shows their maps.
        cards: the gallery's items, each from :func:`gallery_card` with a map of every
            method.
        left_out: explained items not in the gallery (the page says so).
        title: the page's heading.
        left_out_where: the file that holds the items left out.
    """
    for card in cards:
        card_maps = card.get("maps")
        if not isinstance(card_maps, Mapping) or set(card_maps) != set(methods):
            found = list(card_maps) if isinstance(card_maps, Mapping) else type(card_maps).__name__
            raise ValueError(
                f"every gallery card needs a map of each method {list(methods)}, one has {found} (build cards with gallery_card)"
            )
    shown = [c for c in columns if any(c in entry for entry in summary)]
    note = (
        f"The gallery shows the first {len(cards)} explained items; {left_out} more were explained but are not shown (they are in {left_out_where})."
        if left_out
        else ""
    )
    data = {"methods": list(methods), "metrics": shown, "gallery": list(cards)}
    content = page_content(
        "report",
        new_page_id(),
        title=title,
        header=Markup("".join(element("li", line) for line in header)),
        table=_summary_table(summary, columns, shown) if summary else Markup(""),  # a gallery alone: no table
        note=note,
        metric_note=", under each its value of the metric sorted by" if shown else "",
        data=script_json(data),
    )
    return ExplanationPage(title, content)


def _summary_table(summary: Sequence[Mapping[str, object]], columns: Mapping[str, str], shown: Sequence[str]) -> Markup:
    """The summary: a row per method, a column per shown metric (mean ± standard error),
    each cell's value in ``data-value`` for the page's sort (empty where it is missing)."""
    head = [element("th", element("button", "method", type="button"), scope="col")]
    head += [element("th", element("button", c, type="button"), scope="col", title=columns[c]) for c in shown]
    rows = []
    for entry in summary:
        method = str(entry["method"])
        cells = [element("th", method, scope="row", data_value=method)]
        for c in shown:
            value = entry.get(c)
            cells.append(element("td", data_value="") if value is None else element("td", summary_cell(entry, c), data_value=repr(value)))
        rows.append(element("tr", *cells))
    caption = "Summary: mean ± standard error per method (click a column's header to sort by it; again to reverse)"
    return element(
        "table", element("caption", caption), element("thead", element("tr", *head)), element("tbody", *rows), class_="cg-summary"
    )
