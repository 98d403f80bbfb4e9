"""Rendering the pages' templates (``templates/``, package data): named slots filled with
escaped values, and the page object that writes the result.

A slot is ``<!--slot:name-->`` in HTML and ``/*slot:name*/`` in CSS and JavaScript:
comments, so that each template stays valid in its own language and no brace, dollar or
backslash of the CSS or the script can be taken for one. A value is HTML-escaped unless
it is :class:`Markup`: markup built here (:func:`element`, a filled template) or JSON
from :func:`script_json`.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from ..files import write_atomic

__all__ = ["ExplanationPage", "Markup", "element", "fill", "new_page_id", "page_content", "script_json", "template"]

_SLOT = re.compile(r"<!--slot:(\w+)-->|/\*slot:(\w+)\*/")
#: a page's id: it names the page's elements and scopes its style, unescaped in HTML, CSS and JS
_PAGE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class Markup(str):
    """Text that is already safe where its slot is (HTML, or JSON in a script element):
    :func:`fill` and :func:`element` insert it as it is, where they escape any other str."""

    __slots__ = ()


def _safe(value: str) -> str:
    """``value`` as it is if it is :class:`Markup`, else HTML-escaped (quotes too: slots lie in attributes)."""
    if not isinstance(value, str):
        raise TypeError(f"a slot's value must be a str, got {type(value).__name__}")
    return value if isinstance(value, Markup) else html.escape(value)


@cache
def template(name: str) -> str:
    """The text of ``templates/<name>``, read from the installed package."""
    return (resources.files("captum_gmar.pages") / "templates" / name).read_text(encoding="utf-8")


def fill(text: str, values: Mapping[str, str]) -> Markup:
    """``text`` with each slot replaced by its value, in one pass: a value's own text is
    never read for slots. Raises ``ValueError`` naming the slots without a value and the
    values for no slot; ``TypeError`` for a value that is not a str."""
    names = {match.group(1) or match.group(2) for match in _SLOT.finditer(text)}
    if names != set(values):
        raise ValueError(f"slots without a value: {sorted(names - set(values))}, values for no slot: {sorted(set(values) - names)}")
    safe = {name: _safe(value) for name, value in values.items()}
    return Markup(_SLOT.sub(lambda match: safe[match.group(1) or match.group(2)], text))


def element(tag: str, *children: str, **attributes: str) -> Markup:
    """``<tag attributes>children</tag>``: each child and attribute value HTML-escaped
    unless it is :class:`Markup`. An attribute's ``_`` is written ``-`` and a trailing
    ``_`` dropped (``data_value`` is ``data-value``, ``class_`` is ``class``)."""
    written = "".join(f' {name.rstrip("_").replace("_", "-")}="{_safe(value)}"' for name, value in attributes.items())
    return Markup(f"<{tag}{written}>{''.join(_safe(child) for child in children)}</{tag}>")


def script_json(data: object) -> Markup:
    """``data`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&``
    as ``\\u`` escapes, so that no name (a label ``<!--<script>``, a file ``</script>.png``)
    can end the element or switch the HTML parser into another state; U+2028 and U+2029,
    line breaks in older JavaScript, escaped too (``ensure_ascii`` does that)."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def new_page_id() -> str:
    """A fresh id for a page's elements, so that two pages can share a notebook."""
    return "cg" + uuid.uuid4().hex[:8]


def page_content(kind: str, page_id: str, **values: str) -> Markup:
    """A page's content: ``templates/<kind>.html`` filled with ``values``, the shared
    stylesheet (``pages.css``) and the page's script (``<kind>.js``) inline, each scoped by
    ``page_id`` (letters, digits and ``_``, a letter first; else ``ValueError``)."""
    if not _PAGE_ID.fullmatch(page_id):
        raise ValueError(f"a page's id is letters, digits and '_', a letter first; got {page_id!r}")
    scope = {"id": Markup(page_id)}
    style, script = fill(template("pages.css"), scope), fill(template(f"{kind}.js"), scope)
    return fill(template(f"{kind}.html"), {**values, **scope, "style": style, "script": script})


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
        return fill(template("document.html"), {"title": self.title, "body": Markup(self.body)})

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (UTF-8), making its missing folders; returns the path.
        The page replaces the file at once: a symbolic link there is replaced, not written through."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.html)
        return path

    def _repr_html_(self) -> str:
        return self.body  # a notebook's output is part of a page: no document of its own
