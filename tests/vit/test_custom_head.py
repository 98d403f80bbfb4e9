"""A user's own classifier on a supported backbone (the protocol of docs/models.md), above
all DINOv3, which transformers ships without a classification head; its RoPE rotates
queries and keys after the projections, so its attention is captured at the kernel."""

import pytest
import torch
import transformers
from reference_methods import eager_pass, reference_gae, reference_gmar, reference_rollout
from tiny_models import VISION, DinoV3Classifier, randomise_
from torch import nn

from captum_gmar import AttentionRollout, GenericAttentionExplainability, GMARAttribution
from captum_gmar.core.heads import attention_probs, split_heads
from captum_gmar.errors import UnsupportedModelError
from captum_gmar.vit.model import VisionTransformer
from captum_gmar.vit.outputs import score_function

REGISTERS = 2
PREFIX = 1 + REGISTERS
TARGETS = torch.tensor([2, 0, 1])


class PatchMeanClassifier(nn.Module):
    """A head on the mean of a ViT's patch tokens."""

    token_pooling = "patches"
    num_labels = 3

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.vit = backbone
        self.classifier = nn.Linear(backbone.config.hidden_size, self.num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.vit(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state[:, 1:].mean(1))


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    """``load(attn)``: a DinoV3Classifier on a tiny DINOv3 backbone with 2 registers, seeded."""
    path = tmp_path_factory.mktemp("dinov3")
    torch.manual_seed(0)
    config = transformers.DINOv3ViTConfig(**VISION, intermediate_size=64, num_register_tokens=REGISTERS)
    randomise_(transformers.DINOv3ViTModel(config)).save_pretrained(path)

    def load(attn: str = "sdpa") -> DinoV3Classifier:
        torch.manual_seed(1)
        backbone = transformers.DINOv3ViTModel.from_pretrained(path, attn_implementation=attn)
        return DinoV3Classifier(backbone, num_labels=5).eval()

    return load


@pytest.mark.parametrize("size", [(32, 32), (40, 24)], ids=["square", "non-square"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("readout, pooling", [("auto", ("class",)), ("model", ("class", "patches"))])
def test_gmar_on_dinov3_matches_the_reference(load, attn, size, readout, pooling):
    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(3))
    expected, expected_weights = reference_gmar(load("eager"), x, TARGETS, PREFIX, readout=pooling)
    maps, weights = GMARAttribution(load(attn), readout=readout).attribute(x, target=TARGETS, output="patches", return_head_weights=True)
    assert maps.shape == (3, size[0] // 8, size[1] // 8)
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_gae_and_rollout_on_dinov3_match_the_reference(load, images, attn):
    model = load(attn)
    expected = reference_gae(load("eager"), images, TARGETS, PREFIX, readout=("class", "patches"))
    maps = GenericAttentionExplainability(model, readout="model").attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    expected = reference_rollout(load("eager"), images, PREFIX, readout=("class",))
    torch.testing.assert_close(AttentionRollout(model).attribute(images, output="patches").flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_the_rotated_queries_and_keys_are_captured(load, images):
    _, eager_maps, _ = eager_pass(load("eager"), images, None)
    vit = VisionTransformer(load())
    assert vit.architecture.family == "DINOv3" and vit.num_prefix_tokens == PREFIX and vit.num_labels == 5
    with vit.trace(images, with_grad=False, keep_hidden=True) as trace:
        for layer, (block, cap) in enumerate(zip(trace.blocks, trace.layers)):
            torch.testing.assert_close(trace.attention_probs(layer), eager_maps[layer], rtol=1e-4, atol=1e-6)
            # softmax(q k^T s) of the projections, before the rotation, is not DINOv3's attention
            projected = attention_probs(split_heads(block.query(cap.hidden), 4), split_heads(block.key(cap.hidden), 4), cap.scale)
            assert not torch.allclose(projected, eager_maps[layer], atol=1e-3)


def test_a_head_on_a_vit_backbone(tiny_model_dirs, images):
    def load(attn: str) -> PatchMeanClassifier:
        path = tiny_model_dirs["ViTForImageClassification"]
        backbone = transformers.ViTModel.from_pretrained(path, attn_implementation=attn, add_pooling_layer=False)
        torch.manual_seed(0)
        return PatchMeanClassifier(backbone).eval()

    expected, _ = reference_gmar(load("eager"), images, TARGETS, 1, readout=("patches",))
    maps = GMARAttribution(load("sdpa")).attribute(images, target=TARGETS, output="patches")
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_the_comparison_scores_a_head_without_a_config(tiny_model_dirs, images):
    """A user's head has no transformers config: its classes are scored by softmax."""
    backbone = transformers.ViTModel.from_pretrained(tiny_model_dirs["ViTForImageClassification"], add_pooling_layer=False)
    model = PatchMeanClassifier(backbone).eval()
    with torch.no_grad():
        torch.testing.assert_close(score_function(VisionTransformer(model))(images), torch.softmax(model(images), dim=-1))


def test_the_protocol_is_checked(load):
    model = load()
    del model.num_labels
    with pytest.raises(UnsupportedModelError, match="holds a DINOv3ViTModel but no int attribute num_labels"):
        GMARAttribution(model)
    model = load()
    model.token_pooling = "class+registers"
    with pytest.raises(ValueError, match="token_pooling must be '\\+'-joined distinct groups among class, distillation, patches, tokens"):
        GMARAttribution(model)
    two = nn.ModuleList([load().backbone, load().backbone])
    two.num_labels = 5
    with pytest.raises(UnsupportedModelError, match="holds 2 supported backbones"):
        GMARAttribution(two)
    with pytest.raises(UnsupportedModelError, match="returns an embedding, not class logits: pass references="):
        GMARAttribution(load().backbone)  # a backbone has no logits to explain, only its similarity to references


def test_the_docs_example_runs_as_written_on_a_new_head_in_training_mode(load, tmp_path):
    """docs/models.md's "Your own head" block, given a backbone folder, images and labels:
    the new head is in training mode, which changes nothing it computes, so it is explained."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    block = next(b for b in re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE) if "class DinoV3Classifier" in b)
    backbone = load("sdpa").backbone
    backbone.save_pretrained(tmp_path)
    namespace = {"path": tmp_path, "pixel_values": torch.randn(3, 3, 32, 32), "labels": TARGETS}
    exec(compile(block, "docs/models.md, Your own head", "exec"), namespace)
    assert namespace["model"].training and namespace["attr"].shape == (3, 3, 32, 32)
