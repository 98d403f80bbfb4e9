"""A maps folder explored: :func:`explore` finds each class's strategies and where the
methods disagree, and writes them to a folder the explorer page reads.

Layout of ``EXP/``::

    clusters.csv        one row per map (:data:`CLUSTER_COLUMNS`)
    disagreement.csv    one row per explained image and target (:data:`DISAGREEMENT_COLUMNS`,
                        then each pair's and each method's columns); only with two methods or more
    strategies.json     per method and explained class: the spectrum, the clusters ranked by
                        suspicion with their mean maps, typical images and purity
                        (:func:`explore` documents its keys)
    explore.html        the explorer page, with explore-data/ and thumbs/
                        (:mod:`~captum_gmar.exploration.page`)

The maps are read through :func:`~captum_gmar.dataset_maps.load_maps` and
:func:`~captum_gmar.dataset_maps.read_maps`, a few thousand at a time, into one
preallocated float32 array per method: memory grows with the number of maps (4 bytes
per patch each), never with a Python object per map.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset_maps import load_maps
from ..dataset_maps.checks import read_job
from ..evaluation.distributed import current_context
from ..files import check_folder, claim_files, replacing, write_atomic
from ._extra import require
from .checker import ClusterChecker, decided_by_transplant
from .disagreement import check_top_share, find_disagreement
from .features import FEATURE_RULE, FeatureChecker
from .groups import cluster_groups
from .normalise import Part
from .page import DATA, PAGE, THUMBS, Placement, write_page
from .reading import (
    check_finished,
    check_not_flat,
    chosen_methods,
    chosen_targets,
    job_class_names,
    map_grid,
    read_fields,
    read_group_maps,
)
from .result import Exploration, overview_order
from .strategies import Strategies, check_settings, maps_needed
from .suspicion import FLAG_AT, FLAG_RULE
from .tables import (
    CLUSTER_COLUMNS,
    DISAGREEMENT_COLUMNS,
    disagreement_summary,
    feature_summary,
    group_summary,
    write_clusters,
    write_disagreement,
)
from .transplant import CONFIRMS_BY, TRANSPLANT_RULE

__all__ = ["CLUSTER_COLUMNS", "DISAGREEMENT_COLUMNS", "EXPLORE_FILES", "FORMAT", "Exploration", "explore"]

#: the ``format`` entry of ``strategies.json``
FORMAT = "captum-gmar-explore/1"
CLUSTERS, DISAGREEMENT, STRATEGIES = "clusters.csv", "disagreement.csv", "strategies.json"
#: the files an explore folder holds (its manifest lists them)
EXPLORE_FILES = (CLUSTERS, DISAGREEMENT, STRATEGIES, PAGE, DATA, THUMBS)


def explore(
    maps_folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    methods: Sequence[str] | None = None,
    classes: Sequence[int | str] | None = None,
    images: str | os.PathLike[str] | None = None,
    n_clusters: int | None = None,
    max_clusters: int = 10,
    neighbours: int = 10,
    part: Part = "positive",
    typical: int = 8,
    top_share: float = 0.1,
    max_side: int = 32,
    seed: int = 0,
    model: Any | None = None,
    processor: Any | None = None,
    feature_layer: int | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Exploration | None:
    """Find the strategies of each method and class in a maps folder, and where the
    methods disagree, and write them to ``out``.

    The maps of each method and explained class (``target``) are clustered with
    :func:`~captum_gmar.exploration.find_strategies`; a group with fewer maps than it
    needs (:func:`~captum_gmar.exploration.strategies.maps_needed`, flat maps not
    counted) is skipped, with a note in ``strategies.json`` and a line on stderr. Every
    explained image's maps are compared across methods with
    :func:`~captum_gmar.exploration.find_disagreement`. Maps larger than ``max_side`` on a
    side (a job's ``resolution="pixels"``) are averaged onto a grid of at most that side
    as they are read.

    ``strategies.json`` holds ``format``, ``maps`` (the folder read), ``settings``,
    ``methods``, ``targets`` (the explained classes), ``class_names`` (index -> name:
    every class of the model where the job kept their names, else the explained ones),
    ``flag_at`` (the suspicion that flags a cluster of 20 maps or more), ``flag_rule`` (the flag's rule in words), ``model`` (as the job names it),
    ``overview`` (the clustered groups' indices in ``groups``, those with a confirmed cluster
    first, then those with a flagged one, then by their most suspicious cluster: the order
    the page shows them in), ``confirms_by`` (what a transplant must rise beyond its control
    and its null to confirm a cluster), ``flag_by_transplant`` (with a model: the
    transplant's rule in words; ``null`` without), ``features`` (with a model: each class's
    images clustered by the model's features, :mod:`~captum_gmar.exploration.features`:
    ``layer``, ``rule`` and ``groups``, one per class, each with ``target``,
    ``target_name``, ``images``, ``note`` (why it was not clustered, else ``null``),
    ``eigenvalues``, ``flagged`` and ``clusters``, flagged first, each with ``cluster``,
    ``rank``, ``size``, ``parts`` (the sizes of the clusters it joins, flagged or agreeing with a flagged
    one's direction, one shortcut the clustering split: :mod:`~captum_gmar.exploration.aligned`; empty: as found), ``flagged``
    (a shortcut with no place), ``no_place``, ``matched``
    (``method``, ``cluster``, ``f1`` of the map cluster that best isolates its images),
    ``direction`` (the intervention's ``recipients``, ``norm``, ``plain``, ``rise``,
    ``random``, ``random_spread`` (``null`` where not drawn), ``screened``, ``beyond``,
    ``needed``, ``confirmed``), ``tone curve`` and ``filter`` (its proxies put on in
    pixels, :data:`~captum_gmar.exploration.feature_checks.PROXIES`, each with the same
    figures as the direction but ``norm`` and ``plain``), ``confirmed_by`` (those of
    ``"direction"``, ``"tone curve"`` and ``"filter"`` that confirm it), ``reason`` and
    ``typical`` (``row`` and ``image`` of its most typical images); ``null`` without a model),
    ``files`` (those written), ``disagreement`` (``pairs``, ``top_k``, ``grid``, ``rows``;
    ``null`` with one method) and ``groups``, one per method and target: ``method``,
    ``target``, ``target_name``, ``maps``, ``flat``, ``grid`` ``[h, w]``, ``note`` (why it
    was not clustered, else ``null``) and, where clustered, ``eigenvalues``,
    ``eigengaps``, ``n_clusters``, ``clusters_found`` (before merging), ``flagged`` (how
    many clusters are), ``confirmed`` (how many of those the transplant confirms), ``suspicion`` (the highest), ``embedding_axes`` (two ``h x w``
    maps) and ``clusters``, most suspicious first, each with ``cluster``, ``rank``,
    ``size``, ``suspicion``, ``flagged``, ``flagged_by`` (``"transplant"`` where a model was
    given and something was pasted, else ``"suspicion"``), ``suspected`` (whether the
    suspicion alone reaches the flag), ``localised``, ``additive``, ``difference``,
    ``spread``, ``region`` (``[row, column]`` pairs), ``member_mass``, ``rest_mass``,
    ``shared``, ``confidence`` (against the rest, from the margins, or the scores with
    one class; :class:`~captum_gmar.exploration.suspicion.Suspicion`),
    ``rest_less_flagged`` (scored against the rest less the flagged clusters), ``reason``,
    ``transplant_rise``, ``transplant_control``, ``transplant_null``, ``transplant`` and
    ``confirmed`` (flagged, and the transplant rose
    :data:`~captum_gmar.exploration.transplant.CONFIRMS_BY` beyond its control and its null;
    where a model was given),
    ``mean_map`` (``h x w``, sums to 1), ``typical`` (``item`` and ``image`` of its most
    typical maps), ``labels`` and ``predictions`` (``counts`` by class, ``majority``,
    ``purity``: the majority's share; ``null`` where no map is labelled) and
    ``correct`` (the share of its labelled maps whose prediction is the label, or ``null``).

    Args:
        maps_folder: a folder :func:`~captum_gmar.explain_dataset` wrote.
        out: the folder to write: new, empty, or one this package wrote.
        methods: the methods to explore (their keys; default: the job's).
        classes: the explained classes to explore, by index or name (default: all).
        images: the image folder the maps folder's job read: the page shows each image's
            thumbnail (its ``image`` names the file in this folder); default: none.
        n_clusters, max_clusters, neighbours, part, typical, seed: as
            :func:`~captum_gmar.exploration.find_strategies`'s, for every group.
        top_share: as :func:`~captum_gmar.exploration.find_disagreement`'s (``part`` too).
        max_side: the largest grid side the maps keep.
        model: the model the maps folder's job explained (a transformers model or its
            :class:`~captum_gmar.vit.model.VisionTransformer`): every cluster's transplant
            against its control and its null, which then decides the flag, and the masking
            check of each confirmed cluster
            (:class:`~captum_gmar.exploration.checker.ClusterChecker`,
            :mod:`~captum_gmar.exploration.transplant`); needs ``images``. Default: no
            check, the suspicion flags.
        processor: the model's image processor (default: the bundled reference model's own,
            for one of those; any other model needs it).
        feature_layer: with ``model``, the layer (from 0) whose output's patch tokens,
            pooled, are the features each class's images are clustered by (default: the
            one two thirds of the way up, :func:`~captum_gmar.exploration.features.default_layer`).
        workers: processes clustering groups at once (each holds one group's maps and
            :func:`~captum_gmar.exploration.find_strategies`' working memory: see
            docs/benchmarks.md); under ``torchrun`` (a process group of the CPU's gloo
            initialised) the groups are dealt to the ranks too, and rank 0 writes the folder.
        progress: progress bars (maps read, groups clustered) on stderr.

    Returns:
        :class:`Exploration` (``None`` on a rank other than 0).

    Raises:
        FileNotFoundError: ``maps_folder`` holds no maps.
        ValueError: before any map is read: a method or class not in the job, a bad
            setting, an ``out`` holding files this package did not write, or no group with
            enough maps to cluster; before any file is written: NaN or infinite maps
            (naming how many), a method whose maps are all constant, or no group left with
            enough maps that are not.
        ImportError: scikit-learn or SciPy is missing (``pip install 'captum-gmar[explore]'``).
    """
    check_settings(n_clusters, max_clusters, neighbours, typical, part)
    check_top_share(top_share)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer of at least 1, got {workers!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 2:
        raise ValueError(f"max_side must be an integer of at least 2, got {max_side!r}")
    require()
    records = load_maps(maps_folder)
    check_finished(maps_folder, records)
    chosen = chosen_methods(maps_folder, methods)
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"images {str(images)!r} is not a folder: name the image folder the maps folder's job read")
    if Path(out).resolve().is_relative_to(Path(maps_folder).resolve()):
        where = "is" if Path(out).resolve() == Path(maps_folder).resolve() else "lies inside"
        raise ValueError(f"out {str(out)!r} {where} the maps folder: name another folder, which explore writes alone")
    check_folder(out, EXPLORE_FILES)
    if model is None and feature_layer is not None:
        raise ValueError("feature_layer chooses the model's layer whose features are clustered: give the model too (model=)")
    checker = None if model is None else ClusterChecker(model, processor, images, seed)
    in_features = None if checker is None else FeatureChecker(checker, feature_layer)
    targets = chosen_targets(maps_folder, records, classes)
    rows, shapes, class_names = read_fields(records, chosen, targets)
    keys = list(rows)
    if not keys:
        raise ValueError(f"{str(maps_folder)!r} holds no maps of {', '.join(chosen) if chosen else 'any method'} yet")
    needed = maps_needed(neighbours, max_clusters, n_clusters)
    first = rows[keys[0]]
    groups = first.class_rows()
    if all(len(members) < needed for members in groups.values()):
        largest = max(len(members) for members in groups.values())
        raise ValueError(
            f"{str(maps_folder)!r}: no class has the {needed} maps a method needs to be clustered (the most: {largest}); "
            "explain more images, or lower neighbours and max_clusters (--neighbours, --max-clusters)"
        )
    grids = {key: map_grid(shape, max_side) for key, shape in shapes.items()}
    values = read_group_maps(records, keys, targets, rows, grids, progress)
    check_not_flat(maps_folder, values, groups, part, needed)
    clustering: dict[str, Any] = {
        "n_clusters": n_clusters,
        "max_clusters": max_clusters,
        "neighbours": neighbours,
        "part": part,
        "typical": typical,
        "seed": seed,
    }
    context = current_context("cpu")
    outcomes = cluster_groups(values, groups, rows, clustering, part, needed, workers, context, progress)
    if context.rank != 0:
        return None  # rank 0 writes the folder
    found = {group: outcome for group, (outcome, _) in outcomes.items() if isinstance(outcome, Strategies)}
    skipped = {group: outcome for group, (outcome, _) in outcomes.items() if isinstance(outcome, str)}
    flat = {group: count for group, (_, count) in outcomes.items()}
    for key, target in skipped:
        print(f"explore: {key}, {class_names[target]}: not clustered ({skipped[key, target]})", file=sys.stderr)
    causal = {} if checker is None else checker.run(found, groups, {key: r.image for key, r in rows.items()}, values, part, progress)
    found = decided_by_transplant(found, causal)  # with the model, its transplant decides the flag
    # with the model: each class's images clustered by its features, for what no map can place
    features = {} if in_features is None else in_features.run(groups, first.image, found, clustering, progress)
    compared = find_disagreement({key: values[key] for key in keys}, top_share=top_share, part=part) if len(keys) > 1 else None
    folder = Path(out)
    files = (
        *sorted([CLUSTERS, STRATEGIES] + ([DISAGREEMENT] if compared is not None else [])),
        PAGE,
        DATA,
        *([THUMBS] if images is not None else []),
    )
    claim_files(folder, EXPLORE_FILES)
    placements = {key: _placement(len(rows[key].item), key, groups, found) for key in keys}
    with replacing(folder / CLUSTERS, newline="") as handle:
        write_clusters(handle, rows, placements, class_names)
    if compared is not None:
        with replacing(folder / DISAGREEMENT, newline="") as handle:
            write_disagreement(handle, first, compared, class_names)
    else:
        (folder / DISAGREEMENT).unlink(missing_ok=True)  # an earlier exploration's, of other methods
    job_model = (read_job(maps_folder) or {}).get("model")
    summary: dict[str, Any] = {
        "format": FORMAT,
        "maps": str(maps_folder),
        "settings": {**clustering, "top_share": top_share, "max_side": max_side},
        "methods": keys,
        "targets": list(class_names),
        "class_names": {str(target): name for target, name in {**job_class_names(maps_folder), **class_names}.items()},
        "flag_at": FLAG_AT,
        "flag_rule": FLAG_RULE,
        "confirms_by": CONFIRMS_BY,
        "flag_by_transplant": None if model is None else TRANSPLANT_RULE,
        "features": None
        if in_features is None
        else feature_summary(features, in_features.layer, FEATURE_RULE, class_names, groups, first.image),
        "model": job_model,
        # what explore was given, for the page's commands (its next steps name them)
        "given": {
            "model": None if model is None else job_model or getattr(model, "name_or_path", None),
            "images": None if images is None else str(images),
            "out": str(out),
        },
        "files": list(files),
        "disagreement": None if compared is None else disagreement_summary(compared),
        "groups": [
            group_summary(
                (key, target),
                members,
                first,
                grids[key],
                flat[key, target],
                found.get((key, target)),
                skipped.get((key, target)),
                class_names,
                {label: check for (m, t, label), check in causal.items() if (m, t) == (key, target)},
            )
            for key in keys
            for target, members in groups.items()
        ],
    }
    summary["overview"] = overview_order(summary["groups"])
    write_atomic(folder / STRATEGIES, json.dumps(summary, indent=1) + "\n")
    fields = {name: getattr(first, name) for name in ("item", "target", "label", "predicted", "score", "margin")}
    write_page(
        folder,
        summary,
        {"image": first.image, **{name: column.tolist() for name, column in fields.items()}},
        placements,
        values,
        None if compared is None else (compared.score, [compared.methods[i] if i >= 0 else "" for i in compared.odd]),
        part,
        images,
        progress,
    )
    return Exploration(folder, found, skipped, compared, files, causal, summary, None if images is None else Path(images), features)


def _placement(count: int, key: str, groups: dict[int, np.ndarray], found: dict[tuple[str, int], Strategies]) -> Placement:
    """Method ``key``'s rows as the clustering of each of its groups left them."""
    cluster = np.full(count, -2, dtype=np.int64)
    rank = np.zeros(count, dtype=np.int64)
    place = np.full((count, 2), np.nan)
    for target, members in groups.items():
        strategies = found.get((key, target))
        if strategies is None:
            continue
        ranks = {c.label: position + 1 for position, c in enumerate(strategies.ranking)}
        cluster[members] = strategies.labels
        rank[members] = [ranks.get(int(label), 0) for label in strategies.labels]
        place[members] = strategies.embedding
    return Placement(cluster, rank, place)
