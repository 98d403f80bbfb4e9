"""``find_disagreement``: images where one method's map was shifted or shuffled lead the score,
on real maps of the reference model and on synthetic ones; the figures' values on known
pairs; maps of different grids; bad input refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_gmar.exploration import find_disagreement
from captum_gmar.exploration.disagreement import FIGURES, MIN_DEVIATION, ODD_MARGIN, UNUSUAL, robust_z

#: the share of images corrupted, and the share at the top of the score they must fill
SHARE = 0.05


def corrupt(maps: np.ndarray, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``maps`` with :data:`SHARE` of them shifted by 2 or 3 patches on each axis (rolled
    round the edges) or their patches shuffled; and which."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(maps), round(SHARE * len(maps)), replace=False)
    out = maps.copy()
    for i in chosen:
        if kind == "shift":
            out[i] = np.roll(out[i], tuple(rng.choice([-3, -2, 2, 3], 2)), axis=(0, 1))
        else:
            out[i] = rng.permutation(out[i].ravel()).reshape(out[i].shape)
    return out, chosen


def share_found(maps: dict[str, np.ndarray], victim: str, kind: str, seed: int = 0) -> float:
    """The share of the top :data:`SHARE` images by disagreement that were corrupted."""
    corrupted, chosen = corrupt(maps[victim], kind, seed)
    score = find_disagreement({**maps, victim: corrupted}).score
    top = np.argsort(-score, kind="stable")[: len(chosen)]
    return len(set(top.tolist()) & set(chosen.tolist())) / len(chosen)


@pytest.fixture(scope="module")
def real_maps(fashion_mnist) -> dict[str, np.ndarray]:
    """The reference model's patch maps (8 x 8) of 200 evaluation scenes, by GMAR,
    rollout, GAE (one shared pass) and AttnLRP (its positive part, the default)."""
    from captum_gmar import AttnLRP, GenericAttentionExplainability, GMARAttribution, load_reference_model
    from captum_gmar.imagedata.scenes import make_scenes, to_pixel_values
    from captum_gmar.methods.shared import attribute_together
    from captum_gmar.vit.model import VisionTransformer

    vit = VisionTransformer(load_reference_model())
    x = to_pixel_values(make_scenes(200, "test", seed=5).images)
    from captum_gmar import AttentionRollout

    attention = [GMARAttribution(vit), AttentionRollout(vit), GenericAttentionExplainability(vit)]
    results = attribute_together(attention, x, output="patches")
    predicted = results[0].logits.argmax(-1)
    maps = {key: result.attributions for key, result in zip(("gmar-l1", "rollout", "gae"), results)}
    maps["attnlrp"] = AttnLRP(vit).attribute(x, target=predicted, output="patches").clamp(min=0)
    return {key: value.detach().numpy() for key, value in maps.items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["shift", "shuffle"])
@pytest.mark.parametrize("victim", ["gmar-l1", "rollout", "gae", "attnlrp"])
def test_real_maps_corrupted_lead_the_disagreement(real_maps, victim, kind):
    assert share_found(real_maps, victim, kind) >= 0.9


@pytest.mark.slow
def test_the_odd_method_is_the_corrupted_one_on_real_maps(real_maps):
    corrupted, chosen = corrupt(real_maps["attnlrp"], "shuffle", 1)
    result = find_disagreement({**real_maps, "attnlrp": corrupted})
    assert result.methods == ("gmar-l1", "rollout", "gae", "attnlrp")
    assert np.mean(result.odd[chosen] == 3) >= 0.9


def synthetic_maps(count: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Three methods' 14 x 14 maps of ``count`` images with an object each: ``a`` a sharp
    blob, ``b`` a wider one (they agree closely), ``c`` the blob's strongest patches only,
    with noise (sparse, like relevance propagation's positive part: it agrees with the
    others loosely on every image)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:14, 0:14]
    centre = rng.uniform(3, 11, (count, 2))
    distance = (rows - centre[:, 0, None, None]) ** 2 + (cols - centre[:, 1, None, None]) ** 2
    a = np.exp(-distance / 8) + 0.05 * rng.random((count, 14, 14))
    b = np.exp(-distance / 14) + 0.05 * rng.random((count, 14, 14))
    c = np.maximum(np.exp(-distance / 8) - 0.5 + 0.3 * rng.standard_normal((count, 14, 14)), 0)
    return {"a": a, "b": b, "c": c}


@pytest.mark.parametrize("kind", ["shift", "shuffle"])
@pytest.mark.parametrize("victim", ["a", "b", "c"])
def test_synthetic_maps_corrupted_lead_the_disagreement(victim, kind):
    assert share_found(synthetic_maps(), victim, kind) >= 0.9


def test_the_figures_of_known_pairs():
    rng = np.random.default_rng(0)
    maps = rng.random((6, 5, 4))
    flat = maps.copy()
    flat[2] = 0.5  # a flat map
    result = find_disagreement({"a": maps, "same": maps * 3, "reversed": -maps, "flat": flat})
    assert result.methods == ("a", "same", "reversed", "flat") and result.grid == (5, 4) and result.top_k == 2
    assert result.pairs == (("a", "same"), ("a", "reversed"), ("a", "flat"), ("same", "reversed"), ("same", "flat"), ("reversed", "flat"))
    assert result.figures.shape == (6, 6, 4) and result.per_method.shape == (6, 4) and result.score.shape == (6,)
    same = result.figures[:, 0]
    np.testing.assert_allclose(same, 1)  # every figure 1 for maps equal up to their scale
    np.testing.assert_allclose(result.figure("spearman")[:, 1], -1)
    np.testing.assert_allclose(result.figure("pearson")[:, 1], -1)
    np.testing.assert_allclose(result.figure("overlap")[:, 1], 0)  # the largest of one are the smallest of the other
    np.testing.assert_allclose(result.figure("bhattacharyya")[:, 1], 0)  # -maps has no positive part
    assert (result.figures[2, 2] == 0).all()  # the flat map agrees with none
    np.testing.assert_allclose(result.figures[np.arange(6) != 2, 2], 1, rtol=1e-6)
    np.testing.assert_allclose(result.score, result.per_method.max(axis=1))
    assert list(FIGURES) == ["spearman", "pearson", "overlap", "bhattacharyya"]


def test_ties_share_their_mean_rank_and_top_k_breaks_them_by_patch_order():
    a = np.array([[[0, 0, 0, 1, 2, 3, 4, 5, 6, 7]]], dtype=np.float32)
    b = np.array([[[0, 0, 0, 1, 2, 3, 4, 5, 7, 6]]], dtype=np.float32)
    result = find_disagreement({"a": np.repeat(a, 3, 0), "b": np.repeat(b, 3, 0)}, top_share=0.3)
    ranks = np.array([2, 2, 2, 4, 5, 6, 7, 8, 9, 10.0])
    other = ranks.copy()
    other[[8, 9]] = other[[9, 8]]
    expected = np.corrcoef(ranks, other)[0, 1]
    assert result.figure("spearman")[0, 0] == pytest.approx(expected) and result.top_k == 3
    assert result.figure("overlap")[0, 0] == 1  # the same three patches
    assert (result.odd == -1).all()  # two methods: no odd one


def test_maps_of_different_grids_are_compared_on_the_coarsest():
    rng = np.random.default_rng(1)
    coarse = rng.random((5, 7, 7))
    fine = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)  # the same maps at 14 x 14
    result = find_disagreement({"coarse": coarse, "fine": torch.from_numpy(fine).half()}, top_share=0.2)
    assert result.grid == (7, 7) and result.top_k == 10
    np.testing.assert_allclose(result.figures[:, 0, [0, 2]], 1, atol=1e-3)
    odd = find_disagreement({"a": rng.random((5, 9, 8)), "b": rng.random((5, 6, 12))})  # not multiples: overlapping cells
    assert odd.grid == (6, 8) and np.isfinite(odd.figures).all()


def test_robust_z_standardises_each_column_and_floors_the_deviation():
    values = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0], [100.0, 5.1]])
    z = robust_z(values)
    assert z[2, 0] == 0 and z[1, 0] == pytest.approx(-1 / 1.4826)  # median 3, MAD 1
    assert z[4, 1] == pytest.approx(0.1 / MIN_DEVIATION)  # MAD 0: floored


def _one_line_error(match, maps, **settings):
    with pytest.raises(ValueError, match=match) as error:
        find_disagreement(maps, **settings)
    assert "\n" not in str(error.value)


def test_bad_input_is_refused():
    maps = np.ones((4, 3, 3))
    _one_line_error(r"two methods or more, got 1 \(a\)", {"a": maps})
    _one_line_error(r"different numbers of images \(\{'a': 4, 'b': 3\}\)", {"a": maps, "b": maps[:3]})
    broken = maps.copy()
    broken[1, 0, 0] = np.nan
    _one_line_error(r"the maps of 'b': 1 of 4 maps hold NaN or infinite values \(the first at index 1\)", {"a": maps, "b": broken})
    _one_line_error(r"the maps of 'b' must be \(N, h, w\)", {"a": maps, "b": maps[0]})
    _one_line_error(r"top_share must be a number in \(0, 1\], got 0", {"a": maps, "b": maps}, top_share=0)
    _one_line_error("part must be one of positive, abs", {"a": maps, "b": maps}, part="signed")


def test_no_method_is_named_odd_unless_it_stands_out_by_the_margin():
    rng = np.random.default_rng(7)
    base = rng.random((200, 8, 8))
    maps = {key: base + 0.05 * rng.random((200, 8, 8)) for key in ("a", "b", "c")}
    maps["c"][:10] = rng.permutation(base[:10].reshape(-1, 64).T).T.reshape(10, 8, 8)  # c shuffled on 10 images
    result = find_disagreement(maps)
    ordered = np.sort(result.per_method, axis=1)
    stands_out = ordered[:, -1] - ordered[:, -2] >= ODD_MARGIN
    assert (result.odd[:10] == 2).all() and stands_out[:10].all()
    assert (result.odd[~stands_out] == -1).all() and (result.odd[10:] == -1).mean() > 0.9
    assert result.score[:10].min() >= UNUSUAL  # the shuffled images are unusual on the stated scale
