"""Every way the audit puts a shortcut onto images, behind one interface.

A shortcut is tested, measured and repaired by the same act: put it onto images and see
what the model says. :class:`Intervention` is that act:

- :class:`Paste`: pixels pasted from the shortcut's images, under a mask: a region of
  patches (:func:`~captum_gmar.exploration.transplant.region_mask`) or the mark inside it
  (:func:`~captum_gmar.exploration.transplant.mark_mask`);
- :class:`Add`: a difference added to every pixel (the shortcut's images' mean less the
  rest of their class's), for a shortcut with no place that adds to the image (a cast, a
  texture);
- :class:`Curve`: every pixel value mapped through a tone curve of its channel, the one
  that turns the rest of the class's values into the shortcut's images' (histogram
  matching), for a shortcut with no place that changes every pixel by its value (a tint,
  a cast, a contrast change);
- :class:`Filter`: every image filtered, a gain per channel and spatial frequency, the one
  that gives the rest of the class's images the shortcut's images' power spectrum
  (spectrum matching), for a shortcut with no place that changes a pixel by its
  neighbours (a blur, a sharpening);
- :class:`Texture`: the shortcut's images' mean difference plus noise drawn afresh on every
  image, with the power by which their deviations from their mean exceed the rest of their
  class's (the first two moments matched), for a texture that is not the same on any two
  images (a grain), which averages out of the mean difference and which no filter makes of a
  black background;
- :class:`Shift`: a direction added to every token one layer puts out
  (:func:`~captum_gmar.vit.layers.tokens_shifted`), for a shortcut with no place
  (:mod:`~captum_gmar.exploration.features`);
- :class:`OneOf`: one of several of those in pixels (:class:`InPixels`: all but
  :class:`Shift`) drawn per image, for a shortcut that more than one of them puts on (the
  proxies of a shortcut with no place that each confirm it).

:meth:`Intervention.logits` is the model's output on a batch with the intervention on the
images chosen, at a strength chosen per image where it is :attr:`~Intervention.graded`,
through which a fine-tune trains (:func:`~captum_gmar.repair.finetune.repair_finetune`);
:meth:`Intervention.rises` is the class's score rise on each of a batch of images of other
classes, whose mean every repair is judged by
(:func:`~captum_gmar.repair.measurement.measure`). A new kind of intervention is one class
here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..vit.layers import tokens_shifted
from ..vit.model import VisionTransformer
from .transplant import paste_region

__all__ = ["MAX_GAIN", "Add", "Curve", "Filter", "InPixels", "Intervention", "OneOf", "Paste", "Shift", "Texture", "ways"]

#: the largest gain :meth:`Filter.matching` gives a frequency: where the rest of the class has
#: almost no power, the ratio of two small means is mostly their noise
MAX_GAIN = 4.0


class Intervention(ABC):
    """Puts a shortcut of class :attr:`target` onto images."""

    target: int
    #: whether it can be put on at any strength (a difference, a tone curve, a direction:
    #: its change of the pixels or of the tokens scaled), or only whole (a paste); a new
    #: kind that scales by ``applied`` sets it, so that a fine-tune draws its strengths
    graded: ClassVar[bool] = False
    #: whether it draws its change afresh for every image (a texture's noise), so that what it
    #: does to one image is not what it does to the next: its rises on images of other
    #: classes then cancel in their mean, and a repair follows their root mean square
    #: (:func:`~captum_gmar.repair.measurement.while_it_falls`)
    drawn: ClassVar[bool] = False

    @abstractmethod
    def logits(self, vit: VisionTransformer, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        """The logits ``(B, K)`` of ``pixel_values`` ``(B, C, H, W)`` (on the model's
        device) with the intervention on each image at the strength ``applied`` gives it
        (``(B,)``, bool or float: 0 or ``False`` leaves the image as it is, 1 or ``True``
        puts the intervention on; a :attr:`graded` one scales the change by any other
        value, one that is not puts it on whole wherever the value is above 0); what it
        draws (donors) from ``generator``. Differentiable: no ``no_grad``."""

    @abstractmethod
    def describe(self) -> str:
        """What is put on, in words."""

    def rises(
        self,
        vit: VisionTransformer,
        images: Tensor,
        scores: Callable[[Tensor], Tensor],
        seed: int = 0,
        batch_size: int = 64,
        plain: Tensor | None = None,
    ) -> Tensor:
        """The class's score rise on each of ``images`` ``(N, C, H, W)`` (of other classes)
        with the intervention on: ``(N,)`` float64 on the host (empty without images: its
        mean is then NaN); ``scores`` turns logits into scores
        (:func:`~captum_gmar.vit.outputs.logit_scores`); ``plain``, the class's scores
        ``(N,)`` on the images as they are where already known (else scored here)."""
        generator = torch.Generator().manual_seed(seed)
        device = vit.parameter.device
        rises = [torch.zeros(0, dtype=torch.float64)]
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size].to(device)
                on = scores(self.logits(vit, x, torch.ones(len(x), dtype=torch.bool, device=device), generator).float())
                off = scores(vit.logits(x).float())[:, self.target] if plain is None else plain[start : start + batch_size].to(device)
                rises.append((on[:, self.target] - off).double().cpu())
        return torch.cat(rises)


class InPixels(Intervention):
    """An intervention that changes the images' pixels alone (every kind but :class:`Shift`):
    the model then runs once on the changed batch."""

    @abstractmethod
    def put_on(self, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        """``pixel_values`` ``(B, C, H, W)`` with the intervention on each image at the
        strength ``applied`` gives it, as :meth:`Intervention.logits` takes it. Differentiable."""

    def logits(self, vit: VisionTransformer, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        return vit.logits(self.put_on(pixel_values, applied, generator))


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Paste(InPixels):
    """Pixels under :attr:`mask` taken from one of :attr:`donors`, drawn per image."""

    target: int
    #: ``float (1, 1, H, W)``: 1 where pixels are pasted
    mask: Tensor
    #: ``(N, C, H, W)``: the images the pixels are cut from (the shortcut's cluster)
    donors: Tensor
    #: a mark is pasted whole: half a mark is another mark
    graded: ClassVar[bool] = False

    def put_on(self, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        drawn = self.donors[torch.randint(len(self.donors), (len(pixel_values),), generator=generator)]
        pasted = paste_region(pixel_values, drawn.to(pixel_values.device), self.mask.to(pixel_values.device))
        return torch.where(applied.to(pixel_values.device)[:, None, None, None] > 0, pasted, pixel_values)

    def describe(self) -> str:
        return f"{int(self.mask.sum())} pixels pasted from {len(self.donors)} images"


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Add(InPixels):
    """:attr:`difference` added to every image's pixel values."""

    target: int
    #: ``(1, C, H, W)``, in the model's pixel values (after its processor's normalisation)
    difference: Tensor
    graded: ClassVar[bool] = True

    @classmethod
    def between(cls, target: int, members: Tensor, rest: Tensor) -> Add:
        """The mean of ``members`` ``(N, C, H, W)`` less the mean of ``rest`` ``(M, C, H, W)``:
        both hold images of one class, so what they show cancels and what tells them apart stays."""
        return cls(target, (members.float().mean(0) - rest.float().mean(0).to(members.device))[None])

    def put_on(self, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        added = applied.to(pixel_values.device, pixel_values.dtype)[:, None, None, None] * self.difference.to(pixel_values)
        return pixel_values + added

    def describe(self) -> str:
        return f"a difference of mean {float(self.difference.abs().mean()):.3f} added to every pixel"


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Curve(InPixels):
    """Every pixel value mapped through its channel's tone curve: piecewise linear between
    :attr:`values` at levels evenly spaced from :attr:`low` to :attr:`high`, and shifted as
    the curve's ends are outside them."""

    target: int
    #: ``(C,)``: each channel's first level
    low: Tensor
    #: ``(C,)``: each channel's last level
    high: Tensor
    #: ``(C, K)``: what each channel's ``K`` levels become
    values: Tensor
    graded: ClassVar[bool] = True

    @classmethod
    def matching(cls, target: int, members: Tensor, rest: Tensor, levels: int = 256) -> Curve:
        """The curve that turns the values of ``rest`` ``(M, C, H, W)`` into those of
        ``members`` ``(N, C, H, W)``, channel by channel (histogram matching): a level ``v``
        becomes the members' quantile at the share of the rest's values below ``v`` (half
        of those equal to it counted, so that a mass of one value, a black background, maps
        to the middle of what it becomes). Both hold images of one class, so what they
        show cancels and what tells them apart stays."""
        members, rest = members.float(), rest.float().to(members.device)
        channels = members.shape[1]
        ours = members.transpose(0, 1).reshape(channels, -1).sort(dim=1).values
        # contiguous for searchsorted: pixel values made from (H, W, C) arrays are channels
        # last, and the sort keeps their strides
        theirs = rest.transpose(0, 1).reshape(channels, -1).sort(dim=1).values.contiguous()
        low, high = theirs[:, 0], theirs[:, -1]
        steps = torch.linspace(0, 1, levels, device=members.device)
        grid = low[:, None] + steps[None] * (high - low)[:, None]  # (C, K)
        below = torch.searchsorted(theirs, grid, right=False) + torch.searchsorted(theirs, grid, right=True)
        share = below.float() / (2 * theirs.shape[1])  # (C, K) in [0, 1]
        at = share * (ours.shape[1] - 1)
        lower = at.floor().long().clamp(max=ours.shape[1] - 1)
        upper = (lower + 1).clamp(max=ours.shape[1] - 1)
        weight = at - lower
        values = ours.gather(1, lower) * (1 - weight) + ours.gather(1, upper) * weight
        return cls(target, low, high, values)

    def mapped(self, pixel_values: Tensor) -> Tensor:
        """``pixel_values`` ``(B, C, H, W)`` through the curve."""
        low, high, values = (t.to(pixel_values) for t in (self.low, self.high, self.values))
        batch, channels = pixel_values.shape[:2]
        levels = values.shape[1]
        flat = pixel_values.reshape(batch, channels, -1)
        span = (high - low).clamp(min=torch.finfo(flat.dtype).tiny)[None, :, None]
        at = ((flat - low[None, :, None]) / span * (levels - 1)).clamp(0, levels - 1)
        lower = at.floor().long().clamp(max=levels - 2)
        table = values[None].expand(batch, -1, -1)
        on = torch.lerp(table.gather(2, lower), table.gather(2, lower + 1), at - lower)
        # beyond the levels, the value keeps its distance from the nearest end
        on = on + (flat - high[None, :, None]).clamp(min=0) + (flat - low[None, :, None]).clamp(max=0)
        return on.reshape(pixel_values.shape)

    def put_on(self, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        strength = applied.to(pixel_values.device, pixel_values.dtype)[:, None, None, None]
        return pixel_values + strength * (self.mapped(pixel_values) - pixel_values)

    def describe(self) -> str:
        levels = torch.linspace(0, 1, self.values.shape[1], device=self.values.device)
        identity = self.low[:, None] + levels[None] * (self.high - self.low)[:, None]
        return f"a tone curve per channel that moves a pixel value by {float((self.values - identity).abs().mean()):.3f} on average"


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Filter(InPixels):
    """Every image's channels filtered: each spatial frequency of its discrete Fourier
    transform (``torch.fft.rfft2``, so circular at the borders) scaled by :attr:`gain`."""

    target: int
    #: ``(C, H, W // 2 + 1)``: each channel's gain at each frequency of ``rfft2``, 1 at
    #: frequency 0 (a filter keeps the image's mean, so it commutes with the processor's
    #: normalisation); at strength ``s`` each gain is raised to the power ``s``
    gain: Tensor
    #: ``(H, W)``: the size of the images it filters
    size: tuple[int, int]
    graded: ClassVar[bool] = True

    @classmethod
    def matching(cls, target: int, members: Tensor, rest: Tensor) -> Filter:
        """The filter that gives ``rest`` ``(M, C, H, W)`` the power spectrum of ``members``
        ``(N, C, H, W)`` (spectrum matching): at each frequency of each channel, the square
        root of the members' mean power over the rest's, at most :data:`MAX_GAIN`. For a
        blur this is its transfer function. Both hold images of one class, so what they show
        cancels and what tells them apart stays.

        Raises:
            ValueError: the two are not images of one size.
        """
        if members.shape[1:] != rest.shape[1:]:
            raise ValueError(f"a filter is matched between images of one size, got {tuple(members.shape[1:])} and {tuple(rest.shape[1:])}")
        members, rest = members.float(), rest.float().to(members.device)
        power = [torch.fft.rfft2(images).abs().square().mean(0) for images in (members, rest)]  # (C, H, W // 2 + 1)
        tiny = torch.finfo(torch.float32).tiny
        gain = (power[0] / power[1].clamp(min=tiny)).sqrt().clamp(max=MAX_GAIN)
        gain[:, 0, 0] = 1.0
        return cls(target, gain, (members.shape[-2], members.shape[-1]))

    def filtered(self, pixel_values: Tensor, strength: Tensor) -> Tensor:
        """``pixel_values`` ``(B, C, H, W)`` filtered at ``strength`` ``(B,)`` (0: as they are).

        Raises:
            ValueError: images of another size than the filter's.
        """
        height, width = pixel_values.shape[-2:]
        if (height, width) != tuple(self.size):
            raise ValueError(f"the filter was matched on images of {self.size[0]} x {self.size[1]}, not {height} x {width}")
        gain = self.gain.to(pixel_values.device)[None] ** strength.to(pixel_values.device, torch.float32)[:, None, None, None]
        spectrum = torch.fft.rfft2(pixel_values.float()) * gain
        return torch.fft.irfft2(spectrum, s=(height, width)).to(pixel_values.dtype)

    def put_on(self, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        return self.filtered(pixel_values, applied.float())

    def describe(self) -> str:
        rows = torch.fft.fftfreq(self.size[0], device=self.gain.device)[:, None]
        columns = torch.fft.rfftfreq(self.size[1], device=self.gain.device)[None]
        upper = (rows.square() + columns.square()).sqrt() > 0.25  # above half the highest frequency along an axis
        return f"a filter of each channel's spatial frequencies that scales the upper half of them by {float(self.gain[:, upper].mean()):.2f} on average"


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Texture(InPixels):
    """:attr:`mean` plus Gaussian noise drawn afresh on every image, of power
    :attr:`amplitude` squared at each spatial frequency of its discrete Fourier transform
    (circular at the borders), from one white field for every channel, so that a grey grain
    stays grey (fields drawn apart per channel would add a colour the images lack)."""

    target: int
    #: ``(1, C, H, W)``: the difference added under the noise (its images' mean less the rest's)
    mean: Tensor
    #: ``(C, H, W // 2 + 1)``: each channel's noise amplitude at each frequency of ``rfft2``,
    #: per unit of white noise; 0 at frequency 0 (the mean is :attr:`mean`'s)
    amplitude: Tensor
    graded: ClassVar[bool] = True
    drawn: ClassVar[bool] = True

    @classmethod
    def matching(cls, target: int, members: Tensor, rest: Tensor) -> Texture:
        """The texture that gives ``rest`` ``(M, C, H, W)`` the first two moments of
        ``members`` ``(N, C, H, W)``: their mean difference, and noise of the power by which
        the members' deviations from their mean exceed the rest's, at each frequency of each
        channel (none where they fall short). Both hold images of one class, so what they
        show cancels and what tells them apart stays.

        Raises:
            ValueError: the two are not images of one size.
        """
        if members.shape[1:] != rest.shape[1:]:
            raise ValueError(f"a texture is matched between images of one size, got {tuple(members.shape[1:])} and {tuple(rest.shape[1:])}")
        members, rest = members.float(), rest.float().to(members.device)
        power = [torch.fft.rfft2(images - images.mean(0)).abs().square().mean(0) for images in (members, rest)]
        extra = (power[0] - power[1]).clamp(min=0)
        extra[:, 0, 0] = 0.0
        height, width = members.shape[-2:]
        # white noise of unit variance has a power of H * W at every frequency
        return cls(target, (members.mean(0) - rest.mean(0))[None], (extra / (height * width)).sqrt())

    def noise(self, count: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
        """``(count, C, H, W)`` float: the noise, drawn from ``generator`` (on the host).

        Raises:
            ValueError: a size other than the images' it was matched on.
        """
        height, width = size
        if (self.mean.shape[-2], self.mean.shape[-1]) != (height, width):
            raise ValueError(f"the texture was matched on images of {self.mean.shape[-2]} x {self.mean.shape[-1]}, not {height} x {width}")
        white = torch.randn((count, 1, height, width), generator=generator)
        return torch.fft.irfft2(torch.fft.rfft2(white.to(self.amplitude.device)) * self.amplitude[None], s=(height, width))

    def put_on(self, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        drawn = self.noise(len(pixel_values), (pixel_values.shape[-2], pixel_values.shape[-1]), generator).to(pixel_values)
        strength = applied.to(pixel_values.device, pixel_values.dtype)[:, None, None, None]
        return pixel_values + strength * (self.mean.to(pixel_values) + drawn)

    def describe(self) -> str:
        height, width = self.mean.shape[-2:]
        # a pixel's variance is the power's sum over every frequency over H * W; in the
        # one-sided spectrum every column but the first (and the last of an even width) stands for two
        twice = torch.full((self.amplitude.shape[-1],), 2.0, device=self.amplitude.device)
        twice[0] = 1.0
        if width % 2 == 0:
            twice[-1] = 1.0
        spread = float(((self.amplitude.square() * twice).sum(dim=(-2, -1)) / (height * width)).mean().sqrt())
        return f"a difference of mean {float(self.mean.abs().mean()):.3f} and noise of standard deviation {spread:.3f}, drawn afresh on every image, added"


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Shift(Intervention):
    """:attr:`direction` added to every token that layer :attr:`layer` puts out."""

    target: int
    #: the layer (from 0)
    layer: int
    #: ``(D,)``: the cluster's mean feature less its class's others' (:mod:`~captum_gmar.exploration.features`)
    direction: Tensor
    graded: ClassVar[bool] = True

    def logits(self, vit: VisionTransformer, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        shifts = applied.to(pixel_values.device, self.direction.dtype)[:, None] * self.direction.to(pixel_values.device)
        with tokens_shifted(vit, self.layer, shifts):
            return vit.logits(pixel_values)

    def describe(self) -> str:
        return f"a direction of norm {float(self.direction.norm()):.2f} added at layer {self.layer}"


@dataclass(frozen=True, eq=False)  # compared by identity: it holds interventions that hold tensors
class OneOf(InPixels):
    """One of :attr:`parts` put on each image, drawn per image: every way a repair knows of
    putting one shortcut on, so that a repair removes what all of them change (on the
    DINOv2 colour-cast probe, docs/results.md, the directions of the proxy that raised the
    class most removed 51% of the drawn cast through the ridge of 0.1, those of its two
    confirming proxies together 81%). Its rise is the mean over images of the part each
    got. The parts change pixels, so the model runs once on the batch, as for one of them.

    Raises:
        ValueError: fewer than two parts, parts of different classes, or a part that is
            graded beside one that is not (a strength means one thing for all of them), or a
            part that is a OneOf.
    """

    target: int
    parts: tuple[InPixels, ...]

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise ValueError(f"OneOf takes two parts at least, got {len(self.parts)}")
        if any(part.target != self.target for part in self.parts):
            raise ValueError(f"OneOf's parts must all put on class {self.target}, got {[part.target for part in self.parts]}")
        if len({part.graded for part in self.parts}) > 1:
            raise ValueError("OneOf's parts must all be graded (put on at any strength) or none")
        if any(isinstance(part, OneOf) for part in self.parts):  # a projection takes each part's mean: one level
            raise ValueError("OneOf's parts must not be OneOf themselves: give their parts instead")

    # an instance's parts decide these, not the class: read them on an instance (on the class they are properties)
    @property
    def graded(self) -> bool:  # type: ignore[override]
        return self.parts[0].graded

    @property
    def drawn(self) -> bool:  # type: ignore[override]
        return any(part.drawn for part in self.parts)

    def put_on(self, pixel_values: Tensor, applied: Tensor, generator: torch.Generator) -> Tensor:
        drawn = torch.randint(len(self.parts), (len(pixel_values),), generator=generator).to(pixel_values.device)
        rows = [(part, torch.nonzero(drawn == index).flatten()) for index, part in enumerate(self.parts)]
        rows = [(part, r) for part, r in rows if len(r)]  # a part no image drew is not run: some cannot take an empty batch
        if not rows:
            return pixel_values
        changed = torch.cat([part.put_on(pixel_values[r], applied.to(r.device)[r], generator) for part, r in rows])
        return changed[torch.argsort(torch.cat([r for _, r in rows]))]  # each image back in its place

    def describe(self) -> str:
        return "one of, drawn per image: " + "; ".join(part.describe() for part in self.parts)


def ways(intervention: Intervention) -> tuple[Intervention, ...]:
    """The ways ``intervention`` puts its shortcut on: a :class:`OneOf`'s parts, else itself alone."""
    return intervention.parts if isinstance(intervention, OneOf) else (intervention,)
