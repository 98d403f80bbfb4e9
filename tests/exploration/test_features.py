"""Strategies in the model's features: the clustering isolates a group offset along one
direction, the matches against the maps' clusters are F1s, and a cluster is a shortcut with no place only
where no map cluster isolates it and its direction, or its tone curve, carries the class."""

import math

import numpy as np
import pytest
import torch

from captum_gmar.exploration.feature_checks import DirectionCheck, PixelCheck
from captum_gmar.exploration.features import MATCHED_AT, FeatureCluster, check_layer, default_layer, feature_strategies, map_match
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
    labels, eigenvalues, rows = feature_strategies(features, seed=0)
    best = max(range(labels.max() + 1), key=lambda c: ((labels == c) & marked).sum() / ((labels == c) | marked).sum())
    inside = labels == best
    f1 = 2 * (inside & marked).sum() / (inside.sum() + marked.sum())
    assert f1 >= 0.9
    assert np.all(np.diff(eigenvalues) >= 0) and rows.shape[0] == len(features)


def test_too_few_images_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^8 images: fewer than the 12 that 10 neighbours and up to 10 clusters need$"):
        feature_strategies(np.zeros((8, DIM)))


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
    assert (
        not placed.flagged and not placed.no_place and "gae's cluster labelled 1 (its number, not its rank), has F1 0.80" in placed.reason
    )
    assert not FeatureCluster(0, 30, refuted, None, ANY).flagged
    assert not FeatureCluster(0, 30, None, None, ANY).flagged  # nothing to add the direction to
    joined = FeatureCluster(0, 60, confirmed, None, ANY, parts=(32, 28))
    assert (
        "joins 2 clusters of 32 + 28 images, each flagged or its direction agreeing with a flagged one's (cosine at least 0.9)"
        in joined.reason
    )


def test_the_layer_defaults_to_two_thirds_of_the_way_up_and_others_are_refused() -> None:
    assert [default_layer(n) for n in (1, 3, 6, 12)] == [0, 2, 4, 8]
    assert check_layer(None, 6) == 4 and check_layer(5, 6) == 5
    for bad in (-1, 6, 2.0, True):
        with pytest.raises(ValueError, match=r"^the features' layer must be an integer from 0 to 5 \(this model's layers\), got"):
            check_layer(bad, 6)


def test_a_shortcut_with_no_place_is_confirmed_by_its_direction_or_a_proxy_in_pixels() -> None:
    refuted = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.05, random=0.0, random_spread=0.01)
    confirmed = DirectionCheck(recipients=64, norm=1.0, plain=0.1, rise=0.6, random=0.0, random_spread=0.01)
    curve = PixelCheck(recipients=32, proxy="tone curve", rise=0.6, random=0.01, random_spread=0.01)
    flat = PixelCheck(recipients=32, proxy="tone curve", rise=0.1, random=math.nan, random_spread=math.nan)
    blur = PixelCheck(recipients=32, proxy="filter", rise=0.8, random=0.05, random_spread=0.02)
    flat_filter = PixelCheck(recipients=32, proxy="filter", rise=0.0, random=math.nan, random_spread=math.nan)
    cluster = FeatureCluster(0, 30, refuted, None, ANY, (curve, flat_filter))
    assert cluster.flagged and cluster.confirmed_by == ("tone curve",) and cluster.beyond == pytest.approx(0.59)
    assert "its tone curve, put on 32 images of other classes" in cluster.reason and "its filter, put on 32" in cluster.reason
    assert FeatureCluster(0, 30, confirmed, None, ANY, (curve, flat_filter)).confirmed_by == ("direction", "tone curve")
    by_filter = FeatureCluster(0, 30, refuted, None, ANY, (flat, blur))  # a blur: neither direction nor curve carries it
    assert by_filter.flagged and by_filter.confirmed_by == ("filter",) and by_filter.beyond == pytest.approx(0.75)
    assert not FeatureCluster(0, 30, refuted, None, ANY, (flat, flat_filter)).flagged
    assert not FeatureCluster(0, 30, refuted, ("gae", 1, MATCHED_AT), ANY, (curve, blur)).flagged  # a map cluster places it
