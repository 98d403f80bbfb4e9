"""Self-contained interactive HTML pages: one image's explanations
(:func:`explanation_page`, ``captum-gmar explain --out page.html``) and a comparison's
report (:func:`comparison_report`, ``compare``'s ``report.html``).

A page is one file that needs no network: images are PNG data URIs, the script and the
style are inline, the data (scores, colour scales, head weights) is JSON in a
``<script type="application/json">``. Controls are native, keyboard-operable ``<select>``
and ``<input type="range">`` elements with ``<label>``s. The maps are drawn as in
:mod:`captum_gmar.visualization` (``inferno`` over a greyscale copy of the image, 0 to the
99th percentile), here on each map's own scale or on one scale shared by a method's maps.
The pages' HTML, CSS and JavaScript are template files of this package (``templates/``),
filled by :mod:`captum_gmar.pages.render`, which escapes every value.

Example::

    page = explanation_page(image, {"GMAR (L1)": maps}, ["cat (p 0.91)"], head_weights={"GMAR (L1)": weights})
    page.save("page.html")
    page  # shown inline in Jupyter
"""

from .explanation import HEAD_CMAP as HEAD_CMAP
from .explanation import explanation_page
from .images import png_data_uri as png_data_uri
from .render import ExplanationPage
from .render import script_json as script_json
from .report import comparison_report, gallery_card

__all__ = ["ExplanationPage", "comparison_report", "explanation_page", "gallery_card"]
