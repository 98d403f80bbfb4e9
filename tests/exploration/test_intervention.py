"""The interventions: each acts on the images chosen and on those alone; a direction added
through the fine-tune's path scores as the feature finder's path does; the rise is the
class's mean score change on every image."""

from __future__ import annotations

import math

import pytest
import torch

from captum_gmar import load_reference_model, load_sample_scenes
from captum_gmar.exploration.intervention import MAX_GAIN, Add, Curve, Filter, OneOf, Paste, Shift, Texture
from captum_gmar.imagedata import to_pixel_values
from captum_gmar.vit.layers import scores_with_tokens_shifted
from captum_gmar.vit.model import VisionTransformer
from captum_gmar.vit.outputs import logit_scores


@pytest.fixture(scope="module")
def vit_and_pixels():
    return VisionTransformer(load_reference_model()), to_pixel_values(load_sample_scenes().images)


def _corner(size: int = 64) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., :16, :16] = 1
    return mask


def _identity(low: float = -2.0, high: float = 2.0, levels: int = 5) -> Curve:
    """A curve that leaves every value as it is: its values are its levels."""
    grid = torch.linspace(low, high, levels).expand(3, -1)
    return Curve(3, torch.full((3,), low), torch.full((3,), high), grid.clone())


def _low_pass(size: int = 64) -> Filter:
    """A filter that keeps each image's mean and a fifth of every other frequency."""
    gain = torch.full((3, size, size // 2 + 1), 0.2)
    gain[:, 0, 0] = 1.0
    return Filter(3, gain, (size, size))


def _grainy() -> Texture:
    """A texture of a corner's difference and white noise of standard deviation 0.5."""
    return Texture(3, 0.5 * _corner().expand(1, 3, 64, 64), torch.full((3, 64, 33), 0.5 / 64))


@pytest.mark.parametrize("kind", ["paste", "add", "curve", "filter", "texture", "shift", "one of"])
def test_only_the_images_chosen_change(vit_and_pixels, kind):
    vit, pixels = vit_and_pixels
    intervention = {
        "paste": Paste(3, _corner(), torch.full((2, 3, 64, 64), 2.0)),
        "add": Add(3, 0.5 * _corner().expand(1, 3, 64, 64)),
        "curve": Curve(3, _identity().low, _identity().high, _identity().values.flip(1)),  # every value negated
        "filter": _low_pass(),
        "texture": _grainy(),
        "shift": Shift(3, 1, torch.linspace(-2, 2, vit.hidden_size)),
        "one of": OneOf(3, (Add(3, 0.5 * _corner().expand(1, 3, 64, 64)), _low_pass())),
    }[kind]
    applied = torch.tensor([True, False] * 4)
    with torch.no_grad():
        plain = vit.logits(pixels)
        changed = intervention.logits(vit, pixels, applied, torch.Generator().manual_seed(0))
    torch.testing.assert_close(changed[~applied], plain[~applied])
    assert (changed[applied] - plain[applied]).abs().amax(dim=1).min() > 1e-3


class _Pixels:
    """A stand-in model whose logits are the pixel values it is given, flattened."""

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pixel_values.flatten(1)


def test_a_graded_intervention_scales_its_change_by_the_strength_and_a_paste_is_put_on_whole(vit_and_pixels):
    pixels = vit_and_pixels[1][:4]
    strength = torch.tensor([0.0, 0.5, 1.0, 1.5])
    generator = torch.Generator().manual_seed(0)
    add = Add(3, 0.5 * _corner().expand(1, 3, 64, 64))
    curve = Curve(3, _identity().low, _identity().high, _identity().values.flip(1))  # every value in [-2, 2] negated
    low_pass = _low_pass()
    assert add.graded and curve.graded and low_pass.graded and Texture.graded and Shift.graded and not Paste.graded
    grainy = _grainy()
    expected_texture = pixels + strength[:, None, None, None] * (grainy.mean + grainy.noise(4, (64, 64), torch.Generator().manual_seed(1)))
    torch.testing.assert_close(grainy.put_on(pixels, strength, torch.Generator().manual_seed(1)), expected_texture)
    for graded in (add, curve, low_pass):  # True and 1.0 put the same on
        on = torch.tensor([True, False, True, True])
        torch.testing.assert_close(graded.logits(_Pixels(), pixels, on, generator), graded.logits(_Pixels(), pixels, on.float(), generator))
    expected_add = pixels + strength[:, None, None, None] * add.difference
    torch.testing.assert_close(add.logits(_Pixels(), pixels, strength, generator), expected_add.flatten(1))
    expected_curve = pixels + strength[:, None, None, None] * (-pixels - pixels)
    torch.testing.assert_close(curve.logits(_Pixels(), pixels, strength, generator), expected_curve.flatten(1))
    # a filter's gains raised to the strength: 0 leaves the image, 1.5 filters more than 1
    spectrum = torch.fft.rfft2(pixels) * low_pass.gain[None] ** strength[:, None, None, None]
    expected_filter = torch.fft.irfft2(spectrum, s=(64, 64))
    torch.testing.assert_close(low_pass.logits(_Pixels(), pixels, strength, generator), expected_filter.flatten(1))
    torch.testing.assert_close(low_pass.filtered(pixels, strength)[0], pixels[0], atol=1e-5, rtol=0)  # FFT rounding
    paste = Paste(3, _corner(), torch.full((1, 3, 64, 64), 2.0))
    pasted = paste.logits(_Pixels(), pixels, strength, generator).view_as(pixels)
    torch.testing.assert_close(pasted[0], pixels[0])
    for row, image in zip(pasted[1:], pixels[1:]):  # the whole mark, wherever the strength is above 0
        assert bool((row[:, :16, :16] == 2.0).all()) and torch.equal(row[:, 16:], image[:, 16:])


def test_one_of_puts_one_part_on_each_image_drawn_per_image_at_its_strength(vit_and_pixels):
    pixels = vit_and_pixels[1][:4].repeat(8, 1, 1, 1)  # 32 images
    strength = torch.linspace(0.0, 1.5, 32)
    add, curve = Add(3, 0.5 * _corner().expand(1, 3, 64, 64)), Curve(3, _identity().low, _identity().high, _identity().values.flip(1))
    one_of = OneOf(3, (add, curve))
    assert one_of.graded and one_of.target == 3
    got = one_of.logits(_Pixels(), pixels, strength, torch.Generator().manual_seed(0))
    parts = [part.logits(_Pixels(), pixels, strength, torch.Generator()) for part in (add, curve)]
    is_add = (got - parts[0]).abs().amax(dim=1) < 1e-6
    is_curve = (got - parts[1]).abs().amax(dim=1) < 1e-6
    assert bool((is_add ^ is_curve)[1:].all())  # each image (the first, at strength 0, is both) takes one part, whole
    assert int(is_add[1:].sum()) >= 8 and int(is_curve[1:].sum()) >= 8  # both drawn: P(fewer than 8 of 31) < 0.001
    torch.testing.assert_close(one_of.logits(_Pixels(), pixels, strength, torch.Generator().manual_seed(0)), got)  # seeded
    assert not torch.equal(one_of.logits(_Pixels(), pixels, strength, torch.Generator().manual_seed(1)), got)
    # what the fine-tune trains through: the gradient reaches every image
    through = pixels.clone().requires_grad_()
    one_of.logits(_Pixels(), through, strength, torch.Generator().manual_seed(0)).sum().backward()
    assert through.grad is not None and bool((through.grad.flatten(1).abs().sum(1) > 0).all())
    assert "one of" in one_of.describe() and add.describe() in one_of.describe()


def test_one_of_rises_by_its_parts_rises_on_the_images_each_drew(vit_and_pixels):
    vit, pixels = vit_and_pixels
    scores = logit_scores(vit)
    nothing, add = Add(5, torch.zeros(1, 3, 64, 64)), Add(5, 0.8 * _corner().expand(1, 3, 64, 64))
    drawn = torch.randint(2, (len(pixels),), generator=torch.Generator().manual_seed(0))  # as OneOf draws with seed 0
    with torch.no_grad():
        plain = scores(vit.logits(pixels))[:, 5]
        added = scores(add.logits(vit, pixels, torch.ones(len(pixels)), torch.Generator()))[:, 5]
    expected = float(((added - plain) * (drawn == 1)).double().mean())  # the first part puts nothing on
    assert OneOf(5, (nothing, add)).rises(vit, pixels, scores, seed=0, batch_size=len(pixels)).mean().item() == pytest.approx(
        expected, abs=1e-6
    )


def test_one_of_refuses_fewer_than_two_parts_other_classes_and_mixed_grading():
    add = Add(3, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="two parts at least"):
        OneOf(3, (add,))
    with pytest.raises(ValueError, match="all put on class 3"):
        OneOf(3, (add, Add(4, torch.zeros(1, 3, 64, 64))))
    paste = Paste(3, _corner(), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="graded"):
        OneOf(3, (add, paste))
    with pytest.raises(ValueError, match="not be OneOf themselves"):
        OneOf(3, (add, OneOf(3, (add, add))))
    assert not OneOf(3, (paste, paste)).graded and OneOf(3, (add, add)).graded  # its parts decide


def test_a_shift_scales_its_direction_by_the_strength(vit_and_pixels):
    vit, pixels = vit_and_pixels
    direction = torch.linspace(-1, 1, vit.hidden_size)
    strength = torch.tensor([0.0, 0.5, 1.0, 1.5])
    with torch.no_grad():
        shifted = Shift(5, 3, direction).logits(vit, pixels[:4], strength, torch.Generator())
        for row, s in enumerate(strength.tolist()):
            alone = scores_with_tokens_shifted(vit, pixels[row : row + 1], 3, s * direction[None], lambda logits: logits)[0]
            torch.testing.assert_close(shifted[row : row + 1], alone, atol=1e-5, rtol=1e-5)


def test_a_shift_scores_as_the_feature_finder_scores_it(vit_and_pixels):
    vit, pixels = vit_and_pixels
    direction = torch.linspace(-1, 1, vit.hidden_size)
    shift = Shift(5, 3, direction)
    with torch.no_grad():
        through_logits = logit_scores(vit)(shift.logits(vit, pixels, torch.ones(8, dtype=torch.bool), torch.Generator()))
        plain = logit_scores(vit)(vit.logits(pixels))
    finder = scores_with_tokens_shifted(vit, pixels, 3, direction[None], logit_scores(vit))[0]
    torch.testing.assert_close(through_logits, finder)
    each = (finder[:, 5] - plain[:, 5]).double()
    rises = shift.rises(vit, pixels, logit_scores(vit), batch_size=3)  # each image's, across batches
    assert rises.dtype == torch.float64 and rises.shape == (8,)
    torch.testing.assert_close(rises, each, atol=1e-6, rtol=0)
    assert shift.rises(vit, pixels[:0], logit_scores(vit)).shape == (0,)


def test_nothing_put_on_rises_by_nothing(vit_and_pixels):
    vit, pixels = vit_and_pixels
    scores = logit_scores(vit)
    assert Shift(2, 0, torch.zeros(vit.hidden_size)).rises(vit, pixels, scores).mean().item() == pytest.approx(0.0, abs=1e-6)
    assert Paste(2, torch.zeros(1, 1, 64, 64), pixels[:2]).rises(vit, pixels, scores).mean().item() == pytest.approx(0.0, abs=1e-6)
    assert Add(2, torch.zeros(1, 3, 64, 64)).rises(vit, pixels, scores).mean().item() == pytest.approx(0.0, abs=1e-6)
    unchanging = Texture(2, torch.zeros(1, 3, 64, 64), torch.zeros(3, 64, 33))
    assert unchanging.rises(vit, pixels, scores).mean().item() == pytest.approx(0.0, abs=1e-6)
    assert _identity().rises(vit, pixels, scores).mean().item() == pytest.approx(0.0, abs=1e-5)  # lerp's rounding, a few ulps
    assert Filter(2, torch.ones(3, 64, 33), (64, 64)).rises(vit, pixels, scores).mean().item() == pytest.approx(
        0.0, abs=1e-5
    )  # FFT rounding
    assert torch.isnan(Paste(2, _corner(), pixels[:2]).rises(vit, pixels[:0], scores).mean())


def _scenes(count: int, generator: torch.Generator) -> torch.Tensor:
    """``(count, 3, 32, 32)``: a black background, and an item of random values in the middle."""
    scenes = torch.zeros(count, 3, 32, 32)
    scenes[:, :, 8:24, 8:24] = torch.rand(count, 3, 16, 16, generator=generator)
    return scenes


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda x: x.clamp(min=0.35), id="tint"),
        pytest.param(lambda x: x + torch.tensor([0.3, 0.1, 0.0])[None, :, None, None], id="cast"),
        pytest.param(lambda x: 0.5 + 0.5 * (x - 0.5), id="contrast"),
    ],
)
def test_a_curve_matched_to_changed_images_makes_the_change(change):
    generator = torch.Generator().manual_seed(0)
    curve = Curve.matching(1, change(_scenes(64, generator)), _scenes(64, generator))
    fresh = _scenes(16, generator)
    # the curve is estimated from two draws of 64 scenes: on a level the items hold, the
    # quantiles of 16,384 values each are off by about 1/128 of the range at worst
    torch.testing.assert_close(curve.mapped(fresh), change(fresh), atol=0.02, rtol=0)
    assert float((curve.mapped(fresh) - change(fresh)).abs().mean()) < 2e-3


def test_a_curve_matched_to_the_same_images_changes_nothing():
    generator = torch.Generator().manual_seed(1)
    scenes = _scenes(64, generator)
    # each level lands in a gap between two of the 16,384 sorted values a channel holds, and
    # the curve is a chord between levels: off by well under a thousandth of the range
    torch.testing.assert_close(Curve.matching(1, scenes, scenes).mapped(scenes), scenes, atol=1e-3, rtol=0)


def test_values_beyond_a_curves_levels_keep_their_distance_from_its_ends():
    curve = Curve(0, torch.zeros(3), torch.ones(3), torch.tensor([[0.5, 0.5, 2.0]]).expand(3, -1))
    values = torch.tensor([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 3.0]).reshape(1, 1, 1, 7).expand(2, 3, 1, 7)
    expected = torch.tensor([-0.5, 0.5, 0.5, 0.5, 1.25, 2.0, 4.0]).reshape(1, 1, 1, 7).expand(2, 3, 1, 7)
    torch.testing.assert_close(curve.mapped(values), expected)


def _textured(count: int, generator: torch.Generator) -> torch.Tensor:
    """``(count, 3, 32, 32)``: a background of noise and an item of random values, every
    frequency present (a filter is estimated where the images have power)."""
    scenes = 0.3 * torch.rand(count, 3, 32, 32, generator=generator)
    scenes[:, :, 8:24, 8:24] += torch.rand(count, 3, 16, 16, generator=generator)
    return scenes


def _blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` blurred by a Gaussian of ``sigma`` pixels, circularly: its transfer function
    ``exp(-2 pi^2 sigma^2 f^2)`` at each frequency ``f`` (cycles a pixel)."""
    rows = torch.fft.fftfreq(x.shape[-2])[:, None]
    columns = torch.fft.rfftfreq(x.shape[-1])[None]
    transfer = torch.exp(-2 * math.pi**2 * sigma**2 * (rows.square() + columns.square()))
    return torch.fft.irfft2(torch.fft.rfft2(x) * transfer, s=x.shape[-2:])


def test_a_filter_matched_to_blurred_images_blurs():
    generator = torch.Generator().manual_seed(0)
    blur = Filter.matching(1, _blurred(_textured(64, generator), 1.5), _textured(64, generator))
    fresh = _textured(16, generator)
    # the gains are square roots of a ratio of two means of 64 images' powers (each
    # frequency's power varies by about its mean from image to image): off by about a
    # tenth of the gain, at frequencies that the blur has all but removed anyway
    assert float((blur.filtered(fresh, torch.ones(16)) - _blurred(fresh, 1.5)).abs().mean()) < 0.01
    assert float(fresh.std()) > 0.25  # against images that vary by this much
    torch.testing.assert_close(blur.filtered(fresh, torch.ones(16)).mean((-2, -1)), fresh.mean((-2, -1)))  # the mean kept
    assert "scales the upper half of them by 0.01 on average" in blur.describe()  # the Gaussian's own: 0.006
    sharper = Filter.matching(1, _textured(64, generator), _blurred(_textured(64, generator), 1.5))  # the other way round
    assert float(sharper.gain.max()) == MAX_GAIN  # where the blurred images have no power left


def test_a_filter_matched_to_the_same_images_changes_nothing():
    scenes = _textured(8, torch.Generator().manual_seed(1))
    same = Filter.matching(1, scenes, scenes)
    torch.testing.assert_close(same.gain, torch.ones_like(same.gain))
    torch.testing.assert_close(same.filtered(scenes, torch.ones(8)), scenes, atol=1e-5, rtol=0)  # FFT rounding


def test_a_filter_refuses_images_of_another_size():
    scenes = _textured(4, torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match=r"^a filter is matched between images of one size, got \(3, 32, 32\) and \(3, 32, 31\)$"):
        Filter.matching(1, scenes, scenes[..., :31])
    with pytest.raises(ValueError, match=r"^the filter was matched on images of 32 x 32, not 32 x 33$"):
        Filter.matching(1, scenes, scenes).filtered(torch.zeros(1, 3, 32, 33), torch.ones(1))


def _grained(count: int, generator: torch.Generator, spread: float) -> torch.Tensor:
    """:func:`_scenes` with a grey grain over the background: uniform in ``[0, spread]``,
    drawn afresh on every scene, the same in every channel."""
    scenes = _scenes(count, generator)
    grain = spread * torch.rand(count, 1, 32, 32, generator=generator)
    return scenes + grain * (scenes.amax(1, keepdim=True) == 0)


def test_a_texture_matched_to_grained_images_draws_a_grain_of_their_mean_and_spread():
    generator = torch.Generator().manual_seed(0)
    texture = Texture.matching(1, _grained(256, generator, 0.6), _scenes(256, generator))
    drawn = texture.put_on(torch.zeros(64, 3, 32, 32), torch.ones(64), generator)
    background = torch.ones(32, 32, dtype=torch.bool)
    background[8:24, 8:24] = False
    # the grain: mean 0.3 and standard deviation 0.6 / sqrt(12) = 0.173 over three quarters of
    # the scene, so 0.225 and 0.15 over the whole of it, with the items' own variance
    # cancelled against the rest's; 256 scenes a side leave the power a few per cent off
    assert float(drawn[..., background].mean()) == pytest.approx(0.3, abs=0.01)
    assert float(drawn.mean()) == pytest.approx(0.225, abs=0.01)
    assert float((drawn - texture.mean).std()) == pytest.approx(0.15, rel=0.1)
    noise = (drawn - texture.mean)[..., background]
    # one field for every channel, a grey grain stays grey: the channels' noise moves together
    # (each channel's amplitudes estimated apart, a few per cent off one another)
    assert float(torch.corrcoef(torch.stack([noise[:, 0].flatten(), noise[:, 2].flatten()]))[0, 1]) > 0.95
    assert not torch.allclose(drawn[0], drawn[1])  # drawn afresh on every image, and says so: a repair follows its rises' spread
    assert Texture.drawn and texture.drawn and not any(kind.drawn for kind in (Add, Curve, Filter, Paste, Shift))
    add = Add(1, torch.zeros(1, 3, 32, 32))
    assert OneOf(1, (add, texture)).drawn and not OneOf(1, (add, add)).drawn  # a part drawn afresh makes the whole so
    assert "noise of standard deviation 0.1" in texture.describe()
    half = texture.put_on(torch.zeros(2, 3, 32, 32), torch.tensor([0.0, 0.5]), generator)
    assert float(half[0].abs().max()) == 0.0 and float(half[1].mean()) == pytest.approx(0.5 * 0.225, abs=0.01)


def test_a_texture_matched_to_the_same_images_adds_nothing():
    scenes = _textured(16, torch.Generator().manual_seed(1))
    same = Texture.matching(1, scenes, scenes)
    assert float(same.mean.abs().max()) == 0.0 and float(same.amplitude.abs().max()) == 0.0
    assert "noise of standard deviation 0.000" in same.describe()


def test_a_texture_refuses_images_of_another_size():
    scenes = _textured(4, torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match=r"^a texture is matched between images of one size, got \(3, 32, 32\) and \(3, 32, 31\)$"):
        Texture.matching(1, scenes, scenes[..., :31])
    with pytest.raises(ValueError, match=r"^the texture was matched on images of 32 x 32, not 32 x 33$"):
        Texture.matching(1, scenes, scenes).put_on(torch.zeros(1, 3, 32, 33), torch.ones(1), torch.Generator())
