"""Backbones explained by their similarity to reference embeddings (``references=``), and
target functions: the embedding read as each model returns it, GMAR against a float64
eager reference of the cosine, every method on every embedding model, CP-LRP's
conservation through the cosine, and the bad inputs."""

import threading

import pytest
import torch
import torch.nn.functional as F
import transformers
from reference_methods import reference_gmar
from tiny_models import VISION, ZERO_SHOT_MODELS, bias_free, images64, randomise_

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, RawAttention, TokenGradCAM
from captum_gmar.errors import UnsupportedModelError
from captum_gmar.names import EMBEDDING_MODEL_CLASSES
from captum_gmar.vit.similarity import SimilarityModel, embed_images

METHODS = [GMARAttribution, AttentionRollout, RawAttention, GenericAttentionExplainability, TokenGradCAM, AttnLRP, CPLRP]
MLP = dict(intermediate_size=64)

#: embedding model class -> (config, special tokens, the output field holding its embedding)
EMBEDDERS = {
    "Dinov2Model": (lambda: transformers.Dinov2Config(**VISION, mlp_ratio=2), 1, "pooler_output"),
    "Dinov2WithRegistersModel": (
        lambda: transformers.Dinov2WithRegistersConfig(**VISION, mlp_ratio=2, num_register_tokens=4),
        5,
        "pooler_output",
    ),
    "DINOv3ViTModel": (lambda: transformers.DINOv3ViTConfig(**VISION, **MLP, num_register_tokens=2), 3, "pooler_output"),
    "ViTModel": (lambda: transformers.ViTConfig(**VISION, **MLP), 1, "pooler_output"),
    "DeiTModel": (lambda: transformers.DeiTConfig(**VISION, **MLP), 2, "pooler_output"),
    "BeitModel": (lambda: transformers.BeitConfig(**VISION, **MLP, use_relative_position_bias=True), 1, "pooler_output"),
    "Data2VecVisionModel": (lambda: transformers.Data2VecVisionConfig(**VISION, **MLP, use_mean_pooling=False), 1, "pooler_output"),
    "CLIPVisionModel": (lambda: transformers.CLIPVisionConfig(**VISION, **MLP), 1, "pooler_output"),
    "CLIPVisionModelWithProjection": (lambda: transformers.CLIPVisionConfig(**VISION, **MLP, projection_dim=24), 1, "image_embeds"),
    "MetaClip2VisionModel": (lambda: transformers.MetaClip2VisionConfig(**VISION, **MLP), 1, "pooler_output"),
    "MetaClip2VisionModelWithProjection": (
        lambda: transformers.MetaClip2VisionConfig(**VISION, **MLP, projection_dim=24),
        1,
        "image_embeds",
    ),
    "SiglipVisionModel": (lambda: transformers.SiglipVisionConfig(**VISION, **MLP), 0, "pooler_output"),
    "CLIPModel": (ZERO_SHOT_MODELS["CLIPModel"], 1, None),  # image tower: get_image_features
    "SiglipModel": (ZERO_SHOT_MODELS["SiglipModel"], 0, None),
}
NAMES = list(EMBEDDERS)


def tiny(name: str, attn: str = "sdpa") -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(transformers, name)._from_config(EMBEDDERS[name][0](), attn_implementation=attn)
    return randomise_(model).eval()


def own_embedding(model: torch.nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """The embedding as the model's own forward returns it (the class token where a model
    built without pooler returns none, as Data2VecVisionModel by default)."""
    field = EMBEDDERS[name][2]
    if field is None:
        features = model.get_image_features(pixel_values=x)
        return features if isinstance(features, torch.Tensor) else features.pooler_output
    out = model(pixel_values=x)
    return out.last_hidden_state[:, 0] if getattr(out, field) is None else getattr(out, field)


def images(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_the_table_covers_the_listed_classes():
    assert set(EMBEDDING_MODEL_CLASSES) <= set(EMBEDDERS)


@pytest.mark.parametrize("name", NAMES)
def test_the_similarity_is_the_cosine_of_the_models_own_embedding(name):
    model = tiny(name)
    x, refs = images(), images(2)
    with torch.no_grad():
        expected_refs, expected_x = own_embedding(model, name, refs), own_embedding(model, name, x)
    references = embed_images(model, refs)
    torch.testing.assert_close(references, expected_refs)
    similarity = SimilarityModel(model, references)
    with torch.no_grad():
        got = similarity(x)
    torch.testing.assert_close(got, F.cosine_similarity(expected_x[:, None], expected_refs[None], dim=-1), rtol=1e-5, atol=1e-6)
    # centred: the cosine of both embeddings less the centre
    center = expected_refs.mean(0) + 0.1
    with torch.no_grad():
        centred = SimilarityModel(model, references, center=center)(x)
    torch.testing.assert_close(
        centred, F.cosine_similarity((expected_x - center)[:, None], (expected_refs - center)[None], dim=-1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", ["Dinov2Model", "ViTModel", "CLIPVisionModelWithProjection"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_gmar_of_the_similarity_matches_a_float64_eager_reference(name, attn):
    eager = tiny(name, "eager").double()
    x = images64()
    references = embed_images(eager, images64(4)).double()
    center = references.mean(0)
    targets = torch.tensor([2, 0, 3])

    def call(model, pixels):
        out = model(pixel_values=pixels, output_attentions=True)
        embedding = getattr(out, EMBEDDERS[name][2]) - center
        return F.cosine_similarity(embedding[:, None], (references - center)[None], dim=-1), out.attentions

    expected, expected_weights = reference_gmar(eager, x, targets, EMBEDDERS[name][1], call=call)
    gmar = GMARAttribution(tiny(name, attn).double(), references=references, center=center)
    maps, weights = gmar.attribute(x, target=targets, output="patches", return_head_weights=True)
    torch.testing.assert_close(maps.flatten(1).double(), expected.double(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(weights.double(), expected_weights.double(), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(weights[0], torch.full_like(weights[0], 0.25))  # not vacuous: the heads differ


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.get_name())
@pytest.mark.parametrize("name", NAMES)
def test_every_method_explains_every_embedding_model(name, method):
    model = tiny(name)
    x = images()
    explainer = method(model, references=embed_images(model, images(2)))
    maps = explainer.attribute(x, target=torch.tensor([0, 1, 1]))
    assert maps.shape == x.shape and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert explainer.forward_func(x).shape == (3, 2)


@pytest.mark.parametrize("name", NAMES)
def test_cplrp_conserves_the_cosine_without_biases(name):
    model = bias_free(tiny(name))
    x = images64()
    others = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(9))  # not among x
    explainer = CPLRP(model, references=embed_images(model, others).double())
    relevance = explainer.attribute(x, target=1)
    with torch.no_grad():
        cosine = explainer.forward_func(x)[:, 1]
    torch.testing.assert_close(relevance.double().sum((1, 2, 3)), cosine, rtol=0, atol=1e-5)
    assert cosine.abs().max() > 0.05 and relevance.abs().sum() > 0  # not vacuous


def test_the_similarity_map_follows_the_reference():
    model = tiny("Dinov2Model")
    x = images(1)
    gmar = GMARAttribution(model, references=embed_images(model, images(3)))
    maps = gmar.attribute(x.expand(3, -1, -1, -1), target=torch.tensor([0, 1, 2]), output="patches")
    assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[1], maps[2])


def test_one_backbone_under_several_reference_sets_shares_its_lock():
    model = tiny("Dinov2Model")
    x = images(2)
    explainers = [GMARAttribution(model, references=embed_images(model, images(k + 2))) for k in range(2)]
    sequential = [e.attribute(x, target=1) for e in explainers]
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    def run(k: int) -> None:
        for _ in range(5):
            results[k].append(explainers[k].attribute(x, target=1))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(2):
        assert all(torch.equal(r, sequential[k]) for r in results[k])
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_bad_references_are_refused_before_any_work():
    model = tiny("Dinov2Model")
    calls = []
    model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(1), with_kwargs=True)
    good = torch.randn(2, 32)
    cases = [
        (torch.randn(2, 31), ValueError, r"references must be \(K, 32\), this model's embedding width being 32; got shape \(2, 31\)"),
        (torch.randn(32), ValueError, r"references must be \(K, 32\)"),
        (torch.randn(0, 32), ValueError, r"references must be \(K, 32\)"),
        (torch.ones(2, 32, dtype=torch.long), TypeError, "references must be floating point"),
        ([[0.0] * 32], TypeError, "references must be a torch.Tensor"),
        (torch.tensor([[float("nan")] * 32, [1.0] * 32]), ValueError, r"references contain NaN or infinite values \(reference 0\)"),
        (torch.zeros(2, 32), ValueError, "reference 0 has norm 0"),
    ]
    for references, error, message in cases:
        with pytest.raises(error, match=message):
            GMARAttribution(model, references=references)
    with pytest.raises(ValueError, match=r"center must be \(32,\)"):
        AttnLRP(model, references=good, center=torch.zeros(31))
    with pytest.raises(ValueError, match="has norm 0 after centring"):
        GMARAttribution(model, references=good, center=good[0])
    with pytest.raises(ValueError, match="pass references= too"):
        GMARAttribution(model, center=torch.zeros(32))
    assert not calls


def test_models_without_an_embedding_are_refused():
    classifier = transformers.ViTForImageClassification(transformers.ViTConfig(**VISION, **MLP, num_labels=3))
    with pytest.raises(UnsupportedModelError, match="ViTForImageClassification is not a supported embedding model"):
        GMARAttribution(classifier, references=torch.randn(2, 32))
    clip = tiny("CLIPModel")
    with pytest.raises(ValueError, match="pass text= .* or references= .*, not both"):
        GMARAttribution(clip, text=torch.zeros(2, 4, dtype=torch.long), references=torch.randn(2, 32))
    siglip = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**VISION, **MLP, vision_use_head=False))
    with pytest.raises(UnsupportedModelError, match="no attention-pooling head"):
        GMARAttribution(siglip, references=torch.randn(2, 32))


def test_a_target_function_is_a_score_like_a_class():
    model = tiny("Dinov2Model")
    x = images()
    gmar = GMARAttribution(model, references=embed_images(model, images(3)))
    by_index, weights = gmar.attribute(x, target=2, return_head_weights=True)
    by_function, weights_f = gmar.attribute(x, target=lambda z: z[:, 2], return_head_weights=True)
    torch.testing.assert_close(by_function, by_index)
    torch.testing.assert_close(weights_f, weights)
    # relevance propagation is linear in the score: a margin's relevance is the difference
    lrp = AttnLRP(model, references=embed_images(model, images(3)))
    margin = lrp.attribute(x, target=lambda z: z[:, 0] - z[:, 2], internal_batch_size=2)
    torch.testing.assert_close(margin, lrp.attribute(x, target=0) - lrp.attribute(x, target=2), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", [GMARAttribution, AttnLRP], ids=lambda m: m.get_name())
def test_a_target_function_of_the_wrong_shape_is_refused_before_any_work(method):
    model = tiny("Dinov2Model")
    calls = []
    model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(1), with_kwargs=True)
    explainer = method(model, references=torch.randn(3, 32))
    with pytest.raises(
        TypeError, match=r"a target function must map the logits \(2, 3\) to one floating-point score per example \(2,\); got \(2, 3\)"
    ):
        explainer.attribute(images(2), target=lambda z: z)
    with pytest.raises(TypeError, match="got list"):
        explainer.attribute(images(2), target=lambda z: [0.0, 1.0])
    assert not calls


@pytest.mark.parametrize("method", [GMARAttribution, AttnLRP])
def test_a_centre_equal_to_the_images_own_embedding_is_refused_saying_so(method):
    model = tiny("Dinov2Model")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    own = embed_images(model, x[1:])[0]
    explainer = method(model, references=torch.randn(3, 32), center=own)
    with pytest.raises(ValueError, match=r"embedding of image\(s\) \[1\] equals center.*centre on a gallery's mean embedding"):
        explainer.attribute(x, target=0)
