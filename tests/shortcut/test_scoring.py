"""Recall, precision and rank of the cluster that holds the tagged images."""

from __future__ import annotations

import numpy as np
import pytest

from tools.shortcut.scoring import best_match, cluster_match


def test_cluster_match_counts_recall_precision_and_rank() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, -1])
    tagged = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 1], dtype=bool)  # 4 tagged, one of them set aside
    m = cluster_match(labels, tagged, 1, order=[2, 1, 0])
    assert (m.recall, m.precision, m.rank) == (0.5, 1.0, 2)
    assert m.f1 == pytest.approx(2 / 3)
    assert cluster_match(labels, tagged, 0).rank is None and cluster_match(labels, tagged, 0).f1 == 0.0


def test_best_match_takes_the_highest_f1_not_the_highest_recall() -> None:
    labels = np.array([0] * 10 + [1] * 3)
    tagged = np.zeros(13, dtype=bool)
    tagged[[0, 1, 2, 10, 11]] = True  # cluster 0: recall 0.6, precision 0.3; cluster 1: 0.4, 0.67
    best = best_match(labels, tagged, order=[1, 0])
    assert best.cluster == 1 and best.rank == 1


def test_cluster_match_refuses_no_tagged_image() -> None:
    with pytest.raises(ValueError, match="no image is tagged"):
        cluster_match(np.zeros(4, dtype=int), np.zeros(4, dtype=bool), 0)
