"""The transplant check: pasting takes exactly the region's pixels from the donors; a
model that reads one patch rises where the cluster's region is pasted on other images and
not where the rest's is; with no other class to paste on, the figures are NaN and say why;
a rise beyond the control by CONFIRMS_BY confirms, and the overview lists confirmed groups first."""

from __future__ import annotations

import math

import pytest
import torch

from captum_gmar.exploration.result import overview_order
from captum_gmar.exploration.transplant import CONFIRMS_BY, Transplant, mark_mask, paste_region, region_mask, transplant_check


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
