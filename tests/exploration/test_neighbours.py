"""Each map's nearest maps: the exact search is scikit-learn's, a row is never its own
neighbour, the approximate search finds nearly the same neighbours, and gives the same
result however many threads search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_gmar.exploration.neighbours import EXACT_UP_TO, nearest_neighbours


def _features(count: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.random((12, 40))
    x = centres[rng.integers(0, 12, count)] + 0.05 * rng.standard_normal((count, 40))
    return x.astype(np.float32)


def test_the_exact_search_leaves_each_row_out_and_orders_its_neighbours():
    x = _features(500)
    distances, indices = nearest_neighbours(x, 7, "exact")
    assert distances.shape == indices.shape == (500, 7) and not (indices == np.arange(500)[:, None]).any()
    assert (np.diff(distances, axis=1) >= 0).all()
    brute = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(brute, np.inf)
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :7], rtol=1e-4, atol=1e-5)
    assert EXACT_UP_TO >= 10_000  # "auto" searches exactly below it


def test_the_approximate_search_finds_nearly_the_exact_neighbours_whatever_the_threads():
    x = _features()
    exact = nearest_neighbours(x, 10, "exact")[1]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nearest_neighbours(x, 10, "approximate", seed=3)
        torch.set_num_threads(2)
        two = nearest_neighbours(x, 10, "approximate", seed=3)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_array_equal(one[0], two[0])
    distances, indices = one
    assert not (indices == np.arange(len(x))[:, None]).any() and (np.diff(distances, axis=1) >= -1e-6).all()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(indices, exact)])
    assert recall >= 0.9, recall


def test_identical_rows_are_each_others_neighbours_but_not_their_own():
    x = np.repeat(_features(100), 3, axis=0)  # every row three times
    for search in ("exact", "approximate"):
        distances, indices = nearest_neighbours(x, 2, search)
        assert not (indices == np.arange(len(x))[:, None]).any()
        assert (distances[:, 0] < 1e-3).all(), search


def test_a_bad_search_is_refused():
    with pytest.raises(ValueError, match="search must be auto, exact or approximate, got 'fast'"):
        nearest_neighbours(_features(50), 3, "fast")  # type: ignore[arg-type]


def test_above_the_cells_it_searches_the_approximate_search_keeps_nearly_every_exact_neighbour_at_its_exact_distance():
    # 12,000 rows spread evenly over a cube, so that many neighbours lie across a cell's
    # border: 156 cells, of which each row's cell is compared with a part (recall 0.990;
    # 0.96 had each map searched 4 cells, 0.89 had it searched 2)
    x = np.random.default_rng(1).random((12_000, 8)).astype(np.float32)
    distances, indices = nearest_neighbours(x, 10, "approximate")
    np.testing.assert_array_equal(distances, np.linalg.norm(x[:, None] - x[indices], axis=-1))  # not the product's
    assert (np.diff(distances, axis=1) >= 0).all() and not (indices == np.arange(len(x))[:, None]).any()
    exact = nearest_neighbours(x, 10, "exact")[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(indices, exact)])
    assert recall >= 0.98, recall
