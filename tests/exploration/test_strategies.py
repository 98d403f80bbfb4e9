"""``find_strategies``: a planted shortcut is the first-ranked cluster and flagged, a class
without one has nothing flagged; a tag of varying strength stays one cluster; the
result's invariants; determinism; the number of clusters overridden; memory linear in
the maps; flat maps set aside; bad input refused in one line before any work."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from synthetic_maps import TAG, planted_maps

from captum_gmar.exploration import find_strategies
from captum_gmar.exploration.strategies import clusters_by_eigengap, maps_needed
from captum_gmar.exploration.suspicion import MIN_FLAGGED, flag_threshold
from tools.shortcut.scoring import best_match
from tools.shortcut.synthetic import Setting, synthetic_class


@pytest.fixture(scope="module")
def planted():
    return planted_maps(600, seed=1)


@pytest.fixture(scope="module")
def found(planted):
    return find_strategies(planted[0], seed=0)


@pytest.mark.parametrize("count, seed", [(500, 0), (2000, 2)])
def test_a_planted_corner_tag_is_the_first_ranked_cluster_and_flagged(count, seed):
    maps, tagged = planted_maps(count, seed=seed)
    result = find_strategies(maps, seed=seed)
    first = result.labels == result.ranking[0].label
    recall, precision = (first & tagged).sum() / tagged.sum(), (first & tagged).sum() / first.sum()
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, result.ranking)
    mean = result.mean_maps[result.ranking[0].label]
    assert mean[TAG].sum() > 0.5  # its mean map puts most of its mass on the tag
    assert result.flagged == (result.ranking[0],) and result.ranking[0].reason.startswith("flagged (suspicion ")
    assert set(result.ranking[0].region) == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize(
    "setting",
    [
        Setting(mass=0.15, objects="moving"),
        Setting(mass=0.15, objects="fixed", floor=0.3, place="edge"),
        Setting(mass=0.3, objects="fixed", place="object", tag=3),
        Setting(mass=0.25, objects="moving", floor=0.3, tagged=0.2, tag=1),
    ],
    ids=lambda s: s.name(),
)
def test_a_tag_is_first_and_flagged_on_other_classes(setting):
    """Tags of 15 to 30% of the mass, of 1 to 3 patches, in the corner, on an edge and on
    the object, on fixed and moving objects, with and without a floor of relevance."""
    maps, tagged = synthetic_class(setting, seed=3)
    result = find_strategies(maps)
    order = [c.label for c in result.ranking]
    match = best_match(result.labels, tagged, order)
    assert match.f1 >= 0.9 and match.rank == 1, (match, result.ranking)
    assert result.ranking[0].flagged


@pytest.mark.parametrize("objects, floor, sharpen", [("fixed", 0.0, 1.0), ("moving", 0.3, 1.0), ("moving", 0.0, 3.0)])
def test_a_class_without_a_tag_has_nothing_flagged_but_keeps_its_ranking(objects, floor, sharpen):
    maps, _ = synthetic_class(Setting(objects=objects, floor=floor, sharpen=sharpen).without_tag(), seed=4)
    result = find_strategies(maps)
    assert result.flagged == () and len(result.ranking) == result.n_clusters >= 2
    assert all(c.reason.startswith("not flagged") for c in result.ranking)


def test_a_tag_of_varying_strength_stays_one_cluster():
    """A tag carrying 5 to 50% of the mass on fixed objects: the eigengap alone cuts the
    tagged maps into pieces by strength; merged, the class has two strategies."""
    maps, tagged = synthetic_class(Setting(mass=0.275, mass_spread=0.82, objects="fixed", floor=0.3), seed=0)
    result = find_strategies(maps)
    assert result.clusters_found > 2 and result.n_clusters == 2
    match = best_match(result.labels, tagged, [c.label for c in result.ranking])
    assert match.f1 >= 0.95 and match.rank == 1


def test_the_result_is_consistent(planted, found):
    maps, _ = planted
    k = found.n_clusters
    assert found.labels.shape == (len(maps),) and found.labels.min() == 0 and found.labels.max() == k - 1
    assert found.embedding.shape == (len(maps), 2) and np.isfinite(found.embedding).all()
    assert found.embedding_axes.shape == (2, 14, 14)
    np.testing.assert_allclose(found.eigengaps, np.diff(found.eigenvalues))
    assert len(found.eigenvalues) == 11 and found.eigenvalues[0] == pytest.approx(0, abs=1e-8)
    assert np.all(np.diff(found.eigenvalues) >= -1e-12) and found.eigenvalues.max() <= 2
    assert found.clusters_found == int(np.argmax(found.eigengaps[1:10])) + 2 >= k  # the largest eigengap chose k, then merged
    assert found.mean_maps.shape == (k, 14, 14)
    np.testing.assert_allclose(found.mean_maps.sum(axis=(1, 2)), 1, rtol=1e-5)
    sizes = np.bincount(found.labels)
    assert list(sizes) == sorted(sizes, reverse=True)  # numbered by size
    by_label = sorted(found.ranking, key=lambda c: c.label)
    assert [c.label for c in by_label] == list(range(k)) and [c.size for c in by_label] == list(sizes)
    suspicions = [c.suspicion for c in found.ranking]
    assert suspicions == sorted(suspicions, reverse=True)
    assert found.flagged == tuple(c for c in found.ranking if c.size >= MIN_FLAGGED and c.suspicion >= flag_threshold(c.size))
    for cluster in found.ranking:
        assert 0 <= cluster.localised <= 1 and 0 <= cluster.additive <= 1 and 1 <= cluster.spread <= 196
        assert 0 <= cluster.intact <= 1 and 0 <= cluster.beyond <= 1
        assert cluster.suspicion == pytest.approx(cluster.additive * cluster.intact * cluster.beyond)
        # the region: the n_eff patches of largest excess first, then those it grew by (fewer excess)
        excess = (found.mean_maps[cluster.label] - _rest_mean(maps, found, cluster.label)).ravel()
        first = int(np.ceil(cluster.spread - 1e-9))
        named = [r * 14 + c for r, c in cluster.region]
        assert len(named) >= first and len(set(named)) == len(named) and np.isnan(cluster.confidence)
        assert set(named[:first]) == set(np.argsort(-excess, kind="stable")[:first].tolist())
        np.testing.assert_allclose(
            0.5 * np.abs(found.mean_maps[cluster.label] - _rest_mean(maps, found, cluster.label)).sum(), cluster.difference, rtol=1e-4
        )
        assert found.cluster(cluster.label) is cluster
    for label, typical in enumerate(found.typical):
        assert 1 <= len(typical) <= 8 and (found.labels[typical] == label).all() and len(set(typical.tolist())) == len(typical)
    assert len(found.flat) == 0


def _rest_mean(maps, found, label):
    """The mean of the maps a cluster is scored against: the others, less the other flagged
    clusters where it is not flagged itself (a second shortcut, ``suspicion``'s step 7)."""
    p = maps / maps.sum(axis=(1, 2), keepdims=True)
    flagged = {c.label for c in found.flagged}
    left_out = {label} if label in flagged else {label} | flagged
    return p[~np.isin(found.labels, list(left_out))].mean(axis=0)


def test_confidence_gives_each_cluster_the_models_certainty_and_leaves_the_ranking(planted, found):
    maps, tagged = planted
    margins = np.where(tagged, 2.0, 0.0) + np.linspace(0, 1, len(maps))
    again = find_strategies(maps, confidence=margins)
    assert [c.label for c in again.ranking] == [c.label for c in found.ranking]
    assert [c.suspicion for c in again.ranking] == [c.suspicion for c in found.ranking]
    assert again.ranking[0].confidence > 0.95 and "the model scores them above the rest with probability" in again.ranking[0].reason
    partly = margins.copy()
    partly[::2] = np.nan  # unknown margins are left out
    assert find_strategies(maps, confidence=partly).ranking[0].confidence > 0.95
    with pytest.raises(ValueError, match=r"confidence must be one number per map, shape \(600,\); got \(599,\)"):
        find_strategies(maps, confidence=margins[1:])


def test_the_same_maps_and_seed_give_the_same_result_whatever_their_type(planted, found):
    maps, _ = planted
    again = find_strategies(torch.from_numpy(maps).double(), seed=0)
    np.testing.assert_array_equal(again.labels, found.labels)
    np.testing.assert_array_equal(again.embedding, found.embedding)
    np.testing.assert_array_equal(again.eigenvalues, found.eigenvalues)
    assert again.ranking == found.ranking


def test_n_clusters_overrides_the_eigengap(planted, found):
    maps, tagged = planted
    assert found.n_clusters != 3
    three = find_strategies(maps, n_clusters=3)  # exactly 3: none merged
    assert three.n_clusters == 3 and set(three.labels.tolist()) == {0, 1, 2} and three.mean_maps.shape == (3, 14, 14)
    np.testing.assert_allclose(three.eigenvalues, found.eigenvalues, atol=1e-8)  # the spectrum does not depend on k
    many = find_strategies(maps, n_clusters=12, max_clusters=10)  # beyond max_clusters: more eigenvalues
    assert many.n_clusters == 12 and len(many.eigenvalues) == 13


def test_memory_stays_linear_in_the_maps():
    """No N x N array: the affinity has at most 2 N k entries, and the traced peak stays
    far below one N x N float32 matrix (the result of a dense distance matrix)."""
    count, neighbours = 3000, 10
    maps, _ = planted_maps(count, seed=3)
    find_strategies(maps[:100], max_clusters=3)  # the imports, out of the traced peak
    tracemalloc.start()
    try:
        result = find_strategies(maps, neighbours=neighbours)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert neighbours * count <= result.edges <= 2 * neighbours * count
    assert peak < count * count * 4 / 2, f"{peak / 2**20:.1f} MiB"


def test_flat_maps_are_set_aside(planted):
    maps, tagged = planted
    with_flat = np.concatenate([maps[:300], np.zeros((4, 14, 14)), np.full((2, 14, 14), 0.3), -np.ones((1, 14, 14)), maps[300:]])
    flat = np.arange(300, 307)
    result = find_strategies(with_flat)
    np.testing.assert_array_equal(result.flat, flat)
    assert (result.labels[flat] == -1).all() and np.isnan(result.embedding[flat]).all()
    kept = np.delete(np.arange(len(with_flat)), flat)
    assert (result.labels[kept] >= 0).all() and np.isfinite(result.embedding[kept]).all()
    first = result.labels[kept] == result.ranking[0].label
    assert (first & tagged).sum() / tagged.sum() >= 0.9 and (first & tagged).sum() / first.sum() >= 0.9
    # the absolute value of a negative constant map is flat too; a map negative but for one patch is not
    signed = maps[:50] - maps[:50].mean()
    assert len(find_strategies(signed, part="abs").flat) == 0 and len(find_strategies(signed, part="positive").flat) == 0


def test_maps_needed():
    assert maps_needed() == 12  # 11 eigenvalues for up to 10 clusters, and 10 neighbours
    assert maps_needed(neighbours=30) == 31 and maps_needed(neighbours=2, max_clusters=3, n_clusters=5) == 7
    maps, _ = planted_maps(12, seed=0)
    assert find_strategies(maps).n_clusters >= 2
    with pytest.raises(ValueError, match="12 maps, 0 of them flat"):
        find_strategies(maps, neighbours=12)


def _one_line_error(maps, match, **settings):
    with pytest.raises(ValueError, match=match) as error:
        find_strategies(maps, **settings)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "maps, match",
    [
        (np.ones((5, 14)), r"maps must be \(N, h, w\), one map per row; got shape \(5, 14\)"),
        (np.ones((5, 1, 14, 14)), r"got shape \(5, 1, 14, 14\)"),
        (np.ones((0, 14, 14)), "holds no map"),
        ("a picture", r"maps must be a tensor or array of numbers \(N, h, w\), got str"),
        ([[[1.0, 2.0]], [[3.0]]], "maps must be a tensor or array of numbers"),
    ],
)
def test_maps_of_the_wrong_shape_are_refused(maps, match):
    _one_line_error(maps, match)


def test_nan_and_infinite_maps_are_refused_naming_the_first():
    maps, _ = planted_maps(100, seed=0)
    maps[7, 3, 3] = np.nan
    maps[40, 0, 0] = np.inf
    _one_line_error(maps, r"2 of 100 maps hold NaN or infinite values \(the first at index 7\)")


def test_too_few_maps_are_refused_counting_the_flat_ones():
    maps, _ = planted_maps(20, seed=0)
    _one_line_error(
        maps[:11], "11 maps, 0 of them flat .constant.: 11 to cluster, fewer than the 12 that 10 neighbours and up to 10 clusters need"
    )
    maps[:10] = 0
    _one_line_error(maps, "20 maps, 10 of them flat .constant.: 10 to cluster, fewer than the 12")
    _one_line_error(
        maps[10:],
        "10 maps, 0 of them flat .constant.: 10 to cluster, fewer than the 14 that 10 neighbours and up to 12 clusters",
        n_clusters=12,
    )


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"n_clusters": 1}, "n_clusters must be an integer of at least 2"),
        ({"n_clusters": 2.5}, "n_clusters must be an integer"),
        ({"max_clusters": 1}, "max_clusters must be an integer of at least 2"),
        ({"neighbours": 0}, "neighbours must be an integer of at least 1"),
        ({"typical": True}, "typical must be an integer of at least 1"),
        ({"part": "negative"}, "part must be one of positive, abs, got 'negative'"),
    ],
)
def test_bad_settings_are_refused(settings, match):
    _one_line_error(planted_maps(50)[0], match, **settings)


def test_the_package_imports_without_scikit_learn_and_says_how_to_get_it():
    code = (
        "import sys\n"
        "import captum_gmar\n"
        "captum_gmar.find_strategies, captum_gmar.explore\n"
        "print('sklearn' in sys.modules, 'scipy' in sys.modules)\n"
        "sys.modules['sklearn'] = None  # as if not installed\n"
        "import numpy as np\n"
        "try:\n"
        "    captum_gmar.find_strategies(np.random.default_rng(0).random((50, 4, 4)))\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[0] == "False False", result.stderr
    assert lines[1].startswith("exploring maps needs scikit-learn, SciPy and faiss-cpu: pip install 'captum-gmar[explore]'"), result.stdout


def test_clusters_by_eigengap_picks_the_largest_gap_in_any_order() -> None:
    eigenvalues = np.array([0.0, 0.01, 0.02, 0.5, 0.55, 0.6, 0.62, 0.65, 0.7, 0.72, 0.75, 0.8])
    assert clusters_by_eigengap(eigenvalues[::-1]) == 3
    with pytest.raises(ValueError, match="need more than max_clusters=10"):
        clusters_by_eigengap(eigenvalues[:10])


def test_the_default_clustering_is_find_strategies_and_explores_defaults(tmp_path):
    # repair finds a named cluster again with DEFAULT_CLUSTERING and heads.cluster.MAX_SIDE:
    # they must be what explore (the function and the command) clusters with when told
    # nothing, or repair would check another cluster than the page's
    import argparse
    import inspect

    from captum_gmar.cli import explore as explore_command
    from captum_gmar.exploration import explore
    from captum_gmar.exploration.strategies import DEFAULT_CLUSTERING
    from captum_gmar.heads.cluster import MAX_SIDE

    for function in (find_strategies, explore):
        parameters = inspect.signature(function).parameters
        assert {key: parameters[key].default for key in DEFAULT_CLUSTERING} == dict(DEFAULT_CLUSTERING), function.__name__
    assert inspect.signature(explore).parameters["max_side"].default == MAX_SIDE
    commands = argparse.ArgumentParser().add_subparsers()
    explore_command.add_parser(commands, "")
    parsed = commands.choices["explore"].parse_args([str(tmp_path)])
    command = {"n_clusters": parsed.clusters, "max_clusters": parsed.max_clusters, "neighbours": parsed.neighbours, "seed": parsed.seed}
    assert command == {key: DEFAULT_CLUSTERING[key] for key in command}  # part, typical, max_side: the signature's, as above
