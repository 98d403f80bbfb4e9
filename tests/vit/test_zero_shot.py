"""Zero-shot image-text models: the prompts are the classes, the score is the image-text
logit. Tiny random models with token ids (no tokenizer, no download)."""

import re

import pytest
import torch
import transformers
from reference_methods import probe_weights, reference_gae, reference_gmar, reference_rollout, zero_shot_call
from tiny_models import ZERO_SHOT_MODELS

from captum_gmar import AttentionRollout, GenericAttentionExplainability, GMARAttribution, TokenGradCAM
from captum_gmar.vit.model import VisionTransformer

NAMES = list(ZERO_SHOT_MODELS)
PROMPTS = 4
#: what the image embedding reads: CLIP's class token, SigLIP's attention-pooling probe
POOLING = {"CLIPModel": ("class",), "MetaClip2Model": ("class",), "SiglipModel": ("probe",)}
TARGETS = torch.tensor([3, 0, 1])


@pytest.fixture(scope="module")
def text() -> dict[str, torch.Tensor]:
    """Four tokenized "prompts" of 6 tokens, the last two padded in the second half."""
    ids = torch.randint(3, 64, (PROMPTS, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[2:, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def load(tiny_model_dirs):
    def load(name: str, attn: str = "sdpa"):
        return getattr(transformers, name).from_pretrained(tiny_model_dirs[name], attn_implementation=attn).eval()

    return load


@pytest.mark.parametrize("name", NAMES)
def test_logits_are_the_models_image_text_logits(load, images, text, name):
    model = load(name)
    expected = model(**text, pixel_values=images).logits_per_image
    torch.testing.assert_close(VisionTransformer(model, text=text).logits(images), expected)
    without_mask = model(input_ids=text["input_ids"], pixel_values=images).logits_per_image
    torch.testing.assert_close(VisionTransformer(model, text=text["input_ids"]).logits(images), without_mask)


@pytest.mark.parametrize("name", NAMES)
def test_the_text_tower_runs_once_at_construction(load, images, text, name):
    model = load(name)
    calls = []
    hook = model.text_model.register_forward_hook(lambda *args: calls.append(1))
    try:
        gmar = GMARAttribution(model, text=text)
        gmar.attribute(images, target=1)
        gmar.attribute(images[:1], target=[2], internal_batch_size=1)
    finally:
        hook.remove()
    assert len(calls) == 1


def reference_options(eager, x, text, name) -> tuple[int, dict]:
    """Special tokens and the reference's read-out options for a zero-shot model."""
    probe = probe_weights(eager, x, text) if POOLING[name] == ("probe",) else None
    return (1 if probe is None else 0), dict(readout=POOLING[name], call=zero_shot_call(text), probe=probe)


@pytest.mark.parametrize("size", [(32, 32), (40, 24)], ids=["square", "non-square"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", NAMES)
def test_gmar_matches_the_reference(load, text, name, attn, size):
    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(5))
    eager = load(name, "eager")
    prefix, options = reference_options(eager, x, text, name)
    expected, expected_weights = reference_gmar(eager, x, TARGETS, prefix, **options)
    maps, weights = GMARAttribution(load(name, attn), text=text).attribute(x, target=TARGETS, output="patches", return_head_weights=True)
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gae_and_rollout_match_the_reference(load, images, text, name):
    eager = load(name, "eager")
    prefix, options = reference_options(eager, images, text, name)
    model = load(name)
    expected = reference_gae(eager, images, TARGETS, prefix, **options)
    maps = GenericAttentionExplainability(model, text=text).attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    expected = reference_rollout(eager, images, prefix, **options)
    torch.testing.assert_close(
        AttentionRollout(model, text=text).attribute(images, output="patches").flatten(1), expected, rtol=1e-4, atol=1e-6
    )


def test_grad_cam_and_targets(load, images, text):
    model = load("CLIPModel")
    maps = TokenGradCAM(model, text=text).attribute(images, target=TARGETS)
    assert maps.shape == images.shape
    gmar = GMARAttribution(model, text=text)
    with pytest.raises(ValueError, match="out of range"):
        gmar.attribute(images, target=PROMPTS)
    predicted = model(**text, pixel_values=images).logits_per_image.argmax(-1)
    torch.testing.assert_close(gmar.attribute(images), gmar.attribute(images, target=predicted))


def test_text_is_required_for_zero_shot_and_refused_elsewhere(load, load_tiny, text):
    with pytest.raises(ValueError, match="CLIPModel is explained zero-shot: pass the tokenized prompts as text="):
        GMARAttribution(load("CLIPModel"))
    with pytest.raises(ValueError, match="text prompts are for zero-shot image-text models"):
        GMARAttribution(load_tiny("CLIPForImageClassification"), text=text)
    with pytest.raises(ValueError, match="text must hold input_ids"):
        GMARAttribution(load("CLIPModel"), text={"attention_mask": text["attention_mask"]})
    with pytest.raises(ValueError, match="SigLIP model has no class token"):
        GMARAttribution(load("SiglipModel"), text=text, readout="cls")


def test_the_model_comes_back_as_it_was(load, images, text):
    model = load("SiglipModel")
    GMARAttribution(model, text=text).attribute(images, target=1)
    assert not any(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda t: {**t, "input_ids": t["input_ids"].index_put((torch.tensor(2), torch.tensor(3)), torch.tensor(64))},
            "prompt 2 has token id 64 at position 3, which is not below the vocabulary size 64",
        ),
        (
            lambda t: {**t, "input_ids": t["input_ids"].index_put((torch.tensor(1), torch.tensor(0)), torch.tensor(-1))},
            "prompt 1 has token id -1 at position 0, which is negative",
        ),
        (lambda t: {**t, "input_ids": t["input_ids"].float()}, "input_ids are torch.float32; token ids must be integers"),
        (lambda t: {**t, "attention_mask": t["attention_mask"][:, :5]}, "attention_mask is (4, 5) but input_ids are (4, 6)"),
        (lambda t: {**t, "attention_mask": t["attention_mask"][:3]}, "attention_mask is (3, 6) but input_ids are (4, 6)"),
        (
            lambda t: {**t, "attention_mask": t["attention_mask"] * 2},
            "prompt 0 has attention_mask value 2 at position 0; the mask must be 1 for a token and 0",
        ),
        (
            lambda t: {**t, "attention_mask": t["attention_mask"].float().index_put((torch.tensor(3), torch.tensor(1)), torch.tensor(0.5))},
            "prompt 3 has attention_mask value 0.5 at position 1",
        ),
    ],
    ids=["too-large", "negative", "float", "mask-shorter", "mask-fewer-prompts", "mask-of-twos", "mask-fraction"],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_prompts_are_refused_when_the_attribution_is_built(load, text, name, change, message):
    model = load(name)
    calls = []
    hook = model.text_model.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=re.escape(message)) as error:
            GMARAttribution(model, text=change(text))
    finally:
        hook.remove()
    assert "\n" not in str(error.value) and not calls
