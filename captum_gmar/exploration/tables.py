"""What :func:`~captum_gmar.exploration.explore` writes beside its page: the rows of
``clusters.csv`` and ``disagreement.csv``, and the entries of ``strategies.json``."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .causal import CausalCheck
from .disagreement import FIGURES, ODD_MARGIN, UNUSUAL, Disagreement
from .feature_checks import PROXIES
from .features import FeatureStrategies
from .page import Placement
from .strategies import Strategies

#: ``clusters.csv``'s columns: one row per map
CLUSTER_COLUMNS: dict[str, str] = {
    "image": "the image, as the maps folder's index.csv names it",
    "item": "its position in the data set (0-based)",
    "method": "the method's key",
    "target": "the explained class (index)",
    "target_name": "its name",
    "label": "the image's label, -1 where the data has none",
    "predicted": "the model's top class",
    "score": "the explained class's score",
    "margin": "the score less the other classes' best (empty with one class)",
    "cluster": "the map's cluster among the maps of its method and target; -1: flat (constant), set aside; empty: not clustered (too few maps)",
    "rank": "its cluster's rank by suspicion, 1 the most suspicious; empty where cluster is -1 or empty",
    "x": "the map's embedding, first coordinate; empty where not clustered",
    "y": "second coordinate",
}
#: ``disagreement.csv``'s first columns; then ``FIGURE:A:B`` for each of
#: :data:`~captum_gmar.exploration.disagreement.FIGURES` (``spearman``, ``pearson``,
#: ``overlap``, ``bhattacharyya``) and each pair of methods ``A``, ``B``; ``disagreement:M``
#: for each method ``M`` (its disagreement with the others); ``disagreement`` (the score);
#: ``odd_method`` (the method that disagrees most, empty with two methods)
DISAGREEMENT_COLUMNS: dict[str, str] = {
    "image": "the image",
    "item": "its position in the data set",
    "target": "the explained class",
    "target_name": "its name",
    "label": "the image's label, -1 where none",
    "predicted": "the model's top class",
    "score": "the explained class's score",
    "margin": "the score less the other classes' best (empty with one class)",
}
#: significant digits of the written floats
_DIGITS = 6
#: a cluster's figures written as they are (:class:`~captum_gmar.exploration.suspicion.Suspicion`)
_FIGURES = ("localised", "additive", "intact", "beyond", "threshold", "difference", "spread", "member_mass", "rest_mass", "shared")


@dataclass
class Rows:
    """The fields of one method's records, in the maps folder's order (row ``i`` of every
    method is the same image and target)."""

    image: list[str]
    item: np.ndarray
    target: np.ndarray
    label: np.ndarray
    predicted: np.ndarray
    score: np.ndarray
    margin: np.ndarray

    def class_rows(self) -> dict[int, np.ndarray]:
        """Each explained class's rows, in ascending class order: explore's groups (the same
        rows for every method)."""
        return {target: np.flatnonzero(self.target == target) for target in np.unique(self.target).tolist()}


def number(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.{_DIGITS}g}"


def _described(fields: Rows, i: int, class_names: dict[int, str]) -> list[Any]:
    """Row ``i``'s cells from ``target`` to ``margin``, as both CSV files have them."""
    target = int(fields.target[i])
    return [target, class_names[target], fields.label[i], fields.predicted[i], number(fields.score[i]), number(fields.margin[i])]


def write_clusters(handle: Any, rows: dict[str, Rows], placements: dict[str, Placement], class_names: dict[int, str]) -> None:
    writer = csv.writer(handle)
    writer.writerow(CLUSTER_COLUMNS)
    for key, fields in rows.items():
        # each row's cluster, rank and (x, y), empty where its group was not clustered
        placement = placements[key]
        cluster = ["" if c == -2 else c for c in placement.cluster.tolist()]
        rank = ["" if r == 0 else r for r in placement.rank.tolist()]
        place = placement.place
        for i in range(len(fields.item)):
            writer.writerow(
                [
                    fields.image[i],
                    fields.item[i],
                    key,
                    *_described(fields, i, class_names),
                    cluster[i],
                    rank[i],
                    number(place[i, 0]),
                    number(place[i, 1]),
                ]
            )


def write_disagreement(handle: Any, fields: Rows, compared: Disagreement, class_names: dict[int, str]) -> None:
    writer = csv.writer(handle)
    pairs = [f"{a}:{b}" for a, b in compared.pairs]
    figures = [f"{figure}:{pair}" for figure in FIGURES for pair in pairs]
    writer.writerow([*DISAGREEMENT_COLUMNS, *figures, *(f"disagreement:{key}" for key in compared.methods), "disagreement", "odd_method"])
    # (N, figures, pairs) flattened: figure by figure, each pair in turn, as the header
    values = compared.figures.transpose(0, 2, 1).reshape(len(fields.item), -1)
    for i in range(len(fields.item)):
        writer.writerow(
            [
                fields.image[i],
                fields.item[i],
                *_described(fields, i, class_names),
                *map(number, values[i]),
                *map(number, compared.per_method[i]),
                number(compared.score[i]),
                compared.methods[compared.odd[i]] if compared.odd[i] >= 0 else "",
            ]
        )


def _purity(values: np.ndarray) -> dict[str, Any] | None:
    """``counts`` by class, the ``majority`` class and its share (``purity``) of ``values``
    (``-1``, no label, left out); ``None`` where none is left."""
    counts = Counter(int(v) for v in values if v >= 0)
    if not counts:
        return None
    majority, most = max(counts.items(), key=lambda entry: (entry[1], -entry[0]))
    return {"counts": {str(k): v for k, v in sorted(counts.items())}, "majority": majority, "purity": _rounded(most / sum(counts.values()))}


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.{_DIGITS}g}")


def _finite(value: float) -> float | None:
    """A figure for JSON, ``null`` where NaN (not measured)."""
    return None if math.isnan(value) else _rounded(value)


def _nested(array: np.ndarray) -> Any:
    """An array as nested lists of rounded floats, for JSON."""
    return np.vectorize(_rounded, otypes=[float])(array).tolist()


def _causal(check: CausalCheck | None) -> dict[str, Any] | None:
    if check is None or not check.members:  # no check, or only the transplant ran
        return None
    figures = {name: value for name, value in vars(check).items() if name != "transplant"}
    return _figures({**figures, "effect": check.effect, "specific": check.specific})


def _transplant(check: CausalCheck | None, flagged: bool) -> dict[str, Any]:
    """A cluster's ``transplant_rise`` and ``transplant_control`` (``None`` where none ran
    or with nothing to paste on, ``transplant_note`` saying why), the rest of the check, and
    whether it is ``confirmed``: flagged, and its transplant confirms it."""
    transplant = None if check is None else check.transplant
    if transplant is None:
        return {"transplant_rise": None, "transplant_control": None, "transplant_null": None, "transplant": None, "confirmed": False}
    figures = _figures({**vars(transplant), "beyond": transplant.beyond, "needed": transplant.needed})
    confirmed = flagged and transplant.confirms
    return {
        "transplant_rise": figures["rise"],
        "transplant_control": figures["control"],
        "transplant_null": figures["null"],
        "transplant": figures,
        "confirmed": confirmed,
    }


def _figures(figures: dict[str, Any]) -> dict[str, Any]:
    """Counts and text as they are, floats rounded, NaN as ``None``."""
    return {
        name: value if value is None or isinstance(value, (int, str)) else None if math.isnan(value) else _rounded(value)
        for name, value in figures.items()
    }


def disagreement_summary(compared: Disagreement) -> dict[str, Any]:
    """``strategies.json``'s entry on the disagreement: what its columns compare, and the
    score's scale (robust standard deviations from the typical image)."""
    return {
        "pairs": [list(pair) for pair in compared.pairs],
        "top_k": compared.top_k,
        "grid": list(compared.grid),
        "rows": len(compared.score),
        "unusual": UNUSUAL,
        "odd_margin": ODD_MARGIN,
    }


def group_summary(
    group: tuple[str, int],
    members: np.ndarray,
    fields: Rows,
    grid: tuple[int, int],
    flat: int,
    strategies: Strategies | None,
    note: str | None,
    class_names: dict[int, str],
    causal: dict[int, CausalCheck],
) -> dict[str, Any]:
    """One method's and class's entry of ``strategies.json`` (``causal``: cluster label ->
    its causal check, where one ran)."""
    key, target = group
    entry: dict[str, Any] = {
        "method": key,
        "target": target,
        "target_name": class_names[target],
        "maps": len(members),
        "flat": flat,
        "grid": list(grid),
        "note": note,
    }
    if strategies is None:
        return entry
    labels, predicted = fields.label[members], fields.predicted[members]
    clusters = []
    for rank, cluster in enumerate(strategies.ranking, start=1):
        inside = strategies.labels == cluster.label
        labelled = inside & (labels >= 0)
        clusters.append(
            {
                "cluster": cluster.label,
                "rank": rank,
                "size": cluster.size,
                "suspicion": _rounded(cluster.suspicion),
                "flagged": cluster.flagged,
                "flagged_by": cluster.flagged_by,
                "suspected": cluster.suspected,
                **{name: _rounded(getattr(cluster, name)) for name in _FIGURES},
                "rest_less_flagged": cluster.rest_less_flagged,
                "region": [list(cell) for cell in cluster.region],
                "confidence": None if math.isnan(cluster.confidence) else _rounded(cluster.confidence),
                "reason": cluster.reason,
                "mean_map": _nested(strategies.mean_maps[cluster.label]),
                "typical": [
                    {"item": int(fields.item[members[i]]), "image": fields.image[members[i]]} for i in strategies.typical[cluster.label]
                ],
                "labels": _purity(labels[inside]),
                "predictions": _purity(predicted[inside]),
                "correct": _rounded(float(np.mean(labels[labelled] == predicted[labelled]))) if labelled.any() else None,
                "causal": _causal(causal.get(cluster.label)),
                **_transplant(causal.get(cluster.label), cluster.flagged),
            }
        )
    entry.update(
        eigenvalues=_nested(strategies.eigenvalues),
        eigengaps=_nested(strategies.eigengaps),
        n_clusters=strategies.n_clusters,
        clusters_found=strategies.clusters_found,
        flagged=len(strategies.flagged),
        confirmed=sum(c["confirmed"] for c in clusters),
        suspicion=_rounded(strategies.ranking[0].suspicion),
        embedding_axes=_nested(strategies.embedding_axes),
        clusters=clusters,
    )
    return entry


def feature_summary(
    features: dict[int, FeatureStrategies | str],
    layer: int,
    rule: str,
    class_names: dict[int, str],
    groups: dict[int, np.ndarray],
    images: Sequence[str],
) -> dict[str, Any]:
    """``strategies.json``'s ``features``: each class's strategies in the model's features
    (``groups``: each class's rows; ``images``: each row's image)."""
    entries = []
    for target, found in features.items():
        rows = groups[target]
        entry: dict[str, Any] = {"target": target, "target_name": class_names[target], "images": len(rows), "note": None}
        if isinstance(found, str):
            entries.append({**entry, "note": found})
            continue
        clusters = []
        for rank, cluster in enumerate(found.ranking, start=1):
            check = cluster.check
            clusters.append(
                {
                    "cluster": cluster.label,
                    "rank": rank,
                    "size": cluster.size,
                    "parts": list(cluster.parts),
                    "flagged": cluster.flagged,
                    "no_place": cluster.no_place,
                    "matched": None
                    if cluster.matched is None
                    else {"method": cluster.matched[0], "cluster": cluster.matched[1], "f1": _rounded(cluster.matched[2])},
                    "direction": None
                    if check is None
                    else {
                        **{
                            name: _finite(getattr(check, name))
                            for name in ("norm", "plain", "rise", "random", "random_spread", "beyond", "needed")
                        },
                        "screened": check.screened,
                        "recipients": check.recipients,
                        "confirmed": check.confirms,
                    },
                    **{proxy: None for proxy in PROXIES},
                    **{
                        pixel.proxy: {
                            **{name: _finite(getattr(pixel, name)) for name in ("rise", "random", "random_spread", "beyond", "needed")},
                            "screened": pixel.screened,
                            "recipients": pixel.recipients,
                            "confirmed": pixel.confirms,
                        }
                        for pixel in cluster.pixels
                    },
                    "confirmed_by": list(cluster.confirmed_by),
                    "reason": cluster.reason,
                    "typical": [{"row": int(rows[i]), "image": images[rows[i]]} for i in found.typical[cluster.label]],
                }
            )
        entries.append({**entry, "eigenvalues": _nested(found.eigenvalues), "flagged": len(found.flagged), "clusters": clusters})
    return {"layer": layer, "rule": rule, "groups": entries}
