"""The suspicion of a cluster, as functions over distributions and labels: a cluster that
is the rest plus mass on one region, of one patch or a frame, scores near 1 and names
that region; one that is the rest moved, or drawn from the same maps, scores low; a
small cluster must score more to be flagged, and one of a few maps never is; the figures do not depend on
the order of the maps nor on how the patches are laid out; the sums are exact in blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from captum_gmar.exploration import suspicion
from captum_gmar.exploration.suspicion import FLAG_AT, FLAG_SMALL, MIN_FLAGGED, cluster_sums, excess_direction, flag_threshold, suspicions


def _normalised(x: np.ndarray) -> np.ndarray:
    return (x / x.sum(axis=1, keepdims=True)).astype(np.float32)


def _class(rng: np.random.Generator, n: int = 400, patches: int = 64) -> np.ndarray:
    """``n`` maps alike up to noise: a smooth bump over ``patches`` patches."""
    bump = np.exp(-0.5 * ((np.arange(patches) - patches / 2) / (patches / 6)) ** 2)
    return _normalised(bump + 0.2 * rng.random((n, patches)))


def _ring(left: float = 1.0, corners: float = 1.0) -> np.ndarray:
    """``(64,)``: a frame's distribution over the 8 x 8 grid, its left column between the
    corners weighted ``left``, its corners ``corners``."""
    frame = np.zeros((8, 8))
    frame[[0, -1], :] = frame[:, [0, -1]] = 1
    frame[[0, 0, -1, -1], [0, -1, 0, -1]] = corners
    frame[1:-1, 0] = left
    return (frame / frame.sum()).ravel()


RING = {(r, c) for r in range(8) for c in range(8) if r in (0, 7) or c in (0, 7)}


def _objects(rng: np.random.Generator, n: int, rows: tuple[int, int], columns: tuple[int, int]) -> np.ndarray:
    """``float32 (n, 64)``: each map an object (a bump) centred at a drawn place of the 8 x 8
    grid (``rows`` and ``columns`` as ``[low, high)``), over a little noise."""
    grid_rows, grid_columns = np.mgrid[0:8, 0:8]
    centres = np.stack([rng.integers(*rows, n), rng.integers(*columns, n)], axis=1)
    bumps = np.exp(-0.5 * ((grid_rows[None] - centres[:, :1, None]) ** 2 + (grid_columns[None] - centres[:, 1:, None]) ** 2) / 0.8**2)
    return _normalised(bumps.reshape(n, 64) + 0.01 * rng.random((n, 64)))


def test_the_rest_plus_mass_on_one_patch_is_localised_additive_and_flagged():
    rng = np.random.default_rng(0)
    p = _class(rng)
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:40] = 1
    tag = np.zeros(p.shape[1], dtype=np.float32)
    tag[5] = 1
    p[:40] = 0.7 * p[:40] + 0.3 * tag
    figures = suspicions(p, labels, 2, width=8)
    tagged, rest = figures[1], figures[0]
    assert tagged.region == ((0, 5),) and tagged.spread == pytest.approx(1, abs=0.05)
    assert tagged.localised == pytest.approx(1 - tagged.spread / 64)
    assert tagged.additive > 0.95 and tagged.flagged and tagged.suspicion >= FLAG_AT
    assert tagged.difference == pytest.approx(0.3 * (1 - p[40:, 5].mean() / 0.7 * 0.7), abs=0.02)
    assert tagged.member_mass > 0.3 and tagged.rest_mass < 0.02 and tagged.shared == 1.0
    # the rest's excess over the tagged maps is the 30% they kept everywhere else: spread out
    assert rest.spread > 30 and not rest.flagged
    assert math.isnan(tagged.confidence)


def test_maps_drawn_like_the_rest_or_moved_are_not_flagged():
    rng = np.random.default_rng(1)
    p = _class(rng)
    labels = (np.arange(len(p)) % 5 == 0).astype(np.int64)  # a random fifth: the same maps
    # what differs is chance, which the residual's noise level absorbs: "additive" near 1,
    # but the chance excess is spread over many patches
    same = suspicions(p, labels, 2, width=8)
    assert max(f.suspicion for f in same) < FLAG_AT and min(f.spread for f in same) > 10
    moved = p.copy()
    moved[:80] = np.roll(p[:80], 6, axis=1)  # the object elsewhere: different everywhere it is
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:80] = 1
    figures = suspicions(moved, labels, 2, width=8)
    assert figures[1].spread > 8 and figures[1].additive < 0.7 and not figures[1].flagged


def test_a_frame_is_as_suspicious_as_a_tag_of_one_patch():
    rng = np.random.default_rng(5)
    rows, columns = np.mgrid[0:8, 0:8]
    bump = np.exp(-0.5 * ((rows - 3.5) ** 2 + (columns - 3.5) ** 2) / 1.5**2).ravel()  # an object in the middle
    p = _normalised(bump + 0.05 * rng.random((400, 64)))
    frame = np.zeros((8, 8), dtype=np.float32)
    frame[[0, -1], :] = frame[:, [0, -1]] = 1  # 28 of the 64 patches
    frame = frame.ravel() / frame.sum()
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:40] = 1
    p[:40] = 0.7 * p[:40] + 0.3 * frame
    framed = suspicions(p, labels, 2, width=8)[1]
    assert framed.spread > 20 and framed.localised < 0.7  # most of a ring: no small region
    assert framed.additive > 0.95 and framed.intact > 0.95 and framed.beyond == 1.0 and framed.flagged
    assert {(0, 0), (7, 7), (0, 7), (7, 0)} <= set(framed.region)


def test_a_frame_that_takes_most_of_its_maps_is_found_whole_where_the_rest_has_mass_on_it():
    # the class's objects sit near the top edge; the framed maps keep 30% for their
    # object, so their mean on the top row is below the rest's though the frame added to
    # it: the plain excess leaves the top row out of the region, the scaled one does not
    p = _objects(np.random.default_rng(7), 400, (1, 3), (1, 7))
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:100] = 1
    p[:100] = 0.3 * p[:100] + 0.7 * _ring()
    framed = suspicions(p, labels, 2, width=8)[1]
    assert set(framed.region) == RING
    assert framed.additive > 0.9 and framed.flagged


def test_a_frame_with_a_side_the_model_looks_at_less_is_found_whole():
    # the class's objects reach the left column; the framed maps put 70% of their mass on
    # a frame with heavy corners and a left side of 0.4 of the others: there the members'
    # added mass is not among the n_eff largest, but a material share of the region's
    p = _objects(np.random.default_rng(0), 400, (1, 7), (0, 6))
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:80] = 1
    p[:80] = 0.3 * p[:80] + 0.7 * _ring(left=0.4, corners=4.0)
    framed = suspicions(p, labels, 2, width=8)[1]
    assert set(framed.region) == RING  # the n_eff largest alone missed the left column (additive 0.86)
    assert framed.additive > 0.95 and framed.flagged


def test_the_complement_of_a_frames_cluster_is_not_grown_over_the_class_objects():
    # 10% of the maps carry a frame with a quarter of their mass; the other 90% "add"
    # mass on the object, where the framed maps have less: grown past half of the rest's
    # mass, its region covered the whole middle and the larger cluster scored 1.0
    rng = np.random.default_rng(9)
    rows, columns = np.mgrid[0:8, 0:8]
    bump = np.exp(-0.5 * ((rows - 3.5) ** 2 + (columns - 3.5) ** 2)).ravel()
    p = _normalised(bump + 0.1 * rng.random((300, 64)))
    labels = np.zeros(len(p), dtype=np.int64)
    labels[270:] = 1
    p[270:] = 0.75 * p[270:] + 0.25 * _ring()
    complement, framed = suspicions(p, labels, 2, width=8)
    assert framed.flagged and set(framed.region) == RING
    assert not complement.flagged and complement.suspicion < 0.5


def test_residual_maps_a_little_flatter_than_the_rests_stay_intact_and_far_flatter_do_not():
    rng = np.random.default_rng(10)
    rows, columns = np.mgrid[0:8, 0:8]
    centres = rng.integers(2, 6, (400, 2))
    objects = np.exp(-0.5 * ((rows[None] - centres[:, :1, None]) ** 2 + (columns[None] - centres[:, 1:, None]) ** 2) / 0.8**2).reshape(
        400, 64
    )
    p = _normalised(objects + 0.02 * rng.random((400, 64)))
    tag = np.zeros(64)
    tag[9] = 1
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:60] = 1
    # the members' objects drawn with a floor: their maps without the tag a little flatter, or nothing but floor
    for floor, intact in ((0.01, True), (1.0, False)):
        members = _normalised(objects[:60] + floor + 0.02 * rng.random((60, 64)))
        q = p.copy()
        q[:60] = 0.7 * members + 0.3 * tag
        figures = suspicions(q, labels, 2, width=8)[1]
        assert (figures.intact > 0.95) == intact, (floor, figures.intact)


def test_a_small_cluster_needs_more_and_a_few_maps_are_never_flagged():
    assert flag_threshold(MIN_FLAGGED - 1) is None and flag_threshold(MIN_FLAGGED) == pytest.approx(FLAG_SMALL)
    assert flag_threshold(20) == flag_threshold(10_000) == pytest.approx(FLAG_AT)
    thresholds = [flag_threshold(n) for n in range(MIN_FLAGGED, 30)]
    assert thresholds == sorted(thresholds, reverse=True)
    rng = np.random.default_rng(6)
    p = _class(rng, n=100)
    tag = np.zeros(p.shape[1], dtype=np.float32)
    tag[5] = 1
    labels = np.zeros(len(p), dtype=np.int64)
    labels[: MIN_FLAGGED - 1] = 1
    p[: MIN_FLAGGED - 1] = 0.7 * p[: MIN_FLAGGED - 1] + 0.3 * tag
    few = suspicions(p, labels, 2, width=8)[1]
    assert few.suspicion > FLAG_SMALL and few.threshold is None and not few.flagged


def test_the_figures_do_not_depend_on_the_order_of_maps_or_the_layout_of_patches():
    rng = np.random.default_rng(2)
    p = _class(rng, n=300)
    p[:30, 10] += 0.5
    p = _normalised(p)
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:30], labels[30:120] = 1, 2
    confidence = rng.random(len(p))
    base = suspicions(p, labels, 3, width=8, confidence=confidence)
    order = rng.permutation(len(p))
    shuffled = suspicions(p[order], labels[order], 3, width=8, confidence=confidence[order])
    layout = rng.permutation(p.shape[1])  # the patches renumbered: the same figures, the region renamed
    moved = suspicions(p[:, layout], labels, 3, width=8, confidence=confidence)
    where = {int(j): i for i, j in enumerate(layout)}
    for a, b, c in zip(base, shuffled, moved):
        for name in (
            "suspicion",
            "localised",
            "additive",
            "intact",
            "beyond",
            "difference",
            "spread",
            "member_mass",
            "rest_mass",
            "shared",
            "confidence",
        ):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-6, abs=1e-9), name
            assert getattr(a, name) == pytest.approx(getattr(c, name), rel=1e-6, abs=1e-9), name
        assert a.region == b.region
        assert [divmod(where[r * 8 + col], 8) for r, col in a.region] == list(c.region)


def test_confidence_is_the_probability_that_a_member_is_surer_than_the_rest():
    rng = np.random.default_rng(3)
    p = _class(rng, n=100)
    labels = np.zeros(100, dtype=np.int64)
    labels[:20] = 1
    above = np.where(labels == 1, 1.0, 0.0)
    assert suspicions(p, labels, 2, width=8, confidence=above)[1].confidence == 1.0
    assert suspicions(p, labels, 2, width=8, confidence=-above)[1].confidence == 0.0
    assert suspicions(p, labels, 2, width=8, confidence=np.zeros(100))[1].confidence == 0.5  # ties count half
    unknown = np.full(100, np.nan)
    assert math.isnan(suspicions(p, labels, 2, width=8, confidence=unknown)[1].confidence)


def test_cluster_sums_are_exact_across_blocks(monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(4)
    p = rng.random((1000, 12)).astype(np.float32)
    labels = rng.integers(0, 4, 1000)
    expected = np.stack([p[labels == c].sum(axis=0, dtype=np.float64) for c in range(4)])
    monkeypatch.setattr(suspicion, "_BLOCK", 97)
    np.testing.assert_allclose(cluster_sums(p, labels, 4), expected, rtol=1e-12)
    blocked = suspicions(_normalised(p), labels, 4, width=4)
    monkeypatch.setattr(suspicion, "_BLOCK", 1 << 16)
    whole = suspicions(_normalised(p), labels, 4, width=4)
    for a, b in zip(blocked, whole):
        assert a.suspicion == pytest.approx(b.suspicion, rel=1e-9) and a.region == b.region


def test_the_excess_direction_is_a_unit_vector_on_the_positive_excess():
    sums = np.array([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    sizes = np.array([4, 3, 3])
    direction = excess_direction(sums, sizes, 0)
    assert np.linalg.norm(direction) == pytest.approx(1) and direction[0] > 0 and direction[1] == direction[2] == 0
    assert not excess_direction(np.ones((2, 3)), np.array([1, 1]), 0).any()  # no excess: zero


def test_a_second_shortcut_is_scored_against_the_rest_less_the_flagged_cluster():
    rng = np.random.default_rng(8)
    p = _class(rng)
    labels = np.zeros(len(p), dtype=np.int64)
    labels[:40], labels[40:80] = 1, 2
    first, second = np.zeros(64, dtype=np.float32), np.zeros(64, dtype=np.float32)
    first[5], second[60] = 1, 1
    p[:40] = 0.4 * p[:40] + 0.6 * first  # a strong mark, which the rest would otherwise hold
    p[40:80] = 0.7 * p[40:80] + 0.3 * second
    figures = suspicions(p, labels, 3, width=8)
    assert figures[1].flagged and figures[2].flagged
    # scored as if the first shortcut's maps were not in the class (its mark in the rest
    # would make the second's maps look as if they lacked it: additive about 0.8)
    alone = suspicions(p[40:], (labels[40:] == 2).astype(np.int64), 2, width=8)[1]
    assert figures[2].region == alone.region and figures[2].additive == pytest.approx(alone.additive, abs=1e-9)
    assert figures[2].rest_mass == pytest.approx(alone.rest_mass)
    assert figures[2].rest_less_flagged and not figures[1].rest_less_flagged and not alone.rest_less_flagged
