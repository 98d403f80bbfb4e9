"""``explore``: on a real job's maps it writes clusters.csv, disagreement.csv and
strategies.json, with a row per map and per image; on stored maps with a planted
shortcut its first-ranked cluster is the shortcut; bad input is one line, before any
work, and nothing is written outside EXP (nor in it, where refused)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from synthetic_maps import planted_maps, write_folder

from captum_gmar import explore, load_maps, load_reference_model
from captum_gmar.exploration.folder import CLUSTER_COLUMNS, DISAGREEMENT_COLUMNS, EXPLORE_FILES
from captum_gmar.files import MANIFEST, claim_files

#: settings that cluster the 12 maps of the bundled scenes
SMALL = {"neighbours": 3, "max_clusters": 3, "progress": False}


def files_under(folder: Path) -> dict[str, float]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_a_real_job_is_explored(job, tmp_path, capsys):
    before = files_under(job)
    result = explore(job, tmp_path / "exp", images=job.parent / "scenes", **SMALL)
    assert files_under(job) == before  # the maps folder untouched
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == sorted([*EXPLORE_FILES, MANIFEST])
    assert set(result.files) == set(EXPLORE_FILES)
    assert sorted(p.name for p in (tmp_path / "exp" / "explore-data").iterdir()) == [
        "class-00000.js",
        "group-00-00000.js",
        "group-01-00000.js",
        "heads.js",
        "index.js",
        "maps-00000.js",
    ]
    sheet = Image.open(tmp_path / "exp" / "thumbs" / "00000.jpg")  # 12 thumbnails of 64 px on a sheet of 16 x 16
    assert sheet.size == (1024, 1024) and np.asarray(sheet)[:64, :64].std() > 10 and np.asarray(sheet)[-64:, -64:].std() < 3
    assert json.loads((tmp_path / "exp" / MANIFEST).read_text())["files"] == sorted(EXPLORE_FILES)
    records = list(load_maps(job))
    clusters = pd.read_csv(tmp_path / "exp" / "clusters.csv")
    assert list(clusters.columns) == list(CLUSTER_COLUMNS) and len(clusters) == len(records) == 24
    in_order = [r for method in ("gmar-l1", "rollout") for r in records if r.method == method]  # method by method
    assert [(r.image, r.item, r.method, r.target) for r in in_order] == list(
        clusters[["image", "item", "method", "target"]].itertuples(index=False, name=None)
    )
    assert (clusters.target_name == "T-shirt/top").all()
    for method, rows in clusters.groupby("method"):
        strategies = result.strategies[method, 0]
        np.testing.assert_array_equal(rows.cluster, strategies.labels)
        np.testing.assert_allclose(rows[["x", "y"]], strategies.embedding, rtol=1e-5)
        ranks = {c.label: rank for rank, c in enumerate(strategies.ranking, start=1)}
        assert list(rows["rank"]) == [ranks[label] for label in strategies.labels]
    compared = pd.read_csv(tmp_path / "exp" / "disagreement.csv")
    assert len(compared) == 12 and list(compared.columns) == [
        *DISAGREEMENT_COLUMNS,
        "spearman:gmar-l1:rollout",
        "pearson:gmar-l1:rollout",
        "overlap:gmar-l1:rollout",
        "bhattacharyya:gmar-l1:rollout",
        "disagreement:gmar-l1",
        "disagreement:rollout",
        "disagreement",
        "odd_method",
    ]
    assert compared["odd_method"].isna().all()  # two methods: no odd one
    np.testing.assert_allclose(compared["spearman:gmar-l1:rollout"], result.disagreement.figure("spearman")[:, 0], rtol=1e-5)
    summary = json.loads((tmp_path / "exp" / "strategies.json").read_text())
    assert summary["format"] == "captum-gmar-explore/1" and summary["methods"] == ["gmar-l1", "rollout"]
    assert (
        summary["files"]
        == list(result.files)
        == ["clusters.csv", "disagreement.csv", "strategies.json", "explore.html", "explore-data", "thumbs"]
    )
    assert summary["disagreement"] == {
        "pairs": [["gmar-l1", "rollout"]],
        "top_k": 7,
        "grid": [8, 8],
        "rows": 12,
        "unusual": 3.0,
        "odd_margin": 1.0,
    }
    assert (
        summary["targets"] == [0]
        and summary["class_names"]["3"] == "Dress"
        and summary["flag_at"] == 0.9
        and "0.99 at 8" in summary["flag_rule"]
    )
    group = summary["groups"][0]
    assert (group["method"], group["target"], group["maps"], group["flat"], group["grid"], group["note"]) == (
        "gmar-l1",
        0,
        12,
        0,
        [8, 8],
        None,
    )
    assert len(group["eigengaps"]) == len(group["eigenvalues"]) - 1 == 3 and len(group["clusters"]) == group["n_clusters"]
    cluster = group["clusters"][0]
    assert cluster["rank"] == 1 and sum(c["size"] for c in group["clusters"]) == 12
    assert np.array(cluster["mean_map"]).shape == (8, 8) and sum(map(sum, cluster["mean_map"])) == pytest.approx(1, rel=1e-4)
    members = clusters[(clusters.method == "gmar-l1") & (clusters.cluster == cluster["cluster"])]
    assert {t["item"] for t in cluster["typical"]} <= set(members.item)
    labels = members.label.value_counts()
    assert cluster["labels"]["purity"] == pytest.approx(labels.max() / labels.sum(), rel=1e-5)
    assert cluster["correct"] == pytest.approx(float((members.label == members.predicted).mean()), rel=1e-5)
    assert capsys.readouterr().err == ""  # progress=False, nothing skipped
    explore(job, tmp_path / "exp", methods=["rollout"], **SMALL)  # again, into its own folder: one method
    assert not (tmp_path / "exp" / "disagreement.csv").exists()  # the earlier one, of two methods, is gone
    assert set(pd.read_csv(tmp_path / "exp" / "clusters.csv").method) == {"rollout"}


def test_a_stored_shortcut_ranks_first_and_small_classes_are_skipped(tmp_path, capsys):
    maps, tagged = planted_maps(300, seed=4)
    other, _ = planted_maps(5, tagged_share=0, seed=5)
    targets = np.array([0] * 300 + [1] * 5)
    both = np.concatenate([maps, other])
    folder = write_folder(tmp_path / "maps", {"a": both, "b": np.sqrt(both)}, targets)
    result = explore(folder, tmp_path / "exp", progress=False)
    assert set(result.strategies) == {("a", 0), ("b", 0)} and set(result.skipped) == {("a", 1), ("b", 1)}
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "explore: a, class 1: not clustered (5 maps, 0 of them flat: fewer than the 12 that clustering needs)",
        "explore: b, class 1: not clustered (5 maps, 0 of them flat: fewer than the 12 that clustering needs)",
    ]
    clusters = pd.read_csv(tmp_path / "exp" / "clusters.csv")
    for method in ("a", "b"):
        rows = clusters[(clusters.method == method) & (clusters.target == 0)]
        first = (rows["rank"] == 1).to_numpy()
        assert (first & tagged).sum() / tagged.sum() >= 0.9 and (first & tagged).sum() / first.sum() >= 0.9
    skipped = clusters[clusters.target == 1]
    assert len(skipped) == 10 and skipped[["cluster", "rank", "x", "y"]].isna().all().all()
    summary = json.loads((tmp_path / "exp" / "strategies.json").read_text())
    notes = {(g["method"], g["target"]): g["note"] for g in summary["groups"]}
    assert notes[("a", 1)] == "5 maps, 0 of them flat: fewer than the 12 that clustering needs" and notes[("a", 0)] is None
    assert "clusters" not in summary["groups"][1] and summary["class_names"] == {"0": "class 0", "1": "class 1"}
    assert len(pd.read_csv(tmp_path / "exp" / "disagreement.csv")) == 305
    # the overview: both clustered groups, flagged first; the flagged clusters; a cluster's rows; the notebook view
    overview = result.overview()
    assert [g["method"] for g in overview] == [summary["groups"][i]["method"] for i in summary["overview"]] and len(overview) == 2
    assert all(g["flagged"] == 1 and g["clusters"][0]["flagged"] for g in overview)
    assert [(m, t, c.label) for m, t, c in result.flagged()] == [(g["method"], 0, g["clusters"][0]["cluster"]) for g in overview]
    table = result.rows("a", 0, rank=1)
    assert list(table.columns) == list(CLUSTER_COLUMNS) and len(table) == result.strategies["a", 0].ranking[0].size
    assert (table["rank"] == 1).all() and len(result.rows("a", 0)) == 300
    with pytest.raises(ValueError, match="no clustered maps of 'a' explaining class 1"):
        result.rows("a", 1)
    table = result.overview_table()
    assert list(table["method"]) == [g["method"] for g in overview] and (table["flagged"] == 1).all()
    assert len(repr(result)) < 200 and "2 groups clustered" in repr(result)
    shown = result._repr_html_()
    assert shown.count("<h4>") == 2 and "2 of the 2 method-and-class groups have a flagged cluster" in shown
    assert "exploration.rows(&#x27;a&#x27;, 0, rank=1)" in shown and shown.count("data:image/png;base64") == 2  # mean maps, no images


def test_pixel_maps_are_pooled_as_they_are_read(tmp_path):
    maps, _ = planted_maps(40, seed=6)
    pixels = np.repeat(np.repeat(maps, 4, axis=1), 4, axis=2)  # 56 x 56
    folder = write_folder(tmp_path / "maps", {"a": pixels, "b": pixels}, np.zeros(40, dtype=int))
    result = explore(folder, tmp_path / "exp", max_side=28, **SMALL)
    assert result.strategies["a", 0].mean_maps.shape[1:] == (28, 28) and result.disagreement.grid == (28, 28)
    summary = json.loads((tmp_path / "exp" / "strategies.json").read_text())
    assert summary["groups"][0]["grid"] == [28, 28]


def one_line(error: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(error.value)
    return str(error.value)


def test_bad_input_is_refused_before_any_work_and_writes_nothing(job, tmp_path):
    before = files_under(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no maps .maps.json is missing.") as error:
        explore(tmp_path / "nothing", tmp_path / "exp", **SMALL)
    one_line(error)
    with pytest.raises(ValueError, match="has no method 'gae'; it has gmar-l1, rollout") as error:
        explore(job, tmp_path / "exp", methods=["gmar-l1", "gae"], **SMALL)
    one_line(error)
    for settings, message in (
        ({"neighbours": 0}, "neighbours must be an integer of at least 1"),
        ({"top_share": 2}, r"top_share must be a number in \(0, 1\]"),
        ({"max_side": 1}, "max_side must be an integer of at least 2"),
        ({"part": "signed"}, "part must be one of positive, abs"),
        ({"methods": "gmar-l1"}, "methods must be a list of method keys"),
    ):
        with pytest.raises(ValueError, match=message) as error:
            explore(job, tmp_path / "exp", **{**SMALL, **settings})
        one_line(error)
    with pytest.raises(ValueError, match=r"no class has the 13 maps a method needs to be clustered \(the most: 12\)") as error:
        explore(job, tmp_path / "exp", neighbours=12, progress=False)
    one_line(error)
    assert files_under(tmp_path) == before  # nothing written


def test_an_out_folder_of_other_files_is_refused(job, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files captum-gmar did not write \(notes.txt\): name a new or empty folder") as error:
        explore(job, theirs, **SMALL)
    one_line(error)
    claim_files(tmp_path / "own", ["report.html"])
    (tmp_path / "own" / "clusters.csv").write_text("someone's rows")
    with pytest.raises(ValueError, match="holds 'clusters.csv', which captum-gmar did not write and does not replace") as error:
        explore(job, tmp_path / "own", **SMALL)
    one_line(error)
    with pytest.raises(ValueError, match="is the maps folder: name another folder, which explore writes alone") as error:
        explore(job, job, **SMALL)
    one_line(error)
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    assert (tmp_path / "own" / "clusters.csv").read_text() == "someone's rows"


def test_nan_maps_are_refused_naming_the_image_and_nothing_is_written(tmp_path):
    maps, _ = planted_maps(30, seed=7)
    broken = maps.copy()
    broken[[4, 9], 0, 0] = np.nan
    folder = write_folder(tmp_path / "maps", {"a": maps, "b": broken}, np.zeros(30, dtype=int))
    with pytest.raises(ValueError, match=r"2 maps of 'b' hold NaN or infinite values \(the first: image 'img/4.png', target 0\)") as error:
        explore(folder, tmp_path / "exp", **SMALL)
    one_line(error)
    assert not (tmp_path / "exp").exists()


def test_constant_maps_are_refused_before_anything_is_written(tmp_path):
    maps, _ = planted_maps(40, seed=8)
    folder = write_folder(tmp_path / "maps", {"a": maps, "b": np.full_like(maps, 0.25)}, np.zeros(40, dtype=int))
    with pytest.raises(ValueError, match=r"every map of 'b' is constant \(positive part\): it shows nothing to cluster") as error:
        explore(folder, tmp_path / "exp", **SMALL)
    one_line(error)
    mostly = maps.copy()
    mostly[5:] = 0  # 35 of 40 flat: 5 left, fewer than the 7 these settings need
    folder = write_folder(tmp_path / "few", {"a": mostly}, np.zeros(40, dtype=int))
    with pytest.raises(
        ValueError, match=r"no class has the 7 maps that are not constant a method needs to be clustered \(the most: 5\)"
    ) as error:
        explore(folder, tmp_path / "exp", neighbours=6, max_clusters=3, progress=False)
    one_line(error)
    assert not (tmp_path / "exp").exists()


def test_classes_are_chosen_by_index_or_name_and_images_must_be_a_folder(tmp_path):
    maps, _ = planted_maps(60, seed=9)
    folder = write_folder(tmp_path / "maps", {"a": maps}, np.array([0] * 30 + [1] * 30))
    result = explore(folder, tmp_path / "exp", classes=["class 1"], **SMALL)
    assert set(result.strategies) == {("a", 1)} and set(pd.read_csv(tmp_path / "exp" / "clusters.csv").target) == {1}
    assert set(explore(folder, tmp_path / "exp", classes=[0, "1"], **SMALL).strategies) == {("a", 0), ("a", 1)}
    for classes, message in (
        (["cat"], "holds no maps explaining class 'cat'; it explains 0 .class 0., 1 .class 1."),
        ("0", "classes must be a list"),
    ):
        with pytest.raises(ValueError, match=message) as error:
            explore(folder, tmp_path / "other", classes=classes, **SMALL)
        one_line(error)
    with pytest.raises(FileNotFoundError, match="images '.*nothing' is not a folder: name the image folder") as error:
        explore(folder, tmp_path / "other", images=tmp_path / "nothing", **SMALL)
    one_line(error)
    assert not (tmp_path / "other").exists()


def test_with_the_model_every_cluster_gets_the_transplant(job, tmp_path):
    model = load_reference_model()
    result = explore(job, tmp_path / "exp", images=job.parent / "scenes", model=model, **SMALL)
    for (method, target), strategies in result.strategies.items():
        labels = {label for m, t, label in result.causal if (m, t) == (method, target)}
        assert labels == {c.label for c in strategies.ranking}  # every cluster: its transplant
        # one class explained: nothing to paste on, so the first-ranked and suspected clusters are masked, as before
        masked = {label for m, t, label in result.causal if (m, t) == (method, target) and result.causal[m, t, label].members}
        assert masked == {c.label for c in strategies.ranking if c.suspected or c is strategies.ranking[0]}
        # nothing was pasted (one class): the suspicion still decides the flag
        assert all(c.flagged_by == "suspicion" and c.transplant_confirms is None for c in strategies.ranking)
    summary = json.loads((tmp_path / "exp" / "strategies.json").read_text())
    first = summary["groups"][0]["clusters"][0]
    check = result.causal["gmar-l1", 0, first["cluster"]]
    assert first["causal"]["members"] == check.members == first["size"] and first["causal"]["others"] == 12 - first["size"]
    assert 0 <= check.score <= 1 and first["causal"]["effect"] == pytest.approx(check.random - check.region, rel=1e-4)
    # the transplant beside it: one class explained here, so nothing to paste on, and why
    assert first["transplant_rise"] is None and first["transplant_control"] is None
    assert first["transplant"]["note"] == "the images hold no other class to paste on" and check.transplant is not None
    assert first["confirmed"] is False and summary["groups"][0]["confirmed"] == 0 and summary["confirms_by"] == 0.2  # nothing confirms
    # the class's images clustered by the model's features too (layer 4 of 6, the default); no other class to add a direction to
    features = summary["features"]
    assert (
        features["layer"] == 4
        and "beyond its null (random directions of the same norm; the proxy made from random images" in features["rule"]
    )
    (group,) = features["groups"]
    found = result.features[0]
    assert group["target"] == 0 and group["images"] == 12 and len(found.labels) == 12 and found.layer == 4
    assert [c["cluster"] for c in group["clusters"]] == [c.label for c in found.ranking] and group["flagged"] == 0
    for entry, cluster in zip(group["clusters"], found.ranking):
        assert entry["direction"] is None and entry["tone curve"] is None and entry["filter"] is None and entry["confirmed_by"] == []
        assert not entry["flagged"] and entry["size"] == int(np.sum(found.labels == cluster.label))
        assert entry["matched"]["method"] in ("gmar-l1", "rollout") and 0 < entry["matched"]["f1"] <= 1
        assert "no image of another class to add its direction to" in entry["reason"] and entry["typical"]
    with pytest.raises(ValueError, match="the causal check .* masks the clusters' images: name the image folder"):
        explore(job, tmp_path / "exp2", model=model, **SMALL)
    with pytest.raises(ValueError, match=r"^feature_layer chooses the model's layer whose features are clustered: give the model too"):
        explore(job, tmp_path / "exp3", images=job.parent / "scenes", feature_layer=1, **SMALL)
    with pytest.raises(ValueError, match=r"^the features' layer must be an integer from 0 to 5 \(this model's layers\), got 6$"):
        explore(job, tmp_path / "exp4", images=job.parent / "scenes", model=model, feature_layer=6, **SMALL)
    assert not (tmp_path / "exp3").exists() and not (tmp_path / "exp4").exists()


def test_the_features_direction_is_added_to_the_images_of_another_class(job):
    """As above, the job's 12 images stand for a second class too: each feature cluster's
    direction is added to them against random directions of its norm."""
    from captum_gmar.exploration.checker import ClusterChecker
    from captum_gmar.exploration.feature_checks import RANDOM_DIRECTIONS
    from captum_gmar.exploration.features import FeatureChecker

    checker = ClusterChecker(load_reference_model(), None, job.parent / "scenes", seed=0)
    records = load_maps(job, "gmar-l1")
    names = [record.image for record in records]
    settings = {"max_clusters": 3, "neighbours": 3, "typical": 2, "seed": 0}
    found = FeatureChecker(checker, None).run({0: np.arange(12), 1: np.arange(12)}, names, {}, settings, progress=False)
    assert set(found) == {0, 1}
    strategies = found[0]
    assert not isinstance(strategies, str) and strategies.layer == 4
    for cluster in strategies.ranking:
        check = cluster.check
        assert check is not None and check.recipients == 12 and 0 <= check.plain <= 1 and check.norm > 0
        assert -1 <= check.rise <= 1 and check.screened == (check.rise < 0.2)  # the random directions: only where it may confirm
        assert check.screened or (-1 <= check.random <= 1 and check.random_spread >= 0)
        assert cluster.matched is None and cluster.no_place  # no maps given: nothing places it
        # its proxies put on in pixels, on the same images: its tone curve and its filter
        assert [p.proxy for p in cluster.pixels] == ["tone curve", "filter"]
        for proxy in cluster.pixels:
            assert proxy.recipients == 12 and -1 <= proxy.rise <= 1
            assert proxy.screened == (proxy.rise < 0.2) and (proxy.screened or proxy.random_spread >= 0)
        assert cluster.confirmed_by == tuple(n for n, c in (("direction", check), *((p.proxy, p) for p in cluster.pixels)) if c.confirms)
        assert cluster.flagged == bool(cluster.confirmed_by) and "random directions" in cluster.reason
        assert "its tone curve" in cluster.reason and "its filter" in cluster.reason
        members = torch.from_numpy(strategies.labels == cluster.label)
        assert cluster.direction.shape == (checker.vit.hidden_size,) and members.sum() == cluster.size
    assert RANDOM_DIRECTIONS == 8
    # the same images and seed: the same clusters and figures, whether the class runs among
    # the others or alone (as repair finds a cluster of the features again)
    again = FeatureChecker(checker, None).run_class(0, {0: np.arange(12), 1: np.arange(12)}, names, {}, settings)
    assert not isinstance(again, str) and np.array_equal(again.labels, strategies.labels)
    assert [repr(c.check) for c in again.ranking] == [repr(c.check) for c in strategies.ranking]
    assert [repr(c.pixels) for c in again.ranking] == [repr(c.pixels) for c in strategies.ranking]
    assert all(torch.equal(a.direction, b.direction) for a, b in zip(again.ranking, strategies.ranking, strict=True))


def test_flagged_feature_clusters_that_agree_are_joined_and_checked_again(job, monkeypatch):
    """Where two clusters are one shortcut (``aligned_groups``, here told so), the
    class's strategies hold one cluster of both, numbered by size, checked anew, with its
    parts; the other clusters keep their members and their checks; the same whether the
    class runs alone or among the others."""
    from captum_gmar.exploration import features as module
    from captum_gmar.exploration.checker import ClusterChecker

    checker = ClusterChecker(load_reference_model(), None, job.parent / "scenes", seed=0)
    names = [record.image for record in load_maps(job, "gmar-l1")]
    settings = {"max_clusters": 3, "neighbours": 3, "typical": 2, "seed": 0}
    rows = {0: np.arange(12), 1: np.arange(12)}
    alone = module.FeatureChecker(checker, None).run_class(0, rows, names, {}, settings)
    assert not isinstance(alone, str) and alone.labels.max() >= 2  # two to join, one to keep
    told: list[tuple[list[int], list[int]]] = []
    monkeypatch.setattr(module, "aligned_groups", lambda features, labels, flagged, others=(): told.append((flagged, others)) or [[0, 1]])
    found = module.FeatureChecker(checker, None).run_class(0, rows, names, {}, settings)
    # asked of the flagged clusters and those with no place not flagged; where the joined one is
    # not flagged, asked again of the flagged alone
    flagged = sorted(c.label for c in alone.ranking if c.flagged)
    others = sorted(c.label for c in alone.ranking if c.no_place and not c.flagged)
    assert not isinstance(found, str) and told[0] == (flagged, others)
    (both,) = [c for c in found.ranking if c.parts]
    assert told[1:] == ([] if both.flagged else [(flagged, ())])
    sizes = np.bincount(alone.labels)
    assert both.parts == tuple(sorted(sizes[:2].tolist(), reverse=True)) and both.size == sizes[:2].sum()
    assert np.array_equal(found.labels == both.label, alone.labels <= 1) and found.labels.max() == alone.labels.max() - 1
    features = module.class_features(checker, names, found.layer)
    assert both.check is not None and torch.equal(
        both.direction, module.cluster_direction(features, torch.from_numpy(found.labels == both.label))
    )
    for before in alone.ranking:  # the others: the same members, the same figures, under their new numbers
        if before.label > 1:
            (after,) = [c for c in found.ranking if np.array_equal(found.labels == c.label, alone.labels == before.label)]
            assert repr(after.check) == repr(before.check) and repr(after.pixels) == repr(before.pixels) and not after.parts
    assert len(found.typical) == found.labels.max() + 1 and all(np.all(found.labels[t] == c) for c, t in enumerate(found.typical))
    assert "joins 2 clusters" in both.reason
    among = module.FeatureChecker(checker, None).run(rows, names, {}, settings, progress=False)[0]
    assert not isinstance(among, str) and np.array_equal(among.labels, found.labels)
    assert [repr(c.check) for c in among.ranking] == [repr(c.check) for c in found.ranking]
    # the joined cluster not flagged (none is, on these 12 images), and the flagged alone no
    # group: the clusters stay as found, with their checks
    assert not both.flagged
    monkeypatch.setattr(module, "aligned_groups", lambda features, labels, flagged, others=(): [[0, 1]] if others else [])
    kept = module.FeatureChecker(checker, None).run_class(0, rows, names, {}, settings)
    assert not isinstance(kept, str) and not any(c.parts for c in kept.ranking) and np.array_equal(kept.labels, alone.labels)
    assert [repr(c.check) for c in kept.ranking] == [repr(c.check) for c in alone.ranking]


def test_a_folder_a_job_is_still_writing_is_refused_saying_how_far_it_has_come(job, tmp_path):
    import threading

    from captum_gmar.files import folder_lock

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with folder_lock(job):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    try:
        with pytest.raises(
            ValueError, match=r"is still being written by a running captum-gmar job \(12 of 12 images explained so far\)"
        ) as error:
            explore(job, tmp_path / "exp", **SMALL)
        assert "\n" not in str(error.value) and not (tmp_path / "exp").exists()
    finally:
        release.set()
        holder.join()
    explore(job, tmp_path / "exp", **SMALL)  # the job has ended
