import pytest
import torch

from captum_gmar import GMARAttribution
from captum_gmar.evaluation import infidelity_score, sensitivity_score

TARGETS = torch.tensor([0, 2, 4])


@pytest.fixture(scope="module")
def gmar(load_tiny):
    return GMARAttribution(load_tiny("ViTForImageClassification"))


def test_infidelity_is_finite_reproducible_and_scale_free(gmar, images):
    attributions = gmar.attribute(images, target=TARGETS)
    scores = infidelity_score(gmar.forward_func, images, attributions, TARGETS)
    assert scores.shape == (3,) and torch.isfinite(scores).all() and (scores >= 0).all()
    torch.testing.assert_close(infidelity_score(gmar.forward_func, images, attributions, TARGETS), scores)
    assert not torch.allclose(infidelity_score(gmar.forward_func, images, attributions, TARGETS, seed=1), scores)
    # normalize=True: a map's scale does not matter, and (B, H, W) maps are broadcast over channels.
    torch.testing.assert_close(infidelity_score(gmar.forward_func, images, 7 * attributions, TARGETS), scores)
    torch.testing.assert_close(infidelity_score(gmar.forward_func, images, attributions[:, 0], TARGETS), scores)


def test_infidelity_splits_the_batch_into_chunks_of_examples(gmar, images):
    attributions = gmar.attribute(images, target=TARGETS)
    scores = infidelity_score(gmar.forward_func, images, attributions, TARGETS, n_perturb_samples=4, batch_size=2)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    first = infidelity_score(gmar.forward_func, images[:2], attributions[:2], TARGETS[:2], n_perturb_samples=4)
    torch.testing.assert_close(scores[:2], first)


def test_sensitivity_is_finite_reproducible_and_keeps_the_callers_rng(gmar, images):
    state = torch.get_rng_state()
    scores = sensitivity_score(gmar.attribute, images, TARGETS, n_perturb_samples=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert scores.shape == (3,) and torch.isfinite(scores).all() and (scores >= 0).all()
    torch.testing.assert_close(sensitivity_score(gmar.attribute, images, TARGETS, n_perturb_samples=3), scores)
    assert not torch.allclose(sensitivity_score(gmar.attribute, images, TARGETS, n_perturb_samples=3, seed=1), scores)


def test_sensitivity_of_maps_equals_that_of_channel_repeated_attributions(gmar, images):
    def maps(x, target):
        return gmar.attribute(x, target=target)[:, 0]

    torch.testing.assert_close(
        sensitivity_score(maps, images, TARGETS, n_perturb_samples=2, batch_size=4),
        sensitivity_score(gmar.attribute, images, TARGETS, n_perturb_samples=2, batch_size=4),
    )


def test_bad_arguments_raise(gmar, images):
    attributions = torch.rand(3, 3, 32, 32)
    with pytest.raises(ValueError, match="attributions must have"):
        infidelity_score(gmar.forward_func, images, attributions[:, :, :16], TARGETS)
    with pytest.raises(TypeError, match="attributions"):
        infidelity_score(gmar.forward_func, images, attributions.long(), TARGETS)
    with pytest.raises(ValueError, match="noise_std"):
        infidelity_score(gmar.forward_func, images, attributions, TARGETS, noise_std=0.0)
    with pytest.raises(ValueError, match="n_perturb_samples"):
        infidelity_score(gmar.forward_func, images, attributions, TARGETS, n_perturb_samples=0)
    with pytest.raises(ValueError, match="targets must have shape"):
        sensitivity_score(gmar.attribute, images, TARGETS[:1])
    with pytest.raises(ValueError, match="radius"):
        sensitivity_score(gmar.attribute, images, TARGETS, radius=-1.0)
    with pytest.raises(ValueError, match="explain_fn must return"):
        sensitivity_score(lambda x, target: x.flatten(1), images, TARGETS, n_perturb_samples=1)


def test_sensitivity_accepts_non_contiguous_explanations(load_tiny, images):
    """Captum's gradient attributions can come back channels-last (a conv's input gradient)."""
    gmar = GMARAttribution(load_tiny("ViTForImageClassification"))

    def channels_last(x, target):
        return gmar.attribute(x, target=target).contiguous(memory_format=torch.channels_last)

    assert not channels_last(images, torch.tensor([0, 1, 2])).is_contiguous()
    scores = sensitivity_score(channels_last, images, torch.tensor([0, 1, 2]), n_perturb_samples=2)
    assert torch.isfinite(scores).all()
