"""A confirmed shortcut: the one description every repair takes.

A :class:`Shortcut` is an :class:`~captum_gmar.exploration.intervention.Intervention` (a
region's mark pasted, a tone curve, a filter, a difference or a texture over the whole image, or a direction
added in the model's features), with the images it was seen on (the cluster's) and the
rest of its class. Where several could put it on (:func:`pixel_proxies`), :func:`confirmed_by`
keeps those the model follows, as one. :func:`carriers` tells which images of its class carry it, as the
original model's features do, and :func:`regroup` groups a cluster's images and the rest of
its class by the same rule before proxies are made from them. How far a model follows it is measured in
:mod:`~captum_gmar.repair.measurement`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..exploration.intervention import Add, Curve, Filter, InPixels, Intervention, OneOf, Paste, Shift, Texture, ways
from ..exploration.transplant import CONFIRMS_BY, mark_mask, region_mask
from ..vit.layers import pooled_patches
from ..vit.model import VisionTransformer
from ..vit.outputs import logit_scores

__all__ = ["Labelled", "Shortcut", "carriers", "confirmed_by", "pixel_proxies", "regroup", "regroup_layers"]


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Shortcut:
    """What a repair removes: how it is put on images, and the images that carry it."""

    #: how the shortcut is put onto images (its class: ``intervention.target``)
    intervention: Intervention
    #: ``(N, C, H, W)``: images that carry it (the cluster's)
    members: Tensor
    #: ``(M, C, H, W)``: the class's images without it (the rest of the class), or ``None``
    rest: Tensor | None = None
    #: the layer whose pooled features told its images from the rest of the class (where a
    #: cluster of the model's features was found, or its images were regrouped:
    #: :func:`regroup`), where :func:`carriers` reads; ``None``: the default
    #: (:func:`~captum_gmar.exploration.features.default_layer`)
    layer: int | None = None
    #: whether :attr:`members` and :attr:`rest` were chosen by their labels (``explain
    #: --target label``), so that the share of each the model calls the class compares
    #: (:meth:`~captum_gmar.repair.measurement.OwnImages.called_less`). Chosen by the model's own call (explain's default,
    #: the prediction), both were called the class before any repair, and images called
    #: so only through the shortcut stop being so when it goes: that is the repair working,
    #: and it is not judged (notebook 04: 79% of the cluster's images called Shirt after the
    #: projection against 100% of the rest, and 89% of the test Shirts with the tag against
    #: 53% without)
    by_label: bool = False

    @property
    def target(self) -> int:
        """The class the shortcut turns images into."""
        return self.intervention.target

    @classmethod
    def of_region(
        cls,
        target: int,
        region: Sequence[tuple[int, int]],
        grid: tuple[int, int],
        members: Tensor,
        rest: Tensor | None = None,
        whole: bool = False,
    ) -> Shortcut:
        """A shortcut in a region of patches (``(row, column)`` of ``grid`` ``(h, w)``):
        the members' pixels pasted where they hold its mark
        (:func:`~captum_gmar.exploration.transplant.mark_mask`), so that the donors'
        objects in the region stay out; the whole region where no rest is given, or with
        ``whole`` (a mark that is not drawn alike on every image, such as a texture the
        objects cover in different places)."""
        size = (members.shape[-2], members.shape[-1])
        mask = region_mask(region, grid, size, members.device)
        return cls(Paste(target, mask if whole else mark_mask(members, rest, mask), members), members, rest)

    @classmethod
    def of_difference(cls, target: int, members: Tensor, rest: Tensor) -> Shortcut:
        """A shortcut with no place put on as its images' mean pixel values less the rest of
        their class's, added to every pixel (:class:`~captum_gmar.exploration.intervention.Add`):
        a proxy of a texture or a cast (docs/repair.md)."""
        return cls(Add.between(target, members, rest), members, rest)

    @classmethod
    def of_curve(cls, target: int, members: Tensor, rest: Tensor) -> Shortcut:
        """A shortcut with no place put on as the tone curve that turns the rest of the
        class's pixel values into its images' (:meth:`~captum_gmar.exploration.intervention.Curve.matching`):
        a proxy of a tint, a cast or a contrast change, anything that changes a pixel by its
        value alone (docs/repair.md)."""
        return cls(Curve.matching(target, members, rest), members, rest)

    @classmethod
    def of_filter(cls, target: int, members: Tensor, rest: Tensor) -> Shortcut:
        """A shortcut with no place put on as the filter that gives the rest of the class its
        images' power spectrum (:meth:`~captum_gmar.exploration.intervention.Filter.matching`):
        a proxy of a blur, anything that changes a pixel by its neighbours (docs/repair.md)."""
        return cls(Filter.matching(target, members, rest), members, rest)

    @classmethod
    def of_texture(cls, target: int, members: Tensor, rest: Tensor) -> Shortcut:
        """A shortcut with no place put on as its images' mean difference plus noise drawn
        afresh on every image, of the power their deviations have beyond the rest of their
        class's (:meth:`~captum_gmar.exploration.intervention.Texture.matching`): a proxy of
        a texture that is not the same on any two images, a grain (docs/repair.md)."""
        return cls(Texture.matching(target, members, rest), members, rest)

    @classmethod
    def one_of(cls, shortcuts: Sequence[Shortcut]) -> Shortcut:
        """One shortcut that several put on (:class:`~captum_gmar.exploration.intervention.OneOf`,
        one of theirs drawn per image), seen on the first one's images, at its layer.

        Raises:
            ValueError: fewer than two; one put on in the features (a direction), not in
                pixels; or as :class:`~captum_gmar.exploration.intervention.OneOf` refuses (of
                different classes, graded beside not graded).
        """
        if len(shortcuts) < 2:
            raise ValueError(f"one_of takes two shortcuts at least, got {len(shortcuts)}")
        # a OneOf given gives its parts: one level, as a projection takes each part's mean
        parts = [part for shortcut in shortcuts for part in ways(shortcut.intervention)]
        in_pixels = [part for part in parts if isinstance(part, InPixels)]
        if len(in_pixels) < len(parts):
            raise ValueError("one_of takes shortcuts put on in pixels, not a direction in the features")
        first = shortcuts[0]
        return cls(OneOf(first.target, tuple(in_pixels)), first.members, first.rest, first.layer, first.by_label)

    @classmethod
    def of_direction(cls, target: int, layer: int, direction: Tensor, members: Tensor, rest: Tensor | None = None) -> Shortcut:
        """A shortcut with no place: ``direction`` ``(D,)`` added to every token that layer
        ``layer`` puts out (:mod:`~captum_gmar.exploration.features`)."""
        return cls(Shift(target, layer, direction), members, rest, layer)


def pixel_proxies(target: int, members: Tensor, rest: Tensor) -> dict[str, Shortcut]:
    """The ways of putting a shortcut of class ``target`` on in pixels over the whole image,
    in words -> :class:`Shortcut`, each made from its images ``members`` ``(N, C, H, W)``
    and the rest of their class ``rest`` ``(M, C, H, W)``: a tone curve, for what changes a
    pixel by its value (a tint, a cast, a contrast change); a filter, for what changes it by
    its neighbours (a blur); the mean difference, for what is added in place (a texture);
    a texture drawn afresh, for what is added at random (a grain).
    A shortcut with no place is put on so (``captum-gmar repair``), and a cluster of maps
    whose mark would be its whole region (:mod:`~captum_gmar.cli.repair_put_on`)."""
    return {
        "a tone curve per channel, the one that turns the rest of the class's pixel values into its images'": Shortcut.of_curve(
            target, members, rest
        ),
        "a filter of each channel's spatial frequencies, the one that gives the rest of the class its images' power spectrum": (
            Shortcut.of_filter(target, members, rest)
        ),
        "its images' mean difference from the rest of the class, added to every pixel": Shortcut.of_difference(target, members, rest),
        "its images' mean difference and noise of the power their deviations have beyond the rest's, drawn afresh on every image": (
            Shortcut.of_texture(target, members, rest)
        ),
    }


@dataclass(frozen=True)
class Labelled:
    """Labelled images: ``pixels`` ``(N, C, H, W)`` and ``labels`` ``int64 (N,)``."""

    pixels: Tensor
    labels: Tensor
    #: ``bool (N,)``: the images clean accuracy counts (those that do not carry the
    #: shortcut: :func:`carriers`); ``None``: all
    counted: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, held_out: float, seed: int) -> tuple[Labelled, Labelled]:
        """A seeded split: (the rest, a held-out share ``held_out`` of every class)."""
        generator = torch.Generator().manual_seed(seed)
        keep = torch.ones(len(self), dtype=torch.bool)
        for label in self.labels.unique():
            rows = torch.nonzero(self.labels == label).flatten()
            rows = rows[torch.randperm(len(rows), generator=generator)]
            count = round(held_out * len(rows))
            keep[rows[: max(count, 1) if len(rows) > 1 else count]] = False  # one at least of a class of two or more
        return Labelled(self.pixels[keep], self.labels[keep]), Labelled(self.pixels[~keep], self.labels[~keep])


def carriers(model: nn.Module, shortcut: Shortcut, images: Labelled, batch_size: int = 64) -> Tensor:
    """``bool (N,)``: which of ``images`` of the shortcut's class carry it, as ``model``
    (the original) tells: their mean patch token at ``shortcut.layer``
    (:func:`~captum_gmar.vit.layers.pooled_patches`, where its images were told apart)
    lies nearer the mean of ``shortcut.members``' than of ``shortcut.rest``'s (nearest
    centroid). Images of other classes, and every image where the shortcut has no rest,
    are taken not to carry it."""
    found = torch.zeros(len(images), dtype=torch.bool)
    own = images.labels == shortcut.target
    if shortcut.rest is None or not len(shortcut.rest) or not own.any():
        return found
    read = _Pooled(model, shortcut.layer, batch_size)
    found[own] = read.nearer(read(shortcut.members), read(shortcut.rest), read(images.pixels[own]))
    return found


def regroup(model: nn.Module, members: Tensor, rest: Tensor, layer: int | None = None, batch_size: int = 64) -> Tensor:
    """``bool (N + M,)`` on the host: for a cluster's images ``members`` ``(N, C, H, W)``
    then the rest of their class ``rest`` ``(M, C, H, W)``, whether the image goes with the
    members: it lies nearer their mean than the rest's in ``model``'s features, as
    :func:`carriers` tells (its mean patch token at ``layer``, the default where ``None``).
    A cluster of maps can hold images that do not carry the shortcut: on a planted noise
    model (docs/repair.md), 8 of the 64 of AttnLRP's cluster's images read lay nearer the
    rest, 7 of them without the noise; the difference of all 64 raised the class by +0.693
    on held-out images of other classes, that of the 56 left by +0.871, and projected out,
    the first removed 80% of the drawn noise and the second 97%. Where fewer than two are,
    or would be left, on either side, the grouping as given."""
    given = torch.arange(len(members) + len(rest)) < len(members)
    if min(len(members), len(rest)) < 2:
        return given
    read = _Pooled(model, layer, batch_size)
    inside, outside = read(members), read(rest)
    near = read.nearer(inside, outside, torch.cat([inside, outside]))
    return given if min(int(near.sum()), int((~near).sum())) < 2 else near


def regroup_layers(num_layers: int) -> tuple[int, ...]:
    """The layers, counting from 0, at which ``captum-gmar repair`` tries :func:`regroup`
    before it keeps the grouping whose proxies raise the class most: a third, half and two
    thirds (the default, :func:`~captum_gmar.exploration.features.default_layer`) of the
    way up, 2, 3 and 4 of vit-tiny's 0 to 5, 4, 6 and 8 of 0 to 11. The default is not
    always the layer that groups a shortcut's images best: of a DINOv2-S/14 probe's
    colour-cast cluster of the features (60 images read, 42 with the cast; 6 more among the
    rest's 64), the regrouping at layer 4 put all 48 with the cast among 62, at layer 8 46
    among 66, at layer 11 33 among 66, and their strongest proxies raised the class by
    +0.399, +0.351 and +0.110 (docs/repair.md, "Which layer groups them")."""
    from ..exploration.features import default_layer

    return tuple(sorted({num_layers // 3, num_layers // 2, default_layer(num_layers)}))


class _Pooled:
    """``model``'s mean patch token at ``layer`` (the default where ``None``), read in
    batches: ``(N, D)`` on the host for ``(N, C, H, W)`` pixels."""

    def __init__(self, model: nn.Module, layer: int | None, batch_size: int) -> None:
        from ..exploration.features import default_layer

        self.vit = VisionTransformer(model.eval())
        self.layer = default_layer(self.vit.num_layers) if layer is None else layer
        self.batch_size = batch_size

    def __call__(self, pixels: Tensor) -> Tensor:
        device, size = self.vit.parameter.device, self.batch_size
        with torch.no_grad():
            return torch.cat(
                [pooled_patches(self.vit, pixels[i : i + size].to(device), self.layer).cpu() for i in range(0, len(pixels), size)]
            )

    @staticmethod
    def nearer(inside: Tensor, outside: Tensor, features: Tensor) -> Tensor:
        """``bool (P,)``: which of ``features`` ``(P, D)`` lie nearer the mean of ``inside``'s than of ``outside``'s."""
        return (features - inside.mean(0)).norm(dim=1) < (features - outside.mean(0)).norm(dim=1)


def confirmed_by(
    shortcuts: Sequence[Shortcut], model: nn.Module, images: Tensor, at_least: float = CONFIRMS_BY, batch_size: int = 64, seed: int = 0
) -> tuple[Shortcut | None, list[float]]:
    """Of several ways of putting one shortcut on (proxies of a shortcut with no place), those
    that raise its class by ``at_least`` on ``images`` ``(N, C, H, W)`` of other classes, as
    one shortcut, the one that raises it most first (:meth:`Shortcut.one_of`; the one
    itself where only one does; ``None`` where none does), one drawn afresh on every image
    (:attr:`~captum_gmar.exploration.intervention.Intervention.drawn`: a texture,
    :meth:`Shortcut.of_texture`) only where none of the others does; and each one's rise, in the
    order given
    (:meth:`~captum_gmar.exploration.intervention.Intervention.rises`). A repair then removes
    what every one of them changes: the one that raises the class most is not always the
    one nearest the shortcut (on the DINOv2 colour-cast probe, the mean
    difference raised it by +0.310 and the tone curve by +0.239, and projected out, the
    tone curve's directions removed 78% of the drawn cast and the difference's 51%;
    docs/results.md).

    Raises:
        ValueError: no shortcut, or no image.
    """
    if not shortcuts or not len(images):
        raise ValueError("confirmed_by needs shortcuts and images of other classes to put them on")
    vit = VisionTransformer(model.eval())
    scores = logit_scores(vit)
    with torch.no_grad():
        plain = torch.cat(
            [scores(vit.logits(images[i : i + batch_size].to(vit.parameter.device)).float()) for i in range(0, len(images), batch_size)]
        )
    rises = [float(s.intervention.rises(vit, images, scores, seed, batch_size, plain[:, s.target]).mean()) for s in shortcuts]
    order = sorted(range(len(rises)), key=lambda i: -rises[i])  # the strongest first: a projection takes its mean change first
    kept = [shortcuts[i] for i in order if rises[i] >= at_least]
    # one drawn afresh only where no fixed proxy confirms: beside one, a texture's noise's
    # directions go into the projection too (on a planted noise model, beside the mean
    # difference, 87% of the drawn noise removed at +0.1 points; the difference alone: 98% at -0.9)
    kept = [s for s in kept if not s.intervention.drawn] or kept
    return (Shortcut.one_of(kept) if len(kept) > 1 else kept[0] if kept else None), rises
