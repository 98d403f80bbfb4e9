"""Real checkpoints from the user's Hugging Face cache, on a real photo (``pytest -m hub``).

Nothing is downloaded: a checkpoint missing from the cache skips its test, naming the
``hf download`` command that fetches it (docs/installation.md, "Tests on real checkpoints"). Each test
checks the prediction on ``skimage.data.chelsea()`` (a tabby cat), GMAR against the eager
reference (``reference_methods``) for that prediction, and, for image-text models,
zero-shot classification with real prompts.
"""

import pytest
import torch
from PIL import Image
from reference_methods import probe_weights, reference_gmar, zero_shot_call
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoProcessor

from captum_gmar import GMARAttribution
from captum_gmar.cli import main
from captum_gmar.loading import hub_snapshot
from captum_gmar.vit.model import VisionTransformer

#: ImageNet-1k's cats: tabby, tiger cat, Persian, Siamese, Egyptian cat
CATS = range(281, 286)

#: classifiers: special tokens before the patches; the class token is what GMAR reads by
#: default for each (DeiT's distillation token and DINOv2's patch mean are not averaged in)
CLASSIFIERS = {
    "google/vit-base-patch16-224": 1,
    "facebook/deit-small-distilled-patch16-224": 2,
    "facebook/dinov2-small-imagenet1k-1-layer": 1,
    "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k": 1,
}

#: zero-shot image-text models: special tokens, and what the image embedding reads
ZERO_SHOT = {
    "openai/clip-vit-base-patch32": (1, ("class",)),
    "google/siglip-base-patch16-224": (0, ("probe",)),
}

PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo of a car"]


def cached(repo_id: str) -> str:
    """The checkpoint's folder in the Hugging Face cache; skips the test where it is not."""
    import huggingface_hub.constants

    folder = hub_snapshot(repo_id)
    if folder is None:
        pytest.skip(f"{repo_id} is not in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}): hf download {repo_id}")
    return str(folder)


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    """``skimage.data.chelsea()``: a 451 x 300 px photo of a tabby cat."""
    data = pytest.importorskip("skimage.data", reason="the photo comes from scikit-image (pip install scikit-image)")
    return Image.fromarray(data.chelsea())


def assert_gmar_matches_the_reference(gmar: GMARAttribution, eager, x, target: int, prefix: int, **options) -> None:
    expected, expected_weights = reference_gmar(eager, x, torch.tensor([target]), prefix, **options)
    maps, weights = gmar.attribute(x, target=target, output="patches", return_head_weights=True)
    torch.testing.assert_close(maps.flatten(1), expected, rtol=2e-3, atol=1e-5)
    torch.testing.assert_close(weights, expected_weights, rtol=2e-3, atol=1e-5)


@pytest.mark.hub
@pytest.mark.parametrize("repo_id", CLASSIFIERS)
def test_an_imagenet_classifier_sees_the_cat(repo_id, cat):
    folder = cached(repo_id)
    timm = repo_id.startswith("timm/")
    if timm:
        pytest.importorskip("timm", reason="timm is not installed (pip install 'captum-gmar[timm]')")
    model = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).eval()
    # timm ignores attn_implementation (and 4.57 refuses it): the reference turns its fused attention off itself
    eager = (
        model
        if timm
        else AutoModelForImageClassification.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()
    )
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    x = processor(images=cat, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        predicted = int(VisionTransformer(model).logits(x).argmax())
    assert_gmar_matches_the_reference(GMARAttribution(model), eager, x, predicted, CLASSIFIERS[repo_id], readout=("class",))
    name = model.config.id2label[predicted]
    assert predicted in CATS, f"{repo_id} predicts {name!r} (class {predicted}) for a tabby cat"
    assert name.startswith("LABEL_") or "cat" in name.lower() or "tabby" in name.lower(), name


@pytest.mark.hub
@pytest.mark.parametrize("repo_id", ZERO_SHOT)
def test_a_zero_shot_model_picks_the_cat_prompt(repo_id, cat):
    folder = cached(repo_id)
    if "siglip" in repo_id:
        pytest.importorskip("sentencepiece", reason="SigLIP's tokenizer needs sentencepiece (pip install sentencepiece)")
    prefix, readout = ZERO_SHOT[repo_id]
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    eager = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    text = dict(processor(text=PROMPTS, padding="max_length", return_tensors="pt"))  # SigLIP was trained on max_length padding
    x = processor(images=cat, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = VisionTransformer(model, text=text).logits(x)
    assert int(logits.argmax()) == 0, dict(zip(PROMPTS, logits[0].tolist()))
    probe = probe_weights(eager, x, text) if readout == ("probe",) else None
    options = dict(readout=readout, call=zero_shot_call(text), probe=probe)
    assert_gmar_matches_the_reference(GMARAttribution(model, text=text), eager, x, 0, prefix, **options)


@pytest.mark.hub
def test_explain_a_cached_model_from_the_command_line(cat, tmp_path, capsys):
    repo_id = "google/vit-base-patch16-224"
    cached(repo_id)
    cat.save(tmp_path / "cat.png")
    assert (
        main(["explain", str(tmp_path / "cat.png"), "--model", repo_id, "--device", "cpu", "--out", str(tmp_path / "cat-explained.png")])
        == 0
    )
    predicted = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("predicted: "))
    assert "cat" in predicted.lower() or "tabby" in predicted.lower(), predicted
    assert (tmp_path / "cat-explained.png").is_file()


def test_a_checkpoint_missing_from_the_cache_skips_its_test_saying_how_to_get_it(hub_cache, tmp_path):
    reason = r"google/vit-base-patch16-224 is not in the Hugging Face cache \(.*hub-cache\): hf download google/vit-base-patch16-224"
    with pytest.raises(pytest.skip.Exception, match=reason):
        cached("google/vit-base-patch16-224")
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "config.json").write_text("{}")
    snapshot = hub_cache("google/vit-base-patch16-224", tmp_path / "checkpoint")
    assert cached("google/vit-base-patch16-224") == snapshot
