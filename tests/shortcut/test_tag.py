"""The planted tag: where it lands, on which scenes."""

from __future__ import annotations

import numpy as np
import pytest

from tools.shortcut.tag import TAGS, Tag, choose_tagged, plant_tag


def test_plant_tag_draws_the_square_on_the_tagged_images_only() -> None:
    images = np.zeros((3, 64, 64, 3), dtype=np.uint8)
    out = plant_tag(images, np.array([True, False, True]), Tag(top=1, left=1, size=6, colour=(255, 0, 255)))
    assert images.max() == 0  # a copy
    assert (out[1] == 0).all()
    changed = (out[0] != 0).any(-1)
    assert changed.sum() == 36 and changed[1:7, 1:7].all()
    assert (out[2, 3, 3] == (255, 0, 255)).all()


def test_default_tag_is_one_patch_of_the_reference_grid() -> None:
    assert Tag().patch(8) == (0, 0)
    with pytest.raises(ValueError, match="straddles"):
        Tag(top=5, left=1, size=6).patch(8)


def test_plant_tag_refuses_a_tag_outside_the_image() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        plant_tag(np.zeros((1, 8, 8, 3), dtype=np.uint8), np.array([True]), Tag(top=4, left=0, size=6))


def test_choose_tagged_tags_only_scenes_of_the_class_at_the_share() -> None:
    labels = np.array([[6, -1], [2, 6], [1, 3]] * 2000)
    tagged = choose_tagged(labels, 6, 0.4, np.random.default_rng(0))
    holds = (labels == 6).any(1)
    assert not tagged[~holds].any()
    assert abs(tagged[holds].mean() - 0.4) < 0.03
    assert choose_tagged(labels, 6, 1.0, np.random.default_rng(0)).sum() == holds.sum()


def test_a_frame_and_a_line_cover_the_border_and_the_bottom_row_of_patches():
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    framed = plant_tag(images, np.array([True, False]), TAGS["frame"])
    assert (framed[0, :2] == 150).all() and (framed[0, :, -2:] == 150).all() and not framed[0, 2:-2, 2:-2].any()
    assert not framed[1].any()
    patches = framed[0, :, :, 0].reshape(8, 8, 8, 8).max(axis=(1, 3)) > 0  # the 8 x 8 grid of 8 px patches
    assert patches.sum() == 28 and not patches[1:-1, 1:-1].any()  # every border patch, no other
    lined = plant_tag(images, np.array([True, True]), TAGS["line"])[0, :, :, 0]
    assert lined[61:, 0:4].all() and not lined[61:, 4:8].any() and not lined[:61].any()  # dashes along the bottom edge
    with pytest.raises(ValueError, match="only a square tag sits in one"):
        TAGS["frame"].patch(8)


def test_a_bracket_covers_two_edges_and_a_scatter_the_same_places_on_every_image():
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    bracket = plant_tag(images, np.array([True, True]), TAGS["bracket"])[..., 0]
    assert (bracket[:, :2] == 200).all() and (bracket[:, :, :2] == 200).all() and not bracket[:, 2:, 2:].any()
    dots = plant_tag(images, np.array([True, True]), TAGS["scatter"])[..., 1]  # cyan: its green channel
    assert np.array_equal(dots[0], dots[1])  # fixed places, not drawn per image
    patches = dots[0].reshape(8, 8, 8, 8).max(axis=(1, 3)) > 0
    assert 8 <= patches.sum() <= 24 and 0 < dots[0].astype(bool).mean() < 0.05  # spread over many patches, few pixels


def test_the_shortcuts_with_no_place_change_the_whole_scene_and_only_the_tagged_ones():
    rng = np.random.default_rng(0)
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    images[:, 20:44, 20:44] = rng.integers(120, 220, size=(2, 24, 24, 3))  # a bright item on the black background
    tagged = np.array([True, False])
    cast = plant_tag(images, tagged, TAGS["cast"]).astype(int)
    red = images[0, ..., 0].astype(int)
    assert (np.minimum(red + 70, 255) == cast[0, ..., 0]).all() and (cast[0, ..., 2] == images[0, ..., 2]).all()  # clipped at 255
    assert np.array_equal(cast[1], images[1])
    flat = plant_tag(images, tagged, TAGS["contrast"]).astype(int)
    assert flat[0, 0, 0, 0] == 64 and flat[0].std() < images[0].std()  # black to 64: half-way to mid-grey
    noisy = plant_tag(images, tagged, TAGS["noise"]).astype(int)
    assert noisy[0, :10, :10].std() > 10 and np.array_equal(noisy[0, 20:44, 20:44], images[0, 20:44, 20:44])  # the background only
    again = plant_tag(images[::-1], tagged, TAGS["noise"])
    assert np.array_equal(again[0, :10, :10], noisy[0, :10, :10])  # one texture, drawn once
    grainy = plant_tag(images, np.array([True, True]), TAGS["grain"]).astype(int)
    assert grainy[0, :10, :10].std() > 10 and np.array_equal(grainy[0, 20:44, 20:44], images[0, 20:44, 20:44])  # the background only
    assert not np.array_equal(grainy[0, :10, :10], grainy[1, :10, :10])  # each scene its own grain (same black corner)
    assert np.array_equal(plant_tag(images, np.array([True, True]), TAGS["grain"]), grainy)  # seeded by the scene: drawn again alike
    blurred = plant_tag(images, tagged, TAGS["blur"]).astype(int)
    assert blurred[0, 19, 30].max() > 0 and abs(blurred[0].mean() - images[0].mean()) < 1  # edges spread, brightness kept
    bright = plant_tag(images, tagged, TAGS["gamma"]).astype(int)
    assert bright[0, 0, 0].max() == 0 and bright[0, 20:44, 20:44].mean() > images[0, 20:44, 20:44].mean() + 20  # items brighter, black kept
    assert (bright[0] >= images[0]).all() and bright[0].max() <= 255
    for name in ("cast", "contrast", "noise", "grain", "blur", "gamma"):
        assert TAGS[name].pixels(64, 64).all()
