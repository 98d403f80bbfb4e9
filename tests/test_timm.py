"""Native timm vision transformers (the optional ``timm`` extra): ViT, DeiT distilled,
DINOv2 with registers and EVA-02 (RoPE), with timm's fused attention (sdpa) on and off,
against the reference on timm's unfused attention."""

import pytest
import torch
from reference_methods import reference_gae, reference_gmar, reference_gradcam, reference_rollout
from tiny_models import import_timm, randomise_

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, TokenGradCAM
from captum_gmar.errors import UnsupportedModelError
from captum_gmar.evaluation.metrics.invariance import invariance_table, reparametrised_copy
from captum_gmar.vit.model import VisionTransformer

timm = import_timm()

#: key -> (timm architecture, special tokens, what its head reads)
MODELS = {
    "vit": ("vit_tiny_patch16_224", 1, ("class",)),
    "deit-distilled": ("deit_tiny_distilled_patch16_224", 2, ("class", "distillation")),
    "dinov2-registers": ("vit_small_patch14_reg4_dinov2", 5, ("class",)),
    "eva02": ("eva02_tiny_patch14_224", 1, ("patches",)),
}
TARGETS = torch.tensor([4, 1, 0])


def make(key: str, fused: bool = True, **options) -> torch.nn.Module:
    """A tiny, seeded, randomised timm model (32 px, patch 8, 3 blocks of 4 heads, 5 classes
    unless ``num_classes`` says otherwise)."""
    torch.manual_seed(0)
    model = timm.create_model(
        MODELS[key][0],
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=3,
        num_heads=4,
        dynamic_img_size=True,
        **{"num_classes": 5, **options},
    )
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused
    return randomise_(model).eval()


def auto(pooling: tuple[str, ...]) -> tuple[str, ...]:
    return pooling if len(pooling) == 1 else ("class",)


@pytest.mark.parametrize("size", [(32, 32), (40, 24)], ids=["square", "non-square"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("key", MODELS)
def test_gmar_matches_the_reference(images, key, fused, size):
    _, prefix, pooling = MODELS[key]
    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(6))
    expected, expected_weights = reference_gmar(make(key), x, TARGETS, prefix, readout=auto(pooling))
    maps, weights = GMARAttribution(make(key, fused)).attribute(x, target=TARGETS, output="patches", return_head_weights=True)
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("key", MODELS)
def test_gae_rollout_and_the_models_read_out_match_the_reference(images, key):
    _, prefix, pooling = MODELS[key]
    model = make(key)
    expected = reference_gae(make(key), images, TARGETS, prefix, readout=pooling)
    maps = GenericAttentionExplainability(model, readout="model").attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    expected = reference_rollout(make(key), images, prefix, readout=auto(pooling))
    torch.testing.assert_close(AttentionRollout(model).attribute(images, output="patches").flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_grad_cam(images):
    expected = reference_gradcam(make("vit"), images, TARGETS, 1)
    maps = TokenGradCAM(make("vit")).attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_what_the_adapter_reads_from_a_timm_model():
    vit = VisionTransformer(make("dinov2-registers"))
    assert (vit.num_prefix_tokens, vit.patch_size, vit.image_size, vit.num_labels, vit.num_layers, vit.num_heads) == (
        5,
        (8, 8),
        (32, 32),
        5,
        3,
        4,
    )
    assert not vit.keeps_attention_for_backward and VisionTransformer(make("vit", fused=False)).keeps_attention_maps


def test_poolings_that_are_not_token_averages():
    with pytest.raises(ValueError, match="no class token and pools its tokens with an attention-pooling head"):
        GMARAttribution(make("vit", class_token=False, global_pool="map"))
    max_pooled = make("vit", global_pool="max")
    assert GMARAttribution(max_pooled).pooling == ("class",)  # auto falls back to the class token
    with pytest.raises(ValueError, match="pools its tokens with global_pool='max'.*use readout='cls'"):
        GMARAttribution(max_pooled, readout="model")
    assert GMARAttribution(make("vit", global_pool="avg", pool_include_prefix=True)).pooling == ("tokens",)


def test_the_model_comes_back_as_it_was(images):
    model = make("eva02", fused=True)
    model.blocks[1].attn.fused_attn = False
    GMARAttribution(model).attribute(images, target=1)
    assert [block.attn.fused_attn for block in model.blocks] == [True, False, True]
    assert not any(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch._C._len_torch_function_stack() == 0


def _bias_free(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name.endswith(("cls_token", "reg_token", "dist_token", "pos_embed")):
                param.zero_()
    return model.double().eval()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("key", MODELS)
def test_cplrp_conserves_the_target_logit_without_biases(key, fused):
    model = _bias_free(make(key, fused))
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    relevance = CPLRP(model).attribute(x, target=TARGETS)
    with torch.no_grad():
        logits = model(x).gather(1, TARGETS.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(relevance.double().sum((1, 2, 3)), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", [AttnLRP, CPLRP])
@pytest.mark.parametrize("key", MODELS)
def test_lrp_fused_attention_equals_unfused(images, key, method):
    fused = method(make(key, True)).attribute(images, target=TARGETS)
    unfused = method(make(key, False)).attribute(images, target=TARGETS)
    assert fused.abs().sum() > 0
    torch.testing.assert_close(fused, unfused, rtol=1e-3, atol=1e-5 * unfused.abs().max().item())


@pytest.mark.parametrize("key", MODELS)
def test_a_timm_vit_without_head_is_explained_by_its_similarity_to_references(key):
    """``num_classes=0``: the model returns its pooled embedding; the similarity is its
    cosine to references, GMAR matches the reference on that score and CP-LRP conserves it."""
    from captum_gmar.vit.similarity import SimilarityModel, embed_images

    _, prefix, pooling = MODELS[key]
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    model = make(key, num_classes=0)
    references = embed_images(model, torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7)))
    with torch.no_grad():
        expected = torch.nn.functional.cosine_similarity(model(x)[:, None], references[None], dim=-1)
        torch.testing.assert_close(SimilarityModel(model, references)(x), expected)
    similarity = SimilarityModel(make(key, num_classes=0), references)
    reference, _ = reference_gmar(similarity, x, TARGETS % 4, prefix, readout=auto(pooling))
    maps = GMARAttribution(make(key, num_classes=0), references=references).attribute(x, target=TARGETS % 4, output="patches")
    torch.testing.assert_close(maps.flatten(1), reference, rtol=1e-4, atol=1e-6)
    bias_free = _bias_free(make(key, num_classes=0))
    explainer = CPLRP(bias_free, references=references.double())
    relevance = explainer.attribute(x.double(), target=1)
    with torch.no_grad():
        cosine = explainer.forward_func(x.double())[:, 1]
    torch.testing.assert_close(relevance.double().sum((1, 2, 3)), cosine, rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="has a classifier; for its embedding create it with num_classes=0"):
        GMARAttribution(make(key), references=references)
    with pytest.raises(TypeError, match="has no classifier .num_classes=0. and returns an embedding: pass references="):
        GMARAttribution(make(key, num_classes=0))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("key", MODELS)
def test_rescaling_heads_keeps_the_function_and_the_invariant_maps(images, key, fused):
    """The value rows of timm's fused qkv (EVA02: with its separate value bias, and RoPE)
    rescaled against the output projection: same logits, same maps for the gate score,
    another map for GMAR's output-gradient norm."""
    model = make(key, fused)
    rows = invariance_table(model, images, TARGETS, ["gmar-l1", "gmar-gate", "gae"], scales=(100.0,), scopes=("all",))
    change = {r["method"]: r["patch_change"] for r in rows}
    assert rows[0]["logit_error"] < 1e-5
    assert change["GMAR (gate, abs)"] < 1e-4 and change["GAE"] < 1e-4 and change["GMAR (L1)"] > 1e-3, change


def test_rescaling_heads_is_refused_where_the_heads_outputs_are_normalised():
    model = make("vit", scale_attn_norm=True)  # a LayerNorm between the heads' outputs and the output projection
    with pytest.raises(UnsupportedModelError, match="normalises the heads' outputs"):
        reparametrised_copy(model, torch.ones(3, 4))
