"""The transplant check: pasting takes exactly the region's pixels from the donors; a
model that reads one patch rises where the cluster's region is pasted on other images and
not where the rest's is; with no other class to paste on, the figures are NaN and say why;
a rise beyond the control by CONFIRMS_BY confirms, and the overview lists confirmed groups first;
the null, the class's other images moved so that their own evidence lies on the region,
rises as much as the cluster where the region holds the class's object and not where it
holds a mark only the cluster carries."""

from __future__ import annotations

import math

import pytest
import torch

from captum_gmar.exploration.result import overview_order
from captum_gmar.exploration.transplant import (
    CONFIRMS_BY,
    NULL_Z,
    Transplant,
    best_shifts,
    mark_mask,
    moved,
    paste_region,
    region_mask,
    transplant_check,
)


def test_paste_region_takes_exactly_the_regions_pixels_from_each_donor():
    targets = torch.zeros(2, 3, 10, 10)
    donors = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    mask = region_mask([(0, 1)], (2, 2), (10, 10), torch.device("cpu"))  # a 2 x 2 grid on 10 px: 5 px cells
    pasted = paste_region(targets, donors, mask)
    assert torch.equal(pasted[:, :, :5, 5:], donors[:, :, :5, 5:])
    assert not pasted[:, :, 5:, :].any() and not pasted[:, :, :, :5].any()
    odd = region_mask([(1, 1)], (2, 2), (7, 9), torch.device("cpu"))  # an image size the grid does not divide
    assert odd.shape == (1, 1, 7, 9) and odd[0, 0, -1, -1] == 1 and odd[0, 0, 0, 0] == 0


def test_a_model_that_reads_one_patch_rises_where_the_clusters_region_is_pasted():
    """The score is the brightness of the top-left 4 x 4 pixels: the cluster's images are
    bright there, the rest of the class and the other classes are not."""
    generator = torch.Generator().manual_seed(0)
    members = torch.rand(20, 3, 16, 16, generator=generator) * 0.2
    members[:, :, :4, :4] = 1.0
    rest = torch.rand(30, 3, 16, 16, generator=generator) * 0.2
    others = torch.rand(25, 3, 16, 16, generator=generator) * 0.2

    def scores(x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :4, :4].mean(dim=(1, 2, 3))

    check = transplant_check(scores, members, rest, others, [(0, 0)], (4, 4), seed=1)
    assert check.pasted == 25 and check.pasted_own == 30 and check.note is None
    assert check.rise == pytest.approx(1.0 - float(scores(others).mean()), abs=1e-6)  # every pasted image's corner turns bright
    assert abs(check.control) < 0.05 and check.rise_own > 0.8
    assert "pasted on 25 images of other classes raises the class's score by +0.899" in check.summary()
    elsewhere = transplant_check(scores, members, rest, others, [(3, 3)], (4, 4))  # a region the model does not read
    assert abs(elsewhere.rise) < 1e-6
    seen: list[int] = []
    transplant_check(lambda x: seen.append(len(x)) or scores(x), members, rest, others, [(0, 0)], (4, 4))
    assert sorted(seen) == [25, 25, 25, 30, 30]  # each set's own scores once: the rest, the others; three pastes


def test_with_no_other_class_the_figures_are_nan_and_say_why():
    members = torch.rand(4, 3, 8, 8)
    check = transplant_check(lambda x: x.mean(dim=(1, 2, 3)), members, torch.rand(3, 3, 8, 8), None, [(0, 0)], (2, 2))
    assert math.isnan(check.rise) and math.isnan(check.control) and check.pasted == 0
    assert check.note == "the images hold no other class to paste on" and check.summary().startswith("no transplant")
    alone = transplant_check(lambda x: x.mean(dim=(1, 2, 3)), members, None, torch.rand(5, 3, 8, 8), [(0, 0)], (2, 2))
    assert alone.pasted == 5 and math.isnan(alone.control) and "none to cut from" in alone.summary()
    with pytest.raises(ValueError, match="needs the cluster's images"):
        transplant_check(lambda x: x.mean(dim=(1, 2, 3)), members[:0], None, None, [(0, 0)], (2, 2))


def test_a_rise_beyond_its_control_confirms_and_confirmed_groups_come_first():
    def check(rise: float, control: float, pasted: int = 10) -> Transplant:
        return Transplant(rise, control, pasted, math.nan, 0)

    assert check(0.43, 0.03).confirms and check(CONFIRMS_BY, 0.0).confirms
    assert not check(0.3, 0.2).confirms and not check(-0.02, 0.02).confirms
    assert check(0.25, math.nan).confirms and check(0.25, -0.5).confirms  # no control, or one that falls: against 0
    assert not check(math.nan, math.nan, pasted=0).confirms
    groups = [
        {"clusters": [{}], "flagged": 1, "confirmed": 0, "suspicion": 0.99},
        {"clusters": [], "flagged": 0, "confirmed": 0, "suspicion": 0.0},  # not clustered: not listed
        {"clusters": [{}], "flagged": 0, "confirmed": 0, "suspicion": 0.95},
        {"clusters": [{}], "flagged": 1, "confirmed": 1, "suspicion": 0.91},
    ]
    assert overview_order(groups) == [3, 0, 2]


def test_moved_shifts_each_image_and_fills_what_comes_in_with_its_mean():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    out = moved(images, torch.tensor([[1, -2], [0, 0]]))
    assert torch.equal(out[0, 0, 1:, :2], images[0, 0, :3, 2:])  # down 1, left 2
    assert torch.all(out[0, 0, 0, :] == images[0].mean()) and torch.all(out[0, 0, :, 2:] == images[0].mean())
    assert torch.equal(out[1], images[1])
    assert torch.all(moved(images, torch.tensor([[4, 0], [0, -9]])) == images.mean(dim=(2, 3), keepdim=True))  # out of the picture


def test_best_shifts_move_each_maps_mass_onto_the_region_by_the_smallest_move():
    masses = torch.zeros(3, 4, 5)
    masses[0, 3, 4] = 1.0  # one patch at the bottom right
    masses[1, 0, 0], masses[1, 0, 1] = 0.3, 0.7  # two patches at the top left
    masses[2, 1:3, 1:3] = 0.25  # already on the region
    shifts = best_shifts(masses, [(1, 1), (1, 2), (2, 1), (2, 2)])
    assert shifts[0].tolist() == [-1, -2]  # up 1 to row 2, left 2 to column 2: the nearest cell of the region
    assert shifts[1].tolist() == [1, 1]  # both patches fit: rows 1, columns 1 and 2
    assert shifts[2].tolist() == [0, 0]


def _scene(count: int, where: list[tuple[int, int]], generator: torch.Generator, mark: bool = False) -> torch.Tensor:
    """``count`` 16 x 16 images of dim noise, each with a bright 4 x 4 "object" at one of
    ``where`` (top-left pixel, in turn); with ``mark``, a checker in the bottom-right corner."""
    images = torch.rand(count, 3, 16, 16, generator=generator) * 0.2
    for i in range(count):
        row, column = where[i % len(where)]
        images[i, :, row : row + 4, column : column + 4] = 1.0
    if mark:
        images[:, :, 12:, 12:] = torch.tensor([[0.0, 1.0] * 2, [1.0, 0.0] * 2] * 2)
    return images


def _object_or_mark(x: torch.Tensor) -> torch.Tensor:
    """A class score: an object (a bright 4 x 4 square) anywhere, or the corner's checker."""
    bright = torch.nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True), 4, stride=4).amax(dim=(1, 2, 3))
    checker = (x[:, :, 12:, 12:] - torch.tensor([[0.0, 1.0] * 2, [1.0, 0.0] * 2] * 2)).abs().mean(dim=(1, 2, 3))
    return torch.maximum((bright > 0.9).float(), (checker < 0.1).float())


def test_the_null_rises_with_the_object_moved_there_but_not_with_a_mark_only_the_cluster_has():
    generator = torch.Generator().manual_seed(0)
    others = torch.rand(24, 3, 16, 16, generator=generator) * 0.2  # other classes: no object, no mark
    # the object at the top left: the class's other cluster has it at the bottom left, moved up it lies there too
    at_top = _scene(12, [(0, 0)], generator)
    at_bottom = _scene(12, [(12, 0)], generator)
    null = moved(at_bottom[torch.arange(24) % 12], torch.tensor([[-12, 0]]).expand(24, 2))
    place = transplant_check(_object_or_mark, at_top, at_bottom, others, [(0, 0)], (4, 4), null_donors=null)
    assert place.rise == pytest.approx(1.0) and place.control == pytest.approx(0.0) and place.null == pytest.approx(1.0)
    assert place.beyond == pytest.approx(0.0) and not place.confirms  # the object itself: not a shortcut
    # a checker in the corner that only the cluster's images carry: the moved object does not land on it
    marked = _scene(12, [(4, 4)], generator, mark=True)
    plain = _scene(12, [(4, 4)], generator)
    shortcut = transplant_check(
        _object_or_mark,
        marked,
        plain,
        others,
        [(3, 3)],
        (4, 4),
        null_donors=moved(plain[torch.arange(24) % 12], torch.zeros(24, 2, dtype=torch.long)),
    )
    assert shortcut.rise == pytest.approx(1.0) and shortcut.null == pytest.approx(0.0) and shortcut.confirms
    assert "the class's other clusters moved there: +0.000" in shortcut.summary()
    with pytest.raises(ValueError, match="one per image of others"):
        transplant_check(_object_or_mark, marked, plain, others, [(3, 3)], (4, 4), null_donors=null[:3])


def test_a_rise_must_stand_beyond_the_larger_of_its_control_and_its_null():
    def check(rise: float, control: float, null: float) -> Transplant:
        return Transplant(rise, control, 10, math.nan, 0, None, null)

    assert check(0.9, 0.0, 0.1).confirms and check(0.9, 0.1, math.nan).confirms
    assert not check(0.9, 0.0, 0.75).confirms and not check(0.9, 0.8, 0.0).confirms
    assert check(0.9, 0.05, 0.3).beyond == pytest.approx(0.6)
    # a small cluster: its rise spreads as the null's per-image rises over the square root of its images
    small = Transplant(0.9, 0.0, 10, math.nan, 0, None, 0.5, null_spread=0.4 / math.sqrt(4))
    assert small.needed == pytest.approx(NULL_Z * 0.2) and not small.confirms  # 0.4 beyond, 0.5 needed
    large = Transplant(0.9, 0.0, 10, math.nan, 0, None, 0.5, null_spread=0.4 / math.sqrt(64))
    assert large.needed == CONFIRMS_BY and large.confirms


def test_the_mark_is_the_regions_pixels_the_clusters_images_share_and_the_rest_lack():
    generator = torch.Generator().manual_seed(2)
    members = torch.rand(30, 3, 16, 16, generator=generator)  # objects that vary from image to image
    rest = torch.rand(40, 3, 16, 16, generator=generator)
    members[:, :, 1, :8] = 1.0  # a line drawn alike on every member, inside the top-left patches
    region = region_mask([(0, 0), (0, 1)], (4, 4), (16, 16), torch.device("cpu"))  # the top half-row of patches: 4 x 8 px
    mark = mark_mask(members, rest, region)
    expected = torch.zeros(1, 1, 16, 16)
    expected[..., 1, :8] = 1
    assert torch.equal(mark, expected)  # the line, not the rest of the region
    assert torch.equal(mark_mask(members, None, region), region)  # no rest to tell the mark from
    moving = members.clone()
    moving[:, :, 1, :8] = rest[:30, :, 1, :8]
    for i in range(30):  # drawn at another place on each image: no pixel shared
        moving[i, :, i % 4, 8 + i % 8] = 1.0
    assert torch.equal(mark_mask(moving, rest, region), region)
