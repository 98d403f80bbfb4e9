"""One shortcut the clustering split: clusters whose directions agree with a flagged one's
are joined, clusters that move the features in other directions are not."""

import numpy as np
import torch

from captum_gmar.exploration.aligned import JOINED_AT, aligned_groups, joined, undiluted

DIM = 16


def split_features(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """140 features: 60 clean (label 0), 30 + 30 moved far along the first axis and a
    little up or down a second one (labels 1 and 2: a tint on two kinds of item), and 20
    moved along a third axis alone (label 3: another change)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(140, DIM))
    labels = np.repeat([0, 1, 2, 3], [60, 30, 30, 20])
    features[labels == 1, 0] += 8
    features[labels == 2, 0] += 8
    features[labels == 1, 1] += 0.5
    features[labels == 2, 1] -= 0.5
    features[labels == 3, 2] += 8
    return torch.from_numpy(features).float(), labels


def test_two_halves_of_one_shift_are_one_group_and_another_shift_is_not() -> None:
    features, labels = split_features()
    assert aligned_groups(features, labels, [1, 2, 3]) == [[1, 2]]
    assert aligned_groups(features, labels, [1, 3]) == []  # flagged, but along another direction
    assert aligned_groups(features, labels, [1]) == []  # one flagged cluster: nothing to join
    assert aligned_groups(features, labels, [0, 1, 2, 3]) == []  # no image outside the flagged: no reference
    # the halves' cosine (0.99 here) stands above the bar; a bar above it keeps them apart
    assert aligned_groups(features, labels, [1, 2], at=JOINED_AT) == [[1, 2]] and aligned_groups(features, labels, [1, 2], at=0.999) == []
    # a chain: parts below the bar of each other are one group where a third links them
    chain = torch.tensor([[1.0, 0.0], [0.940, 0.342], [0.766, 0.643], [0.0, 0.0]]).repeat_interleave(5, 0)  # 0, 20 and 40 degrees
    assert aligned_groups(chain, np.repeat([0, 1, 2, 3], 5), [0, 1, 2], at=0.9) == [[0, 1, 2]]


def test_joined_clusters_are_one_renumbered_by_size_with_their_parts() -> None:
    features, labels = split_features()
    merged, parts = joined(labels, [[1, 2]])
    assert sorted(np.bincount(merged).tolist(), reverse=True) == [60, 60, 20]
    (label,) = parts
    assert parts[label] == (30, 30) and np.array_equal(merged == label, np.isin(labels, [1, 2]))
    assert merged[labels == 3].tolist() == [2] * 20  # renumbered by size: the smallest last
    unchanged, none = joined(labels, [])
    assert np.array_equal(unchanged, labels) and none == {}


def test_a_part_not_flagged_joins_a_flagged_one_along_its_direction_and_never_makes_a_group_alone() -> None:
    features, labels = split_features()
    # one half flagged, the other short of its check: joined, the flagged one first
    assert aligned_groups(features, labels, [1], others=[2, 3]) == [[1, 2]]
    assert aligned_groups(features, labels, [2], others=[1]) == [[2, 1]]
    # another change, not flagged, joins nothing; parts not flagged are no group among themselves
    # (the two halves agree at 0.99, linked only through a flagged cluster)
    assert aligned_groups(features, labels, [3], others=[1, 2]) == []
    assert aligned_groups(features, labels, [], others=[1, 2]) == []
    # a part not flagged that holds every image outside the flagged one has no reference: nothing joins
    assert aligned_groups(features[labels <= 1], labels[labels <= 1], [1], others=[0]) == []


def test_a_join_spoilt_by_a_part_not_flagged_falls_back_to_its_flagged_parts_alone_the_others_kept() -> None:
    # two shortcuts: 1 + 2 + 5 (5 not flagged: it spoilt the join), 3 + 4 (both flagged: kept)
    groups = [[1, 2, 5], [3, 4]]
    spoilt = {(1, 2, 5)}
    alone = [[1, 2], [3, 4]]  # the flagged clusters' own groups

    def diluted(group: list[int]) -> bool:
        return tuple(group) in spoilt

    assert undiluted(groups, diluted, alone) == [[3, 4], [1, 2]]
    # a spoilt group whose flagged parts make no group alone: no join left of it
    assert undiluted(groups, diluted, [[3, 4]]) == [[3, 4]]
    # none spoilt: every group as joined; every one spoilt, and no flagged group: none
    assert undiluted(groups, lambda group: False, alone) == groups
    assert undiluted(groups, lambda group: True, []) == []
