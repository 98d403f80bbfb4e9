"""Self-contained interactive HTML pages: one image's explanations
(:func:`explanation_page`, ``captum-gmar explain --out page.html``) and a comparison's
report (:func:`comparison_report`, ``compare``'s ``report.html``).

A page is one file that needs no network: images are PNG data URIs, the script and the
style are inline, the data (scores, colour scales, head weights) is JSON in a
``<script type="application/json">``. Controls are native, keyboard-operable ``<select>``
and ``<input type="range">`` elements with ``<label>``s. The maps are drawn as in
:mod:`captum_gmar.visualization` (``inferno`` over a greyscale copy of the image, 0 to the
99th percentile), here on each map's own scale or on one scale shared by a method's maps.

Example::

    page = explanation_page(image, {"GMAR (L1)": maps}, ["cat (p 0.91)"], head_weights={"GMAR (L1)": weights})
    page.save("page.html")
    page  # shown inline in Jupyter
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor

from .evaluation.report import summary_cell
from .visualization import MAP_CMAP, map_scale

__all__ = ["ExplanationPage", "comparison_report", "explanation_page", "gallery_card"]

#: colour map of the head-weight tables (as :func:`~captum_gmar.visualization.head_weight_heatmap`)
HEAD_CMAP = "viridis"


@dataclass(frozen=True)
class ExplanationPage:
    """One self-contained HTML page; ``save`` writes it, Jupyter shows it inline."""

    #: the page's heading and the document's title
    title: str
    #: the page's content: its style, elements, data and script, all inline
    body: str

    @property
    def html(self) -> str:
        """The whole HTML document."""
        return _fill(_DOCUMENT, {"TITLE": html.escape(self.title), "BODY": self.body})

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (UTF-8), making its missing folders; returns the path.
        The page replaces the file at once: a symbolic link there is replaced, not written through."""
        from .evaluation.files import write_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.html)
        return path

    def _repr_html_(self) -> str:
        return self.body  # a notebook's output is part of a page: no document of its own


def png_data_uri(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of ``pixels``: ``(H, W)`` or ``(H, W, 3|4)`` uint8."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def script_json(data: object) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&``
    as ``\\u`` escapes, so that no name (a label ``<!--<script>``, a file ``</script>.png``)
    can end the element or switch the HTML parser into another state; U+2028 and U+2029,
    line breaks in older JavaScript, escaped too (``ensure_ascii`` does that)."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _colour(values: np.ndarray, cmap: str) -> np.ndarray:
    """``values`` in ``[0, 1]`` (any shape) as uint8 RGB ``(..., 3)`` of the colour map."""
    return (colormaps[cmap](np.clip(values, 0, 1))[..., :3] * 255).round().astype(np.uint8)


def _hex(values: np.ndarray, cmap: str) -> list:
    """``values`` in ``[0, 1]`` as nested lists of ``#rrggbb`` strings of the colour map."""
    rgb = _colour(values, cmap)
    return np.apply_along_axis(lambda c: "#" + bytes(c.tolist()).hex(), -1, rgb).tolist()


def _heat(attribution: np.ndarray, scale: float) -> str:
    """One ``(H, W)`` map on ``[0, scale]`` as a PNG data URI (black where the scale is 0)."""
    normalised = np.clip(attribution, 0, None) / scale if scale > 0 else np.zeros_like(attribution)
    return png_data_uri(_colour(normalised, MAP_CMAP))


def _head_table(weights: Tensor) -> dict:
    """One example's head weights ``(L, H)`` as values and cell colours (0 to their maximum)."""
    values = weights.detach().float().cpu().numpy()
    top = float(values.max()) or 1.0
    return {"values": np.round(values, 4).tolist(), "colours": _hex(values / top, HEAD_CMAP), "max": top}


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
    image = _shrink(torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1), size).permute(1, 2, 0).numpy()
    grey = (image.mean(-1) * 255).round().astype(np.uint8)
    methods = []
    for name, method_maps in maps.items():
        full = method_maps.detach().float().cpu()
        own = [map_scale(m) for m in full]
        shared = max(own)
        arrays = _shrink(full, size)
        methods.append(
            {
                "name": name,
                "maps": [
                    {"own": {"src": _heat(m.numpy(), s), "scale": s}, "shared": {"src": _heat(m.numpy(), shared), "scale": shared}}
                    for m, s in zip(arrays, own)
                ],
                "heads": [_head_table(w) for w in head_weights[name]] if name in head_weights else None,
            }
        )
    data = {
        "targets": list(targets),
        "methods": methods,
        "colourbar": png_data_uri(np.repeat(_colour(np.linspace(0, 1, 256), MAP_CMAP)[None], 12, axis=0)),
    }
    page_id = _page_id()
    top = "".join(f"<tr><td>{html.escape(label)}</td><td>{score:.3f}</td></tr>" for label, score in scores)
    top_table = (
        f'<table class="cg-top"><caption>Model\'s top scores</caption><thead><tr><th scope="col">name</th>'
        f'<th scope="col">{html.escape(score_name)}</th></tr></thead><tbody>{top}</tbody></table>'
        if scores
        else ""
    )
    return ExplanationPage(
        title,
        _fill(
            _BODY,
            {
                "ID": page_id,
                "TITLE": html.escape(title),
                "CAPTION": html.escape(caption),
                "IMAGE": png_data_uri((image * 255).round().astype(np.uint8)),
                "GREY": png_data_uri(grey),
                "TOP": top_table,
                "DATA": script_json(data),
            },
        ),
    )


def _shrink(values: Tensor, size: tuple[int, int]) -> Tensor:
    """``values`` ``(N, H, W)`` averaged down to ``(N, *size)`` (as they are where that is their size)."""
    if tuple(values.shape[-2:]) == size:
        return values
    return torch.nn.functional.interpolate(values[None], size=size, mode="area")[0]


def _fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{{NAME}}`` replaced by ``values[NAME]``, in one pass (a value
    holding ``{{...}}`` stays as it is)."""
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda match: values[match.group(1)], template)


def _page_id() -> str:
    """A fresh id for the page's elements, so that two pages can share a notebook."""
    return "cg" + uuid.uuid4().hex[:8]


_DOCUMENT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{TITLE}}</title>
</head>
<body>
{{BODY}}
</body>
</html>
"""

_BODY = """<style>
#{{ID}} { font-family: system-ui, sans-serif; color: #222; max-width: 60rem; }
#{{ID}} .cg-row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
#{{ID}} figure { margin: 0; }
#{{ID}} .cg-stack { position: relative; width: 320px; height: auto; }
#{{ID}} .cg-stack img { width: 320px; image-rendering: pixelated; display: block; }
#{{ID}} .cg-stack img.cg-overlay { position: absolute; left: 0; top: 0; }
#{{ID}} .cg-image { width: 320px; display: block; }
#{{ID}} .cg-controls { max-width: 40rem; display: grid; grid-template-columns: max-content auto; gap: 0.4rem 0.8rem; align-items: center; margin: 1rem 0; }
#{{ID}} .cg-bar { display: flex; align-items: center; gap: 0.4rem; font-size: 0.85rem; margin-top: 0.3rem; }
#{{ID}} .cg-bar img { width: 240px; height: 12px; }
#{{ID}} table { border-collapse: collapse; font-size: 0.85rem; }
#{{ID}} th, #{{ID}} td { border: 1px solid #ccc; padding: 0.15rem 0.4rem; text-align: right; }
#{{ID}} caption { text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
#{{ID}} .cg-heads td { min-width: 2.6rem; }
#{{ID}} h2 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
#{{ID}} .cg-caption { font-size: 0.85rem; color: #555; }
</style>
<main id="{{ID}}">
<h1>{{TITLE}}</h1>
<p class="cg-caption">{{CAPTION}}</p>
<div class="cg-controls">
  <label for="{{ID}}-method">Method</label><select id="{{ID}}-method"></select>
  <label for="{{ID}}-target">Explained</label><select id="{{ID}}-target"></select>
  <label for="{{ID}}-opacity">Map opacity</label><input type="range" id="{{ID}}-opacity" min="0" max="100" value="70">
  <label for="{{ID}}-scale">Colour scale</label>
  <select id="{{ID}}-scale"><option value="own">each map its own (0 to its 99th percentile)</option><option value="shared">shared by the method's maps</option></select>
</div>
<div class="cg-row">
  <figure><img class="cg-image" src="{{IMAGE}}" alt="the image as the model saw it"><figcaption>image</figcaption></figure>
  <figure>
    <div class="cg-stack">
      <img src="{{GREY}}" alt="the image in grey, under the map">
      <img class="cg-overlay" id="{{ID}}-map" alt="">
    </div>
    <figcaption id="{{ID}}-mapcaption"></figcaption>
    <div class="cg-bar"><span>0</span><img src="" id="{{ID}}-bar" alt="colour bar of the map: dark is no relevance, bright the most"><span id="{{ID}}-max"></span></div>
  </figure>
  {{TOP}}
</div>
<div id="{{ID}}-heads"></div>
<script type="application/json" id="{{ID}}-data">{{DATA}}</script>
<script>
(function () {
  var id = "{{ID}}";
  var data = JSON.parse(document.getElementById(id + "-data").textContent);
  function el(name) { return document.getElementById(id + "-" + name); }
  var method = el("method"), target = el("target"), opacity = el("opacity"), scale = el("scale");
  data.methods.forEach(function (m, i) { method.add(new Option(m.name, i)); });
  data.targets.forEach(function (t, i) { target.add(new Option(t, i)); });
  el("bar").src = data.colourbar;
  function fmt(v) { return v === 0 ? "0" : Number(v.toPrecision(2)).toString(); }
  function heads(m, t) {
    var box = el("heads");
    box.textContent = "";
    if (!m.heads) { return; }
    var h = m.heads[t], table = document.createElement("table");
    table.className = "cg-heads";
    var heading = document.createElement("h2");
    heading.id = id + "-headstitle";
    heading.textContent = m.name + " head weights for " + data.targets[t] + " (layers down, heads across; each layer sums to 1)";
    table.setAttribute("aria-labelledby", heading.id);
    box.appendChild(heading);
    var head = table.createTHead().insertRow();
    var corner = document.createElement("th"); corner.textContent = "layer \\\\ head"; head.appendChild(corner);
    h.values[0].forEach(function (_, j) { var th = document.createElement("th"); th.scope = "col"; th.textContent = j; head.appendChild(th); });
    var body = table.createTBody();
    h.values.forEach(function (row, l) {
      var tr = body.insertRow(), th = document.createElement("th");
      th.scope = "row"; th.textContent = l; tr.appendChild(th);
      row.forEach(function (v, j) {
        var td = tr.insertCell();
        td.textContent = v.toFixed(2);
        td.style.background = h.colours[l][j];
        td.style.color = v / h.max > 0.6 ? "#000" : "#fff";
      });
    });
    box.appendChild(table);
  }
  function show() {
    var m = data.methods[method.value], t = Number(target.value), shown = m.maps[t][scale.value];
    var overlay = el("map");
    overlay.src = shown.src;
    overlay.style.opacity = opacity.value / 100;
    overlay.alt = m.name + " map of " + data.targets[t] + ", opacity " + opacity.value + "%";
    el("mapcaption").textContent = m.name + ": " + data.targets[t];
    el("max").textContent = shown.scale > 0 ? fmt(shown.scale) : "0 (all zero)";
    heads(m, t);
  }
  [method, target, scale].forEach(function (c) { c.addEventListener("change", show); });
  opacity.addEventListener("input", show);
  show();
})();
</script>
</main>
"""


def _thumbnail(pixels: np.ndarray, side: int) -> str:
    """``pixels`` (uint8 ``(H, W)`` or ``(H, W, 3)``) shrunk to at most ``side`` px, as a PNG data URI."""
    picture = Image.fromarray(pixels)
    picture.thumbnail((side, side))
    return png_data_uri(np.asarray(picture))


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
        "image": _thumbnail((image * 255).round().astype(np.uint8), thumbnail),
        "maps": {name: _thumbnail(_colour(_normalised(m), MAP_CMAP), thumbnail) for name, m in maps.items()},
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
) -> ExplanationPage:
    """The page of a comparison (``compare``'s ``report.html``): its settings, the summary
    table sortable by any column, and a gallery of explained items, sortable by a
    method's metric and filterable by class.

    Args:
        summary: one entry per method (see :func:`~captum_gmar.evaluation.report.summarize`):
            ``"method"``, each metric's mean and ``<metric>_sem``.
        columns: the metrics shown, name -> description (the column header's tooltip).
        header: lines naming the model, the settings, the device and the command.
        methods: the methods' names, in the order the gallery shows their maps.
        cards: the gallery's items, each from :func:`gallery_card` with a map of every
            method.
        left_out: explained items not in the gallery (the page says so).
        title: the page's heading.
    """
    for card in cards:
        card_maps = card.get("maps")
        if not isinstance(card_maps, Mapping) or set(card_maps) != set(methods):
            found = list(card_maps) if isinstance(card_maps, Mapping) else type(card_maps).__name__
            raise ValueError(
                f"every gallery card needs a map of each method {list(methods)}, one has {found} (build cards with gallery_card)"
            )
    shown = [c for c in columns if any(c in entry for entry in summary)]
    head = "".join(f'<th scope="col" title="{html.escape(columns[c])}"><button type="button">{html.escape(c)}</button></th>' for c in shown)
    body = []
    for entry in summary:
        cells = [f'<th scope="row" data-value="{html.escape(str(entry["method"]))}">{html.escape(str(entry["method"]))}</th>']
        for c in shown:
            value = entry.get(c)
            if value is None:
                cells.append('<td data-value=""></td>')
                continue
            cells.append(f'<td data-value="{value!r}">{html.escape(summary_cell(entry, c))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = (
        '<table class="cg-summary"><caption>Summary: mean ± standard error per method '
        "(click a column's header to sort by it; again to reverse)</caption>"
        f'<thead><tr><th scope="col"><button type="button">method</button></th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )
    note = (
        f"The gallery shows the first {len(cards)} explained items; {left_out} more were explained but are not shown (their rows are in results.csv)."
        if left_out
        else ""
    )
    data = {"methods": list(methods), "metrics": shown, "gallery": list(cards)}
    return ExplanationPage(
        title,
        _fill(
            _REPORT,
            {
                "ID": _page_id(),
                "TITLE": html.escape(title),
                "HEADER": "".join(f"<li>{html.escape(line)}</li>" for line in header),
                "TABLE": table,
                "NOTE": html.escape(note),
                "DATA": script_json(data),
            },
        ),
    )


def _normalised(attribution: Tensor) -> np.ndarray:
    """One map on its own scale (0 to its 99th percentile, see :func:`~captum_gmar.visualization.map_scale`), in ``[0, 1]``."""
    scale = map_scale(attribution)
    values = attribution.detach().float().cpu().clamp_min(0).numpy()
    return np.clip(values / scale, 0, 1) if scale > 0 else np.zeros_like(values)


_REPORT = """<style>
#{{ID}} { font-family: system-ui, sans-serif; color: #222; }
#{{ID}} table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
#{{ID}} th, #{{ID}} td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
#{{ID}} caption { text-align: left; font-weight: 600; padding-bottom: 0.3rem; white-space: nowrap; }
#{{ID}} thead button { font: inherit; font-weight: 600; background: none; border: none; cursor: pointer; padding: 0; }
#{{ID}} th[aria-sort=ascending] button::after { content: " \\25B2"; }
#{{ID}} th[aria-sort=descending] button::after { content: " \\25BC"; }
#{{ID}} .cg-controls { display: flex; flex-wrap: wrap; gap: 0.4rem 1rem; align-items: center; margin: 0.8rem 0; }
#{{ID}} .cg-gallery { display: flex; flex-wrap: wrap; gap: 0.8rem; }
#{{ID}} .cg-card { border: 1px solid #ddd; padding: 0.3rem; font-size: 0.75rem; }
#{{ID}} .cg-card .cg-thumbs { display: flex; gap: 0.2rem; }
#{{ID}} .cg-card img { width: 96px; image-rendering: pixelated; display: block; }
#{{ID}} .cg-card figure { margin: 0; text-align: center; }
#{{ID}} .cg-header { font-size: 0.85rem; color: #444; }
</style>
<main id="{{ID}}">
<h1>{{TITLE}}</h1>
<ul class="cg-header">{{HEADER}}</ul>
{{TABLE}}
<h2>Explained items</h2>
<p>{{NOTE}} Each map on its own colour scale (inferno: dark is no relevance, bright the most, up to the map's 99th percentile), under each its value of the metric sorted by.</p>
<div class="cg-controls">
  <label for="{{ID}}-sort">Sort by</label><select id="{{ID}}-sort"></select>
  <label for="{{ID}}-order">Order</label>
  <select id="{{ID}}-order"><option value="1">ascending</option><option value="-1">descending</option></select>
  <label for="{{ID}}-class">Class</label><select id="{{ID}}-class"></select>
  <span id="{{ID}}-count" role="status"></span>
</div>
<div class="cg-gallery" id="{{ID}}-gallery"></div>
<script type="application/json" id="{{ID}}-data">{{DATA}}</script>
<script>
(function () {
  var id = "{{ID}}";
  var root = document.getElementById(id);
  var data = JSON.parse(document.getElementById(id + "-data").textContent);
  function el(name) { return document.getElementById(id + "-" + name); }
  // the summary: a click on a header sorts the rows by that column (numbers as numbers, empty cells last)
  var table = root.querySelector("table.cg-summary");
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
    th.querySelector("button").addEventListener("click", function () {
      var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-value"), y = b.cells[column].getAttribute("data-value");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var p = parseFloat(x), q = parseFloat(y);
        return direction * (isNaN(p) || isNaN(q) ? x.localeCompare(y) : p - q);
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
  // the gallery
  var sort = el("sort"), order = el("order"), filter = el("class");
  sort.add(new Option("item (as explained)", ""));
  data.methods.forEach(function (m) { data.metrics.forEach(function (k) { sort.add(new Option(m + ": " + k, JSON.stringify([m, k]))); }); });
  filter.add(new Option("all", ""));
  data.gallery.map(function (g) { return g["class"]; }).filter(function (c, i, all) { return all.indexOf(c) === i; }).sort()
    .forEach(function (c) { filter.add(new Option(c, c)); });
  var cards = data.gallery.map(function (g, i) {
    var card = document.createElement("div");
    card.className = "cg-card";
    var heading = document.createElement("div");
    heading.textContent = g.title;
    card.appendChild(heading);
    var thumbs = document.createElement("div");
    thumbs.className = "cg-thumbs";
    function add(src, caption, alt) {
      var figure = document.createElement("figure"), img = document.createElement("img"), text = document.createElement("figcaption");
      img.src = src; img.alt = alt; text.textContent = caption;
      figure.appendChild(img); figure.appendChild(text); thumbs.appendChild(figure);
      return text;
    }
    add(g.image, "image", g.title);
    var values = data.methods.map(function (m) { return add(g.maps[m], m, m + " map of " + g.title); });
    card.appendChild(thumbs);
    return { card: card, item: g, index: i, values: values };
  });
  function value(c, key) { var v = (c.item.metrics[key[0]] || {})[key[1]]; return v === undefined ? null : v; }
  function show() {
    var key = sort.value ? JSON.parse(sort.value) : null, direction = Number(order.value), box = el("gallery");
    var shown = cards.filter(function (c) { return !filter.value || c.item["class"] === filter.value; });
    shown.sort(function (a, b) {
      if (!key) { return direction * (a.index - b.index); }
      var x = value(a, key), y = value(b, key);
      if (x === null || y === null) { return (x === null) - (y === null); }
      return direction * (x - y);
    });
    box.textContent = "";
    shown.forEach(function (c) {
      data.methods.forEach(function (m, j) {
        var v = key ? (c.item.metrics[m] || {})[key[1]] : undefined;
        c.values[j].textContent = m + (v === undefined ? "" : ": " + Number(v.toPrecision(3)));
      });
      box.appendChild(c.card);
    });
    el("count").textContent = shown.length + " of " + cards.length + " items shown";
  }
  [sort, order, filter].forEach(function (c) { c.addEventListener("change", show); });
  show();
})();
</script>
</main>
"""
