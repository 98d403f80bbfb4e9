"""How ``captum-gmar repair`` puts a found cluster on (:mod:`.repair_shortcut` finds it):
a cluster of maps as its mark, or its whole region; where that would be its whole region,
and for a cluster of the model's features, as its images' pixel proxies that raise the
class on other classes' images, made from the grouping of its images (by the model's
features, at a few layers) whose proxies put on raise it most; and the cluster as the
command reports it (:class:`Found`), which each step passes on with what it adds."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .options import CommandError


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


def confirming_proxies(found: Found, model: Any, data: Any, seed: int, members: Any, rest: Any) -> tuple[Found, Any]:
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


def mark_or_proxies(found: Found, model: Any, data: Any, seed: int, pastes: dict[str, Any], members: Any, rest: Any) -> tuple[Found, Any]:
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
