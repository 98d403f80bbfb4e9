"""Quantus as a judge: every compared method as a Quantus explain_func, scored by a
localisation and a randomisation metric on the bundled reference model and scenes."""

import numpy as np
import pytest
import torch

from captum_gmar import load_reference_model, load_sample_scenes
from captum_gmar.evaluation.data import SceneTasks, collate
from captum_gmar.evaluation.methods import build_methods
from captum_gmar.evaluation.metrics.localisation import pointing_game
from captum_gmar.evaluation.quantus import QuantusModel, explain_func
from captum_gmar.names import METHOD_KEYS

try:
    import quantus
except ModuleNotFoundError as error:  # CI installs it (the quantus extra)
    missing = "quantus is not installed (pip install 'captum-gmar[quantus]')"
    pytest.skip(missing if error.name == "quantus" else f"quantus cannot be imported here: {error}", allow_module_level=True)


@pytest.fixture(scope="module")
def scenes():
    """The reference model wrapped for Quantus, and its 12 bundled explanation tasks:
    images ``(12, 3, 64, 64)``, targets ``(12,)``, object masks ``(12, 1, 64, 64)``."""
    batch = collate(list(SceneTasks(load_sample_scenes())))
    return QuantusModel(load_reference_model()).eval(), batch.pixel_values.numpy(), batch.targets.numpy(), batch.masks.numpy()[:, None]


def test_every_method_gives_the_maps_compare_scores(scenes):
    model, x, y, _ = scenes
    x, y = x[:6], y[:6]
    for key, method in zip(METHOD_KEYS, build_methods(model.model, METHOD_KEYS, ig_steps=4)):
        expected = method(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        # torch inputs, the classifier itself; each map scaled by its own maximum
        maps = explain_func(model.model, torch.from_numpy(x), torch.from_numpy(y), method=key, ig_steps=4)
        assert maps.shape == (6, 1, 64, 64) and maps.dtype == np.float32, key
        peak = np.maximum(expected.max(axis=(1, 2), keepdims=True), np.finfo(np.float32).tiny)  # an all-zero map stays zero
        np.testing.assert_allclose(maps[:, 0], expected / peak, rtol=1e-4, atol=1e-6, err_msg=key)
    # numpy inputs, the wrapper Quantus passes, the method's own scale, one target for all
    raw = explain_func(model, x, 3, method="gmar-l1", normalise=False)
    np.testing.assert_allclose(raw[:, 0], build_methods(model.model, ["gmar-l1"])[0](torch.from_numpy(x), torch.full((6,), 3)).numpy())
    # whole numbers in a float array are classes (a fractional one is refused: see below)
    np.testing.assert_array_equal(
        explain_func(model, x, y.astype(np.float64), method="gmar-l1"), explain_func(model, x, y, method="gmar-l1")
    )
    # the signed relevance, scaled by its largest absolute value
    signed = build_methods(model.model, ["attnlrp"], relevance_map="signed")[0](torch.from_numpy(x), torch.from_numpy(y)).numpy()
    maps = explain_func(model, x, y, method="attnlrp", relevance_map="signed")[:, 0]
    assert (maps < 0).any()
    np.testing.assert_allclose(maps, signed / np.abs(signed).max(axis=(1, 2), keepdims=True), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="lime"), "unknown method 'lime'; choose from gmar-l1"),
        (dict(inputs=np.zeros((3, 64, 64), dtype=np.float32)), "inputs must be images (N, C, H, W), channel first; got shape (3, 64, 64)"),
        (dict(targets=[1, 2]), "targets must hold one class per image: 3 images, targets of shape (2,)"),
        (dict(targets=np.array([1, 2, 3]) + 0.7), "targets must be class indices (integers); got 1.7"),
        (dict(targets=np.array([1.0, float("nan"), 3.0])), "targets must be class indices (integers); got nan"),
        (dict(targets=np.array([True, False, True])), "targets are torch.bool; they must be class indices (integers)"),
        (dict(device="cuda"), "device 'cuda' was given but the model is on cpu"),
        (dict(method="attnlrp", relevance_map="negative"), "relevance_map must be one of positive, signed, abs, got 'negative'"),
    ],
)
def test_bad_calls_are_refused(scenes, kwargs, message):
    model, x, y, _ = scenes
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        explain_func(**{"model": model, "inputs": x[:3], "targets": y[:3], **kwargs})


def test_pointing_game_as_quantus_scores_it(scenes):
    """Quantus' pointing game on the maps it asks for: a hit where the map's maximum lies on
    the explained object (a tie counts if any tied maximum does)."""
    model, x, y, s = scenes
    for key in ("gmar-l1", "rollout"):
        hits = quantus.PointingGame(disable_warnings=True)(
            model=model,
            x_batch=x,
            y_batch=y,
            a_batch=None,
            s_batch=s,
            explain_func=explain_func,
            explain_func_kwargs={"method": key},
            device="cpu",
        )
        maps = torch.from_numpy(explain_func(model, x, y, method=key)[:, 0])
        peaks = maps == maps.flatten(1).amax(1).view(-1, 1, 1)
        assert hits == (peaks & torch.from_numpy(s[:, 0])).flatten(1).any(1).tolist(), key
        assert sum(hits) >= pointing_game(maps, torch.from_numpy(s[:, 0])).sum()  # ours takes the first tied maximum


def test_random_logit_tells_class_independent_maps_apart(scenes):
    """RandomLogit explains a random other class and compares the maps (SSIM): attention
    rollout ignores the class, so its maps are identical (1.0); GMAR's are not. Per-map
    normalisation matters: Quantus divides a precomputed batch by one maximum, the maps
    it re-explains by their batch's, so raw maps of one class compare as unequal."""
    model, x, y, _ = scenes

    def random_logit(key, a_batch=None, normalise=True):
        metric = quantus.RandomLogit(num_classes=10, seed=0, disable_warnings=True)
        kwargs = {"method": key, "normalise": normalise}
        scores = metric(
            model=model,
            x_batch=x,
            y_batch=y,
            a_batch=a_batch,
            explain_func=explain_func,
            explain_func_kwargs=kwargs,
            device="cpu",
            batch_size=4,
        )
        return np.array(scores)

    np.testing.assert_allclose(random_logit("rollout"), 1.0, atol=1e-6)
    assert (random_logit("gmar-l1") < 0.999).any()
    precomputed = explain_func(model, x, y, method="rollout", normalise=False)
    assert (random_logit("rollout", precomputed, normalise=False) < 0.99).any()  # the trap
    np.testing.assert_allclose(random_logit("rollout", explain_func(model, x, y, method="rollout")), 1.0, atol=1e-6)
