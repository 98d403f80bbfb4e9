"""Strategies in the model's features: the clustering isolates a group offset along one
direction, the intervention confirms a direction the scores depend on and no other, the
matches against the maps' clusters are F1s, and a cluster is a shortcut with no place only
where no map cluster isolates it and its direction, or its tone curve, carries the class."""

import math

import numpy as np
import pytest
import torch

from captum_gmar.exploration.features import (
    MATCHED_AT,
    CurveCheck,
    DirectionCheck,
    FeatureCluster,
    check_layer,
    curve_check,
    default_layer,
    direction_check,
    feature_strategies,
    map_match,
)
from captum_gmar.exploration.strategies import find_strategies

DIM = 64
ANY = torch.zeros(DIM)  # a direction, where only the verdict is tested


def offset_features(count: int = 300, share: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` features of ``DIM`` dimensions, a share of them moved along the first axis
    by six times the spread of every other axis (a tint moving every patch alike)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, DIM))
    marked = rng.random(count) < share
    features[marked, 0] += 6.0
    return features, marked


def test_the_clustering_isolates_images_moved_along_one_direction() -> None:
    features, marked = offset_features()
    labels, eigenvalues, typical = feature_strategies(features, seed=0)
    best = max(range(labels.max() + 1), key=lambda c: ((labels == c) & marked).sum() / ((labels == c) | marked).sum())
    inside = labels == best
    f1 = 2 * (inside & marked).sum() / (inside.sum() + marked.sum())
    assert f1 >= 0.9
    assert np.all(np.diff(eigenvalues) >= 0) and len(typical) == labels.max() + 1
    assert all(np.all(labels[t] == c) for c, t in enumerate(typical))


def test_too_few_images_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^8 images: fewer than the 12 that 10 neighbours and up to 10 clusters need$"):
        feature_strategies(np.zeros((8, DIM)))


def linear_scores(weights: torch.Tensor, recipients: int = 40):
    """Scores that rise with a direction's projection on ``weights``: ``sigmoid(-2 + d . w)``
    on every recipient (their own spread as a small offset)."""
    offsets = torch.linspace(-0.1, 0.1, recipients, dtype=torch.float64)

    def shifted(directions: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-2.0 + directions.double() @ weights.double())[:, None] + offsets[None] * 0.01

    return shifted


def test_a_direction_the_scores_depend_on_is_confirmed_and_an_orthogonal_one_is_not() -> None:
    weights = torch.zeros(DIM)
    weights[0] = 1.0
    along = torch.zeros(DIM)
    along[0] = 4.0
    shifted = linear_scores(weights)
    plain = shifted(torch.zeros(1, DIM))[0]
    check = direction_check(shifted, along, plain, seed=0)
    assert check.rise == pytest.approx(float(torch.sigmoid(torch.tensor(2.0)) - torch.sigmoid(torch.tensor(-2.0))), abs=1e-6)
    assert check.norm == pytest.approx(4.0) and check.recipients == 40
    assert abs(check.random) < 0.1 and check.confirms  # random directions of norm 4 barely touch the first axis
    across = torch.zeros(DIM)
    across[1] = 4.0
    flat = direction_check(shifted, across, plain, seed=0)
    assert flat.rise == pytest.approx(0.0, abs=1e-6) and not flat.confirms
    # below 0.2 nothing could confirm it: the random directions are not drawn
    assert flat.screened and math.isnan(flat.random) and not check.screened
    assert "random directions of the same norm not drawn: the rise is below 0.2" in flat.summary()


def test_the_random_directions_spread_raises_what_a_rise_needs() -> None:
    calm = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.5, random=0.05, random_spread=0.01)
    wild = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.5, random=0.05, random_spread=0.2)
    assert calm.needed == pytest.approx(0.2) and calm.beyond == pytest.approx(0.45) and calm.confirms
    assert wild.needed == pytest.approx(0.6) and not wild.confirms
    lowering = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.25, random=-0.3, random_spread=0.01)
    assert lowering.beyond == pytest.approx(0.25)  # beyond 0 where the random directions lower the class
    assert "raises the class's score from 0.100 by +0.500" in calm.summary()
    undrawn = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.15, random=math.nan, random_spread=math.nan)
    assert undrawn.screened and undrawn.beyond == pytest.approx(0.15) and undrawn.needed == 0.2 and not undrawn.confirms


def test_matches_are_the_best_f1_over_every_method_and_cluster() -> None:
    maps, _ = np.random.default_rng(0).random((40, 4, 4)), None
    labels = np.array([0] * 30 + [1] * 10)
    found = find_strategies(maps.astype(np.float32), n_clusters=2, neighbours=5, max_clusters=3)
    matches = map_match(labels, {"m": found})
    for c, match in enumerate(matches):
        assert match is not None and match[0] == "m"
        inside, chosen = labels == c, found.labels == match[1]
        assert match[2] == pytest.approx(2 * (inside & chosen).sum() / (inside.sum() + chosen.sum()))
        assert match[2] == max(
            2 * (inside & (found.labels == k)).sum() / (inside.sum() + (found.labels == k).sum()) for k in range(found.n_clusters)
        )
    assert map_match(labels, {}) == [None, None]


def test_a_shortcut_with_no_place_is_unmatched_and_confirmed() -> None:
    confirmed = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.6, random=0.0, random_spread=0.01)
    refuted = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.05, random=0.0, random_spread=0.01)
    assert FeatureCluster(0, 30, confirmed, ("gae", 1, MATCHED_AT - 0.01), ANY).flagged
    assert FeatureCluster(0, 30, confirmed, None, ANY).flagged
    placed = FeatureCluster(0, 30, confirmed, ("gae", 1, MATCHED_AT), ANY)
    assert not placed.flagged and not placed.no_place and "gae's cluster 1, has F1 0.50" in placed.reason
    assert not FeatureCluster(0, 30, refuted, None, ANY).flagged
    assert not FeatureCluster(0, 30, None, None, ANY).flagged  # nothing to add the direction to


def test_the_layer_defaults_to_two_thirds_of_the_way_up_and_others_are_refused() -> None:
    assert [default_layer(n) for n in (1, 3, 6, 12)] == [0, 2, 4, 8]
    assert check_layer(None, 6) == 4 and check_layer(5, 6) == 5
    for bad in (-1, 6, 2.0, True):
        with pytest.raises(ValueError, match=r"^the features' layer must be an integer from 0 to 5 \(this model's layers\), got"):
            check_layer(bad, 6)


def test_a_tone_curve_is_confirmed_beyond_the_curve_made_from_random_images_of_the_class() -> None:
    inside = np.arange(40) < 10
    drawn = []

    def rise_of(chosen: np.ndarray) -> float:  # the cluster's images carry the class; random ones a share of that
        drawn.append(chosen.copy())
        return 0.7 * float(chosen[inside].sum()) / chosen.sum()

    check = curve_check(rise_of, inside, recipients=32, draws=5, seed=3)
    assert check.rise == pytest.approx(0.7) and check.recipients == 32
    # the null: five draws of as many images of the class as the cluster holds, at random
    assert len(drawn) == 6 and np.array_equal(drawn[0], inside) and all(d.sum() == 10 for d in drawn[1:])
    expected = [rise_of(d) for d in drawn[1:6]]
    assert check.random == pytest.approx(np.mean(expected)) and check.random_spread == pytest.approx(np.std(expected, ddof=1))
    assert (
        check.confirms
        and "its tone curve, put on 32 images of other classes in pixels, raises the class's score by +0.700" in check.summary()
    )
    # below 0.2 nothing could confirm it: the null is not drawn
    flat = curve_check(lambda chosen: 0.1, inside, recipients=32)
    assert (
        flat.screened
        and not flat.confirms
        and "the curve from random images of the class not drawn: the rise is below 0.2" in flat.summary()
    )


def test_a_shortcut_with_no_place_is_confirmed_by_its_direction_or_its_tone_curve() -> None:
    refuted = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.05, random=0.0, random_spread=0.01)
    confirmed = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.6, random=0.0, random_spread=0.01)
    curve = CurveCheck(32, 0.6, 0.01, 0.01)
    flat = CurveCheck(32, 0.1, math.nan, math.nan)
    cluster = FeatureCluster(0, 30, refuted, None, ANY, curve)
    assert cluster.flagged and cluster.confirmed_by == ("tone curve",) and cluster.beyond == pytest.approx(0.59)
    assert "its tone curve, put on 32 images of other classes" in cluster.reason
    assert FeatureCluster(0, 30, confirmed, None, ANY, curve).confirmed_by == ("direction", "tone curve")
    assert not FeatureCluster(0, 30, refuted, None, ANY, flat).flagged
    assert not FeatureCluster(0, 30, refuted, ("gae", 1, MATCHED_AT), ANY, curve).flagged  # a map cluster places it
