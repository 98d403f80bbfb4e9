"""What ``captum-gmar repair`` removes: the cluster ``--cluster`` names, found again in the
maps folder as explore found it (a method's cluster, its region's mark pasted, or where it
would paste its whole region, its images' pixel proxies that confirm it; or
``features:CLASS:RANK``, a cluster of the model's features put on through the pixel proxies
that confirm it), checked by the model before any image is read for the repair (the gate),
and the labelled ``--data`` images it is measured on. Each is refused in one line."""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .maps_options import RepairOptions, cluster_and_model, load_model_of
from .options import CommandError

if TYPE_CHECKING:
    import numpy as np

    from ..exploration.transplant import Transplant


@dataclass(frozen=True)
class Found:
    """The cluster a repair removes, as the command reports it."""

    target: int
    target_name: str
    size: int
    #: whether the model confirms it as a shortcut, as explore's page flags it (its transplant;
    #: for a cluster of features, no place and its direction or a proxy); ``None``: it could
    #: not be checked (no other class's images)
    confirmed: bool | None
    #: the check, in words and figures (or why it could not run)
    evidence: str
    #: what a repair of it removes where the model does not confirm it, in words
    removes: str
    #: where or how it is put on, in words ("region of 2 patches in rows 0–2, column 0")
    where: str
    #: how the measurement puts it on, in words
    put_on: str
    #: what ``repair.json`` records of it
    recorded: dict[str, Any]


def read_shortcut(options: RepairOptions) -> tuple[Found, Any, Any, Any, Any]:
    """What a repair of ``options`` starts from, each refused in one line: the cluster, the
    model, its image processor, the :class:`~captum_gmar.repair.Shortcut` (up to 64 of the
    cluster's images, and of the rest: a cluster of maps' mark, or its images' pixel proxies
    where it would paste its whole region, :func:`_mark_or_proxies`) and the labelled
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
        choose = functools.partial(_confirming_proxies, members=members, rest=rest)
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
        choose = functools.partial(_mark_or_proxies, pastes=pastes, members=images.members, rest=images.others)
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


#: how a cluster of maps is pasted, in words: its mark, else its whole region (:func:`_mark_or_region`)
PASTES = ("the shortcut's mark (the region's pixels its images share) pasted", "the whole region of the cluster's images pasted")


def _other_images(found: Found, data: Any, seed: int) -> Any:
    """``(64, C, H, W)`` at most: ``data``'s images of other classes than ``found``'s, drawn
    from those the repair trains on (its held-out fifth, which measures the repair, stays out)."""
    import torch

    from ..repair import HELD_OUT

    train, _ = data.split(HELD_OUT, seed)  # as repair() splits it
    others = torch.nonzero(train.labels != found.target).flatten()
    return train.pixels[others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:64]].sort().values]


def _mark_or_region(found: Found, proxies: dict[str, Any], model: Any, data: Any, seed: int) -> tuple[Found, Any]:
    """A cluster of maps put on as its mark (:data:`PASTES`' first), where the mark alone
    raises the class by ``CONFIRMS_BY`` on other classes' images (:func:`_other_images`);
    else as its whole region, which the transplant that confirmed it pasted. A mark is the
    region's pixels the cluster's images share, and a texture the objects cover in
    different places leaves few of them: on a planted noise model, 6 pixels whose paste
    raised the class by +0.000, where the region's held-out rise was +0.741 (docs/repair.md).
    ``found.recorded`` gains ``pasted`` (``"mark"`` or ``"region"``), and ``mark_rise`` and
    ``mark_pixels`` where the mark is not the whole region."""
    from ..exploration.transplant import CONFIRMS_BY
    from ..repair import confirmed_by

    mark, region = proxies.values()
    if mark.intervention.mask.equal(region.intervention.mask):  # no pixel singled out, or every one: the mark is the region
        put_on = f"{PASTES[1]} (its mark, the pixels its images share, is all of it)"
        return dataclasses.replace(found, put_on=put_on, recorded={**found.recorded, "pasted": "region"}), region
    _, (rise,) = confirmed_by([mark], model, _other_images(found, data, seed), CONFIRMS_BY, seed=seed)
    recorded = {**found.recorded, "mark_rise": rise, "mark_pixels": int(mark.intervention.mask.sum())}
    if rise >= CONFIRMS_BY:
        return dataclasses.replace(found, recorded={**recorded, "pasted": "mark"}), mark
    put_on = f"{PASTES[1]} (its mark, {recorded['mark_pixels']} pixels, raised the class by {rise:+.3f}, below {CONFIRMS_BY})"
    return dataclasses.replace(found, put_on=put_on, recorded={**recorded, "pasted": "region"}), region


def _confirming_proxies(found: Found, model: Any, data: Any, seed: int, members: Any, rest: Any) -> tuple[Found, Any]:
    """A cluster of the model's features put on through its images' pixel proxies
    (:func:`_regrouped`: ``members``, up to 64 of its images, against ``rest``, the rest of
    its class) that raise its class by ``CONFIRMS_BY`` on up to 64 of ``data``'s images of
    other classes (:func:`_other_images`), as one shortcut
    (:func:`~captum_gmar.repair.confirmed_by`); ``found`` with it and every proxy's rise.
    Refused where none does."""
    from ..exploration.transplant import CONFIRMS_BY

    others = _other_images(found, data, seed)
    found, shortcut, words, moved = _regrouped(found, model, members, rest, others, seed, found.recorded["layer"])
    if shortcut is None:  # a fine-tune would remove what the model does not follow
        tried = " and by ".join(f"{p['rise']:+.3f} with {p['put_on'].split(',')[0]}" for p in found.recorded["proxies"])
        groupings = found.recorded["groupings"]
        grouped = f"layer {found.recorded['grouped_at']}" + (
            f", the strongest of the groupings at layers {', '.join(str(g['grouped_at']) for g in groupings)}" if len(groupings) > 1 else ""
        )
        raise CommandError(
            f"no proxy of the cluster raises the class {found.target_name!r} enough to repair: on {len(others)} training images of "
            f"other classes, its images as the model's features group them at {grouped}, it rises by {tried}, below the "
            f"{CONFIRMS_BY} that confirms a shortcut; a repair cannot remove what it cannot put on (docs/repair.md)"
        )
    put_on = f"{words} ({moved})" if moved else words
    return dataclasses.replace(found, where=f"{found.where}: {words}", put_on=put_on), shortcut


def _mark_or_proxies(found: Found, model: Any, data: Any, seed: int, pastes: dict[str, Any], members: Any, rest: Any) -> tuple[Found, Any]:
    """A cluster of maps put on as its mark (:func:`_mark_or_region`: ``pastes``, its mark
    and its whole region); where that pastes its whole region (the mark fills it, or raises
    the class by less than ``CONFIRMS_BY``), as its images' pixel proxies that raise the
    class by ``CONFIRMS_BY`` on up to 64 of ``data``'s training images of other classes, one
    drawn per image where several do, in place of the region (:func:`_regrouped`:
    ``members``, up to 64 of the cluster's images, against ``rest``, the rest of its class);
    the region where none does. The region is a patch of what its images share, at one
    place; the proxies are made over the whole image. On two planted noise models (a
    texture over the background; docs/repair.md), through AttnLRP's cluster, the projection
    through the whole region removed 93% and 93% of the drawn noise's effect at -1.2 and
    -1.6 points of clean top-1, through its images' mean difference (as the maps grouped
    them) 98% and 101% at -0.9 and -0.5. ``found.recorded`` gains each proxy's rise
    (``proxies``) and each grouping's (``groupings``), and where they are put on,
    ``pasted`` is ``"proxies"``."""
    found, shortcut = _mark_or_region(found, pastes, model, data, seed)
    if found.recorded["pasted"] != "region":
        return found, shortcut
    regrouped, confirmed, words, moved = _regrouped(found, model, members, rest, _other_images(found, data, seed), seed)
    if confirmed is None:
        tried = {key: regrouped.recorded[key] for key in ("proxies", "groupings")}
        return dataclasses.replace(found, recorded={**found.recorded, **tried}), shortcut
    put_on = f"{words} (in place of its whole region pasted{'; ' if moved else ''}{moved})"
    recorded = {**regrouped.recorded, "pasted": "proxies"}
    return dataclasses.replace(found, where=f"{found.where}: {words}", put_on=put_on, recorded=recorded), confirmed


def _regrouped(
    found: Found, model: Any, members: Any, rest: Any, others: Any, seed: int, found_at: int | None = None
) -> tuple[Found, Any | None, str, str]:
    """The pixel proxies (:func:`~captum_gmar.repair.pixel_proxies`) of a cluster's images
    ``members`` ``(N, C, H, W)`` against the rest of its class ``rest`` ``(M, C, H, W)``,
    those that raise the class by ``CONFIRMS_BY`` on ``others`` as one shortcut, in words
    (:func:`_confirmed`), made from the images as the model's features group them: each put
    with the group it lies nearer at each layer of
    :func:`~captum_gmar.repair.shortcut.regroup_layers` and at ``found_at``, the layer a
    cluster of the features was found at (:func:`~captum_gmar.repair.regroup`; a cluster
    can hold images that do not carry the shortcut, and miss some that do), each grouping
    once, at the lowest layer that makes it. Kept: the grouping whose proxies put on
    raise the class most (the strongest of those :func:`~captum_gmar.repair.confirmed_by`
    keeps; of all, where it keeps none), the first of equals. Its layer is where
    :func:`~captum_gmar.repair.carriers` then tells the carriers apart. The grouping as
    given is not among them, where it differs: on the untouched bundled model forced
    through a cluster that is no shortcut (docs/repair.md), the mean difference of the
    images as the maps grouped them raised the class by +0.253, and the projection through
    it cost 1.2 points; regrouped, no proxy confirmed. ``found.recorded`` gains the kept
    grouping's proxies' rises (``proxies``) and every grouping's layer, images and rise
    (``groupings``) and its layer (``grouped_at``), and where a proxy confirms,
    ``proxy_images``, ``left_out`` and ``joined`` (how many of the cluster's images it
    leaves out and of the rest's it puts with them); and in words, how it moved images
    ("" where it moved none)."""
    import torch

    from ..repair import pixel_proxies, regroup
    from ..repair.shortcut import regroup_layers
    from ..vit.model import VisionTransformer

    count, both = len(members), torch.cat([members, rest])
    layers = sorted({*regroup_layers(VisionTransformer(model).num_layers), *([] if found_at is None else [found_at])})
    groupings: list[tuple[int, Any]] = []  # (layer, whether each image goes with the members)
    for layer in layers:
        near = regroup(model, members, rest, layer)
        if not any(near.equal(seen) for _, seen in groupings):
            groupings.append((layer, near))
    tried = []
    for layer, near in groupings:
        proxies = pixel_proxies(found.target, both[near], both[~near]).items()
        confirmed = _confirmed(found, {words: dataclasses.replace(proxy, layer=layer) for words, proxy in proxies}, model, others, seed)
        tried.append((_put_on_rise(confirmed[0].recorded["proxies"]), layer, near, confirmed))
    _, layer, near, (found, shortcut, words) = max(tried, key=lambda t: t[0])  # the first of equals
    # a rise that is no number is recorded as none (JSON has no infinity)
    groups = {
        "groupings": [{"grouped_at": at, "images": int(n.sum()), "rise": r if math.isfinite(r) else None} for r, at, n, _ in tried],
        "grouped_at": layer,
    }
    if shortcut is None:
        return dataclasses.replace(found, recorded={**found.recorded, **groups}), None, words, ""
    left, joined = int((~near[:count]).sum()), int(near[count:].sum())
    said = ((left, f"{left} of the {count} of its images read left out"), (joined, f"{joined} of the rest's {len(rest)} put with them"))
    moved = " and ".join(words for many, words in said if many)
    moved = f"{moved}, nearer the other group in the model's features at layer {layer}" if moved else ""
    recorded = {**groups, "proxy_images": int(near.sum()), "left_out": left, "joined": joined}
    return dataclasses.replace(found, recorded={**found.recorded, **recorded}), shortcut, words, moved


def _put_on_rise(proxies: list[dict[str, Any]]) -> float:
    """What a grouping is judged by: the strongest rise of the proxies put on
    (:func:`_confirmed`'s record, ``kept``), of all where none is; a rise that is not a
    number counts as none. A texture drawn afresh can rise most and not be put on, where a
    fixed proxy confirms beside it (:func:`~captum_gmar.repair.confirmed_by`)."""
    rises = [p["rise"] for p in proxies if p["kept"]] or [p["rise"] for p in proxies]
    return max((rise for rise in rises if rise == rise), default=float("-inf"))


def _confirmed(found: Found, proxies: dict[str, Any], model: Any, others: Any, seed: int) -> tuple[Found, Any | None, str]:
    """Of ``proxies`` (words -> :class:`~captum_gmar.repair.Shortcut`), those that raise the
    class by ``CONFIRMS_BY`` on ``others`` ``(N, C, H, W)``, training images of other
    classes (:func:`_other_images`), as one shortcut (:func:`~captum_gmar.repair.confirmed_by`;
    ``None`` where none does), in words; ``found`` records every proxy's rise and whether it
    was kept (``repair.json``'s ``proxies``)."""
    from ..exploration.intervention import ways
    from ..exploration.transplant import CONFIRMS_BY
    from ..repair import confirmed_by

    shortcut, rises = confirmed_by(list(proxies.values()), model, others, CONFIRMS_BY, seed=seed)
    parts = () if shortcut is None else ways(shortcut.intervention)
    named = {id(proxy.intervention): w for w, proxy in proxies.items()}
    words = "; or ".join(named[id(part)] for part in parts)  # in the order confirmed_by keeps them
    words = f"one of, drawn per image: {words}" if len(parts) > 1 else words
    kept = {id(part) for part in parts}
    recorded = {
        **found.recorded,
        "proxies": [{"put_on": w, "rise": r, "kept": id(p.intervention) in kept} for (w, p), r in zip(proxies.items(), rises, strict=True)],
    }
    return dataclasses.replace(found, recorded=recorded), shortcut, words


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
        "",  # the proxies the model follows (_confirming_proxies)
        recorded,
    )
    if not followed_in_place:  # refused above, or let through by --force
        _gate(options, found_cluster)
    names = [first.image[int(r)] for r in groups[target]]
    inside = strategies.labels == cluster.label
    # put on through the images' pixels, not the direction in the features (on the
    # strong-tint model a fine-tune against the direction removed 95% of the direction's
    # rise and none of the drawn tint's effect): a tone curve, a filter, a difference or a texture,
    # each that the model follows (_confirming_proxies; docs/repair.md)
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
