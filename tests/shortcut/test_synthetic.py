"""The synthetic classes: maps are distributions, the tag carries its share of the mass on
its patches, the controls carry none; the family's runner scores a class."""

from __future__ import annotations

import numpy as np
import pytest

from tools.shortcut.family import run_setting, settings
from tools.shortcut.shapes import run_pair
from tools.shortcut.synthetic import Setting, synthetic_class, tag_mask, tag_patches, two_tags_class


@pytest.mark.parametrize("place, expected", [("corner", (0, 0)), ("edge", (0, 6)), ("object", (6, 6))])
def test_the_tag_sits_where_its_place_says(place, expected):
    rows, columns = tag_patches(Setting(place=place, tag=2))
    assert (rows.start, columns.start) == expected and rows.stop - rows.start == columns.stop - columns.start == 2


@pytest.mark.parametrize(
    "setting",
    [Setting(), Setting(objects="fixed", floor=0.3, mass=0.05, tag=3, place="object"), Setting(sharpen=3.0, tagged=0.02, mass=0.5)],
)
def test_maps_are_distributions_and_the_tag_carries_its_share(setting):
    maps, tagged = synthetic_class(Setting(**{**vars(setting), "count": 500}), seed=1)
    assert maps.shape == (500, 14, 14) and maps.dtype == np.float32 and (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1, rtol=1e-5)
    assert tagged.sum() == round(setting.tagged * 500)
    rows, columns = tag_patches(setting)
    on_tag = maps[:, rows, columns].sum(axis=(1, 2))
    # a tagged map's share on the tag: its drawn share, plus what the object and floor already put there
    assert (on_tag[tagged] >= 0.8 * setting.mass - 1e-6).all()
    assert on_tag[tagged].mean() > on_tag[~tagged].mean() + 0.7 * setting.mass


def test_a_control_has_no_tag_and_the_same_seed_gives_the_same_maps():
    control = Setting(mass=0.3).without_tag()
    maps, tagged = synthetic_class(control, seed=2)
    assert not control.has_tag and not tagged.any() and control.name().startswith("no tag")
    again, _ = synthetic_class(control, seed=2)
    np.testing.assert_array_equal(maps, again)


def test_the_family_covers_every_combination_and_a_run_scores_the_tag():
    family = settings()
    assert len(family) == 5 * 3 * 3 * 4 * 2 * 2 * 2 + 8 and len({s.name() for s in family}) == len(family)
    row = run_setting(Setting(mass=0.3, count=400), seed=0)
    assert row["best"]["f1"] >= 0.9 and row["best"]["rank"] == 1 and row["first"]["flagged"]
    assert row["clusters"] <= row["clusters_found"]


def test_two_tags_sit_on_disjoint_maps_each_with_its_share_on_its_own_patches():
    setting = Setting(shape="line", count=400)
    maps, line, square = two_tags_class(setting, "square", seed=3)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1, rtol=1e-5)
    assert line.sum() == square.sum() == 40 and not (line & square).any()
    # the first tag is synthetic_class's own: the same maps where the second is not
    alone, tagged = synthetic_class(setting, seed=3)
    np.testing.assert_array_equal(tagged, line)
    np.testing.assert_array_equal(maps[~square], alone[~square])
    on_square = maps[:, tag_mask(Setting(shape="square"))].sum(1)
    assert (on_square[square] >= 0.8 * setting.mass - 1e-6).all() and on_square[square].mean() > on_square[line].mean() + 0.15


def test_both_of_two_tags_in_one_class_are_found_first_and_flagged():
    row = run_pair(Setting(shape="square", objects="fixed", count=300), "frame", seed=0)
    assert sorted(t["rank"] for t in row["tags"]) == [1, 2]
    assert all(t["f1"] >= 0.9 and t["flagged"] for t in row["tags"]) and row["others_flagged"] == 0
