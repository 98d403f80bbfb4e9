"""What :func:`~captum_gmar.exploration.explore` returns: the strategies it found, in the
order to look at them, a cluster's rows as a table, and the same overview as the page's
shown inline in Jupyter."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .causal import CausalCheck
from .disagreement import Disagreement
from .features import FeatureStrategies
from .strategies import Strategies

__all__ = ["Exploration", "overview_order"]

#: the groups, and the flagged clusters, the notebook view shows at most
SHOWN_GROUPS, SHOWN_FLAGGED = 20, 5


def overview_order(groups: Sequence[dict[str, Any]]) -> list[int]:
    """The indices of ``strategies.json``'s clustered groups in the order to look at them:
    those with a confirmed cluster first (flagged, and its transplant confirms it), then
    those with a flagged one, then by their most suspicious cluster's suspicion (the page's
    overview and :meth:`Exploration.overview` both read this order)."""
    clustered = [i for i, group in enumerate(groups) if group.get("clusters")]
    return sorted(clustered, key=lambda i: (groups[i]["confirmed"] == 0, groups[i]["flagged"] == 0, -groups[i]["suspicion"], i))


@dataclass(frozen=True)
class Exploration:
    """What :func:`~captum_gmar.exploration.explore` found and wrote."""

    #: the folder written
    folder: Path
    #: ``(method, target)`` -> the strategies of that method's maps of that class
    strategies: dict[tuple[str, int], Strategies]
    #: ``(method, target)`` -> why those maps were not clustered
    skipped: dict[tuple[str, int], str]
    #: the methods' disagreement, row ``i`` the ``i``-th explained (image, target) in the
    #: maps folder's order (``None`` with one method)
    disagreement: Disagreement | None
    #: the files written, relative to ``folder``
    files: tuple[str, ...]
    #: ``(method, target, cluster)`` -> the causal check of that cluster (with ``model=``)
    causal: dict[tuple[str, int, int], CausalCheck]
    #: ``strategies.json``'s content
    summary: dict[str, Any]
    #: the image folder the job read, where given (the notebook view's thumbnails)
    images: Path | None = None
    #: with ``model=``: target -> the strategies in the model's features of that class's
    #: images (:mod:`~captum_gmar.exploration.features`), or why they were not clustered
    features: dict[int, FeatureStrategies | str] = field(default_factory=dict)

    def __repr__(self) -> str:  # the maps and strategies are for the attributes, not for a line
        return (
            f"Exploration({str(self.folder)!r}: {len(self.strategies)} groups clustered, {len(self.skipped)} not, "
            f"{len(self.flagged())} flagged clusters; overview_table() for the groups)"
        )

    def overview_table(self) -> Any:
        """The overview as a table, one row per clustered group in the overview's order,
        with its most suspicious cluster's figures: a pandas ``DataFrame`` where pandas is
        installed, else a list of dicts."""
        names = self.summary["class_names"]
        rows = []
        for g in self.overview():
            c = g["clusters"][0]
            rows.append(
                {
                    "method": g["method"],
                    "target": g["target"],
                    "class": names[str(g["target"])],
                    "maps": g["maps"],
                    "clusters": g["n_clusters"],
                    "flagged": g["flagged"],
                    "confirmed": g["confirmed"],
                    "rank_1_suspicion": c["suspicion"],
                    "rank_1_maps": c["size"],
                    "rank_1_transplant_rise": c.get("transplant_rise"),
                    "rank_1_transplant_control": c.get("transplant_control"),
                }
            )
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows)

    def overview(self) -> list[dict[str, Any]]:
        """The clustered groups of ``strategies.json``, those with a confirmed cluster first,
        then those with a flagged one, then by their most suspicious cluster (each with its ``clusters``, most suspicious first)."""
        groups = self.summary["groups"]
        return [groups[i] for i in overview_order(groups)]

    def flagged(self) -> list[tuple[str, int, Any]]:
        """``(method, target, cluster)`` of every flagged cluster, in the overview's order."""
        return [
            (g["method"], g["target"], self.strategies[g["method"], g["target"]].cluster(c["cluster"]))
            for g in self.overview()
            for c in g["clusters"]
            if c["flagged"]
        ]

    def rows(self, method: str, target: int, rank: int | None = None) -> Any:
        """The rows of ``clusters.csv`` of ``method``'s maps of class ``target`` (of its
        cluster ranked ``rank`` only, where given: 1 the most suspicious, as the page, the
        command line and ``METHOD:CLASS:RANK`` number them), with their images, labels,
        predictions, scores and places: a pandas ``DataFrame`` where pandas is installed,
        else a list of dicts (the CSV's strings)."""
        if (method, target) not in self.strategies:
            raise ValueError(f"no clustered maps of {method!r} explaining class {target}; clustered: {sorted(self.strategies)}")
        path = self.folder / "clusters.csv"
        try:
            import pandas as pd
        except ImportError:
            with path.open(newline="") as handle:
                return [
                    row
                    for row in csv.DictReader(handle)
                    if row["method"] == method and int(row["target"]) == target and (rank is None or row["rank"] == str(rank))
                ]
        table = pd.read_csv(path)
        chosen = (table["method"] == method) & (table["target"] == target)
        if rank is not None:
            chosen &= table["rank"] == rank
        return table[chosen].reset_index(drop=True)

    def _repr_html_(self) -> str:
        """The overview in Jupyter: the verdict, the groups in the order to look at them,
        and each flagged cluster with its mean map, typical images and figures."""
        from ..imagedata.images import read_image
        from ..pages.images import heat, thumbnail_uri

        groups = self.overview()
        flagged = [g for g in groups if g["flagged"]]
        confirmed = sum(g["confirmed"] > 0 for g in groups)
        names = self.summary["class_names"]
        rule = self.summary.get("flag_by_transplant") or self.summary.get("flag_rule", self.summary["flag_at"])
        verdict = (
            f"{len(flagged)} of the {len(groups)} method-and-class groups {'has' if len(flagged) == 1 else 'have'} a flagged cluster ({rule})"
            + (f"; {confirmed} confirmed by the transplant (listed first)" if confirmed else "")
            if flagged
            else f"Nothing stands out: no cluster of the {len(groups)} method-and-class groups reaches the flag ({rule})"
        )
        out = [f"<div><p><b>{html.escape(verdict)}</b>. The page: <code>{html.escape(str(self.folder / 'explore.html'))}</code>.</p>"]
        out.append(
            "<table><tr><th>#</th><th>method</th><th>class</th><th>maps</th><th>clusters</th><th>flagged</th>"
            "<th>most suspicious cluster: suspicion</th><th>its maps</th></tr>"
        )
        for k, g in enumerate(groups[:SHOWN_GROUPS], start=1):
            top = g["clusters"][0]
            out.append(
                f"<tr><td>{k}</td><td>{html.escape(g['method'])}</td><td>{g['target']}: {html.escape(names[str(g['target'])])}</td>"
                f"<td>{g['maps']:,}</td><td>{g['n_clusters']}</td><td>{g['flagged']}{', confirmed' if g['confirmed'] else ''}</td><td>{top['suspicion']:.3f}</td><td>{top['size']:,}</td></tr>"
            )
        out.append("</table>")
        if len(groups) > SHOWN_GROUPS:
            out.append(f"<p>... and {len(groups) - SHOWN_GROUPS} more groups: <code>exploration.overview_table()</code>.</p>")
        shown = 0
        for g in flagged:
            for c in g["clusters"]:
                if not c["flagged"] or shown == SHOWN_FLAGGED:
                    continue
                shown += 1
                mean = np.array(c["mean_map"], dtype=np.float32)
                mean = np.kron(mean, np.ones((max(1, 96 // mean.shape[0]),) * 2, dtype=np.float32))
                pictures = [f'<img src="{heat(mean, float(mean.max()))}" title="mean map" style="image-rendering: pixelated">']
                for typical in c["typical"][:6] if self.images is not None else []:
                    try:
                        picture = np.asarray(read_image(str(self.images), typical["image"]))
                    except (OSError, ValueError):
                        continue
                    pictures.append(f'<img src="{thumbnail_uri(picture, 96)}" title="{html.escape(typical["image"])}">')
                causal = self.causal.get((g["method"], g["target"], c["cluster"]))
                query = f"exploration.rows({g['method']!r}, {g['target']}, rank={c['rank']})"
                out.append(
                    f"<h4>{html.escape(g['method'])}, class {g['target']} ({html.escape(names[str(g['target'])])}): cluster #{c['rank']}, "
                    f"{c['size']:,} maps, suspicion {c['suspicion']:.3f}</h4><div>{' '.join(pictures)}</div>"
                    f"<p>{html.escape(c['reason'])}</p>"
                    + (f"<p>Causal check: {html.escape(causal.summary())}.</p>" if causal is not None else "")
                    + f"<p>Its rows: <code>{html.escape(query)}</code></p>"
                )
        out.append("</div>")
        return "".join(out)
