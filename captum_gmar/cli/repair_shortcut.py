"""What ``captum-gmar repair`` removes: the cluster ``--cluster`` names, found again in the
maps folder as explore found it (a method's cluster, its region's mark pasted, or where it
would paste its whole region, its images' pixel proxies that confirm it; or
``features:CLASS:RANK``, a cluster of the model's features put on through the pixel proxies
that confirm it), checked by the model before any image is read for the repair (the gate),
and the labelled ``--data`` images it is measured on. Each is refused in one line."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .maps_options import RepairOptions, cluster_and_model, load_model_of
from .options import CommandError
from .repair_put_on import PASTES, Found, confirming_proxies, mark_or_proxies

if TYPE_CHECKING:
    import numpy as np

    from ..exploration.transplant import Transplant


def read_shortcut(options: RepairOptions) -> tuple[Found, Any, Any, Any, Any]:
    """What a repair of ``options`` starts from, each refused in one line: the cluster, the
    model, its image processor, the :class:`~captum_gmar.repair.Shortcut` (up to 64 of the
    cluster's images, and of the rest: a cluster of maps' mark, or its images' pixel proxies
    where it would paste its whole region, :func:`~captum_gmar.cli.repair_put_on.mark_or_proxies`) and the labelled
    ``--data`` images (:class:`~captum_gmar.repair.Labelled`)."""
    from ..dataset_maps.checks import read_job
    from ..exploration.checker import ClusterChecker
    from ..exploration.reading import method_rows
    from ..exploration.strategies import DEFAULT_CLUSTERING
    from ..heads.cluster import cluster_images, parse_cluster, region_words
    from ..reference.inputs import load_image_processor
    from ..repair import Shortcut
    from ..vit.model import VisionTransformer

    if parse_cluster(options.cluster)[0] == "features":
        found, model, processor, (members, rest) = _feature_shortcut(options)  # gated there, before its images are read
        choose = functools.partial(confirming_proxies, members=members, rest=rest)
    else:
        cluster, model = cluster_and_model(options.maps, options.cluster, options.model)
        processor = load_image_processor(model)
        # the model's evidence first, as explore --model decides it with its defaults, before any image is read for the repair
        checker = ClusterChecker(model, processor, options.images, DEFAULT_CLUSTERING["seed"])
        rows = method_rows(options.maps, cluster.method)  # every class's: the other classes' images are pasted on
        transplant = checker.check_cluster(cluster, rows.class_rows(), rows.image)
        words = region_words(cluster.region)
        suspicion = f"its suspicion ({cluster.suspicion:.3f}) {'flags' if cluster.flagged else 'does not flag'} it"
        found = Found(
            cluster.target,
            cluster.target_name,
            len(cluster.members),
            transplant.confirms if transplant.pasted else None,
            transplant.summary() + ("" if transplant.pasted else f"; {suspicion}"),
            f"whatever the model reads in its region ({words}), which may be the class's own object",
            f"region of {words}",
            PASTES[0],
            {"region": [list(p) for p in cluster.region], "grid": list(cluster.grid), "transplant": _figures(transplant)},
        )
        _gate(options, found)
        size = VisionTransformer(model).image_size or (224, 224)
        images = cluster_images(cluster, options.images, processor, size, 64, options.seed)
        pastes = {
            words: Shortcut.of_region(cluster.target, cluster.region, cluster.grid, images.members, images.others, whole)
            for words, whole in zip(PASTES, (False, True), strict=True)
        }
        choose = functools.partial(mark_or_proxies, pastes=pastes, members=images.members, rest=images.others)
    size = VisionTransformer(model).image_size or (224, 224)
    data = _labelled(options.data, processor, model.config.id2label, size, options.max_images, options.seed)
    if not (data.labels == found.target).any():
        raise CommandError(f"--data holds no image of the class {found.target_name!r}: it needs labelled images of every class")
    if not (data.labels != found.target).any():
        raise CommandError(
            f"--data holds no image of another class than {found.target_name!r}: the shortcut is measured put on other classes' images"
        )
    found, shortcut = choose(found, model, data, options.seed)
    # the cluster's images and the rest of its class compare by their top-1 where explain chose them by their labels
    shortcut = dataclasses.replace(shortcut, by_label=(read_job(options.maps) or {}).get("target") == "label")
    return found, model, processor, shortcut, data


def _feature_shortcut(options: RepairOptions) -> tuple[Found, Any, Any, tuple[Any, Any]]:
    """The cluster ``features:CLASS:RANK`` of the model's features, found again as explore
    found it with its defaults (the class's images, their clusters, each cluster's
    direction checked and ranked); the model, its image processor, and the images its
    proxies are made from (:func:`_proxy_images`). The class is refused before the model loads."""
    from ..dataset_maps import load_maps
    from ..exploration.checker import ClusterChecker
    from ..exploration.features import FeatureChecker, check_layer
    from ..exploration.reading import read_fields
    from ..exploration.strategies import DEFAULT_CLUSTERING
    from ..heads.cluster import class_strategies, parse_cluster
    from ..reference.inputs import load_image_processor
    from ..vit.model import VisionTransformer

    _, given, rank = parse_cluster(options.cluster)
    rows, _, class_names = read_fields(load_maps(options.maps), None, None)
    first = rows[next(iter(rows))]
    target = int(given) if given.isdigit() else next((t for t, n in class_names.items() if n == given), None)
    if target not in class_names:
        known = ", ".join(f"{t} ({n})" for t, n in sorted(class_names.items()))
        raise CommandError(f"{options.maps} holds no maps explaining class {given!r}; it explains {known}")
    model = load_model_of(options.maps, options.model)
    try:
        check_layer(options.feature_layer, VisionTransformer(model).num_layers)
    except ValueError as error:
        raise CommandError(f"--feature-layer: {error}") from None
    processor = load_image_processor(model)
    groups = first.class_rows()
    found = {}  # the maps' clusters of the class, which place (match) a cluster of the features
    for method in rows:
        try:
            found[method, target] = class_strategies(options.maps, method, str(target))[1]
        except ValueError:
            continue  # too few maps: explore left this group out too
    # explore's defaults, its seed included, as for a cluster of maps (find_cluster):
    # --seed draws the held-out fifth and the fine-tune, not the clusters
    settings = dict(DEFAULT_CLUSTERING)  # as explore passes its whole clustering
    features = FeatureChecker(ClusterChecker(model, processor, options.images, settings["seed"]), options.feature_layer)
    strategies = features.run_class(target, groups, first.image, found, settings)
    name = class_names[target]
    if isinstance(strategies, str):
        raise CommandError(f"the images of class {name!r} were not clustered by their features: {strategies}")
    if rank > len(strategies.ranking):
        raise CommandError(f"the features of class {name!r} form {len(strategies.ranking)} clusters: the rank must be at most that")
    cluster, layer = strategies.ranking[rank - 1], features.layer
    checked = cluster.check is not None  # its proxies in pixels run only where its direction does (other classes to put it on)
    where, evidence = f"no place, found at layer {layer}", cluster.reason
    recorded = {
        "layer": layer,
        "direction_norm": float(cluster.direction.norm()),
        "confirmed_by": list(cluster.confirmed_by),
        "parts": list(cluster.parts),  # the clusters it joins, one shortcut the clustering split
    }
    if checked and not cluster.confirmed_by:
        evidence = f"neither its direction nor a proxy raises the class enough: {cluster.interventions}"
    confirmed = cluster.flagged if checked else None
    placed = None
    if not cluster.no_place:  # a map cluster isolates its images: named as the page names it
        assert cluster.matched is not None  # placed: matched
        method, label, f1 = cluster.matched
        placed = f"{method}:{target}:{[c.label for c in found[method, target].ranking].index(label) + 1}"
        where, recorded["placed_by"] = f"found at layer {layer}, placed by {placed}", placed
    followed_in_place = checked and bool(cluster.confirmed_by) and placed is not None
    if followed_in_place:  # the page does not flag it: a map cluster isolates its images
        has_place = (
            f"{options.cluster} has a place: the maps' cluster {placed} isolates its images (F1 {f1:.2f}), and explore's page does "
            f"not flag it as a shortcut with no place, though the model follows it ({cluster.interventions})"
        )
        if not options.force:
            raise CommandError(
                f"{has_place}. Repair the maps' cluster (--cluster {placed}), whose transplant the model checks, or this one through "
                "a proxy with --force (docs/repair.md)"
            )
        print(f"note: {has_place}; --force: repaired through a proxy", file=sys.stderr, flush=True)
        evidence = f"{has_place}; --force"  # not flagged as the page flags it: confirmed stays False, forced True
    found_cluster = Found(
        target,
        name,
        cluster.size,
        confirmed,
        evidence,
        "whatever the model reads in its images' difference from the rest of the class",
        where,
        "",  # the proxies the model follows (repair_put_on.confirming_proxies)
        recorded,
    )
    if not followed_in_place:  # refused above, or let through by --force
        _gate(options, found_cluster)
    names = [first.image[int(r)] for r in groups[target]]
    inside = strategies.labels == cluster.label
    # put on through the images' pixels, not the direction in the features (on the
    # strong-tint model a fine-tune against the direction removed 95% of the direction's
    # rise and none of the drawn tint's effect): a tone curve, a filter, a difference or a texture,
    # each that the model follows (repair_put_on.confirming_proxies; docs/repair.md)
    return found_cluster, model, processor, _proxy_images(features.checker, names, inside, options.seed)


def _proxy_images(checker: Any, names: list[str], inside: np.ndarray, seed: int) -> tuple[Any, Any]:
    """Up to 64 of a feature cluster's images (``inside``, over the class's ``names``) and
    64 of the rest of its class, drawn by ``seed`` and read by ``checker``
    (:class:`~captum_gmar.exploration.checker.ClusterChecker`): what its proxies are made from."""
    import numpy as np

    drawn = np.random.default_rng(seed)

    def pixels(chosen: np.ndarray) -> Any:
        picked = sorted(drawn.permutation(np.flatnonzero(chosen))[:64].tolist())
        return checker.pixels_of([names[i] for i in picked]).cpu()

    return pixels(inside), pixels(~inside)


def _figures(transplant: Transplant) -> dict[str, Any]:
    """A :class:`~captum_gmar.exploration.transplant.Transplant`'s figures, for ``repair.json`` (NaN: ``None``)."""
    names = ("pasted", "rise", "control", "null", "null_spread")
    figures = {name: getattr(transplant, name) for name in names}
    figures = {key: None if value != value else value for key, value in figures.items()}
    return {**figures, "needed_beyond": transplant.needed, "confirms": transplant.confirms}


def _gate(options: RepairOptions, found: Found) -> None:
    """Refuse a cluster the model does not confirm as a shortcut, unless ``--force``: a
    repair removes what the model reads there, which may be the class's own object (on the
    untouched bundled model, a repair of its Shirts' own cluster cost the Shirts 9.7
    points: docs/repair.md). Say which evidence decided, on stdout or stderr."""
    if found.confirmed:
        print(f"{options.cluster} is confirmed as a shortcut by the model: {found.evidence}", flush=True)
    elif found.confirmed is None:
        print(
            f"note: {options.cluster} could not be checked by the model ({found.evidence}): the repair removes {found.removes}",
            file=sys.stderr,
            flush=True,
        )
    elif not options.force:
        raise CommandError(
            f"{options.cluster} is not confirmed as a shortcut by the model: {found.evidence}. A repair would remove {found.removes}; "
            "repair it all the same with --force (docs/repair.md)"
        )
    else:
        print(
            f"note: {options.cluster} is not confirmed as a shortcut by the model ({found.evidence}); --force: the repair removes "
            f"{found.removes}",
            file=sys.stderr,
            flush=True,
        )


def _labelled(root: str, processor: Any, id2label: Mapping[int | str, str], size: Any, limit: int, seed: int) -> Any:
    """Up to ``limit`` labelled images of the folder ``root`` (one folder per class), as pixel values."""
    import torch

    from ..evaluation.data import open_dataset
    from ..repair import Labelled

    data = open_dataset(root, processor, id2label, size)
    picked = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:limit].tolist()
    items = [data[i] for i in picked]
    return Labelled(torch.stack([item["pixel_values"] for item in items]), torch.tensor([int(item["label"]) for item in items]))
