import pytest
import torch
from reference_methods import reference_rollout
from tiny_models import AUTO_READOUT, MODEL_NAMES, OPTION_MODELS, PREFIX_TOKENS

from captum_gmar import AttentionRollout


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_matches_the_reference_rollout_on_every_class(load_tiny, images, name, attn):
    expected = reference_rollout(load_tiny(name, "eager"), images, PREFIX_TOKENS[name], readout=AUTO_READOUT[name])
    maps = AttentionRollout(load_tiny(name, attn)).attribute(images, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", OPTION_MODELS)
@pytest.mark.parametrize(
    "options",
    [
        dict(head_fusion="max", discard_ratio=0.5),
        dict(head_fusion="min", alpha=0.3),
        dict(discard_ratio=0.9, start_layer=1),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_match_the_reference_rollout(load_tiny, images, name, options):
    expected = reference_rollout(load_tiny(name, "eager"), images, PREFIX_TOKENS[name], readout=AUTO_READOUT[name], **options)
    maps = AttentionRollout(load_tiny(name), **options).attribute(images, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_is_class_agnostic_but_checks_the_target(load_tiny, images):
    rollout = AttentionRollout(load_tiny("ViTForImageClassification"))
    torch.testing.assert_close(rollout.attribute(images, target=0), rollout.attribute(images, target=[4, 2, 1]))
    with pytest.raises(ValueError, match="out of range"):
        rollout.attribute(images, target=9)


def test_needs_no_gradients(load_tiny, images):
    rollout = AttentionRollout(load_tiny("DeiTForImageClassification"))
    expected = rollout.attribute(images)
    with torch.inference_mode():
        torch.testing.assert_close(rollout.attribute(images), expected)


def test_shapes_name_and_internal_batches(load_tiny, images):
    rollout = AttentionRollout(load_tiny("Dinov2ForImageClassification"))
    maps = rollout.attribute(images)
    assert maps.shape == images.shape and (maps >= 0).all()
    torch.testing.assert_close(rollout.attribute(images, internal_batch_size=1), maps)
    assert AttentionRollout.get_name() == "Attention Rollout"
    assert not rollout.has_convergence_delta()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(head_fusion="median"), ValueError, "head_fusion must be 'mean', 'max' or 'min'"),
        (dict(discard_ratio=1.0), ValueError, r"discard_ratio must lie in \[0, 1\)"),
        (dict(discard_ratio=-0.2), ValueError, "discard_ratio must lie"),
        (dict(discard_ratio="none"), TypeError, "discard_ratio must be a number"),
        (dict(alpha=2), ValueError, "alpha must lie"),
        (dict(start_layer=5), ValueError, "start_layer must lie"),
    ],
)
def test_bad_options(load_tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        AttentionRollout(load_tiny("ViTForImageClassification"), **kwargs)
