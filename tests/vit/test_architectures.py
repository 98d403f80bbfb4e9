"""What the package knows of each supported family: every class tested, its blocks, special
tokens and patch grid found, its logits at other sizes, and the families' table read as declared."""

from types import SimpleNamespace

import pytest
import torch
from tiny_models import MODEL_NAMES, PREFIX_TOKENS, takes_other_sizes

from captum_gmar.names import CLASSIFIERS
from captum_gmar.vit.architectures import describe, pooling_of
from captum_gmar.vit.model import SUPPORTED_MODEL_CLASSES, VisionTransformer


def test_every_supported_class_is_tested():
    assert set(MODEL_NAMES) == set(SUPPORTED_MODEL_CLASSES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_finds_blocks_tokens_and_grid(load_tiny, name):
    vit = VisionTransformer(load_tiny(name))
    assert vit.num_layers == 3 and vit.num_heads == 4
    assert vit.num_prefix_tokens == PREFIX_TOKENS[name]
    assert vit.patch_size == (8, 8) and vit.image_size == (32, 32)
    assert vit.grid(40, 27) == (5, 3)
    for block in vit.blocks:
        assert block.num_heads == 4
        assert block.scaling is None or block.scaling == pytest.approx(8**-0.5)  # None: the kernel's scale is captured


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_logits_accept_other_image_sizes(load_tiny, name):
    model = load_tiny(name)
    if not takes_other_sizes(model):
        pytest.skip(f"{name} takes no interpolate_pos_encoding in this transformers version")
    vit = VisionTransformer(model)
    assert vit.logits(torch.randn(2, 3, 48, 16)).shape == (2, 5)


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_each_classifier_is_described_as_the_families_table_declares(load_tiny, name):
    family, _, reads, capture = CLASSIFIERS[name]
    architecture = describe(load_tiny(name))
    assert (architecture.family, architecture.capture) == (family, capture)
    if reads != "beit":  # the pooler's choice, from the config (below)
        assert architecture.pooling == tuple(reads.split("+"))


def test_beit_pooling_follows_its_config():
    assert pooling_of("beit", SimpleNamespace(use_mean_pooling=True)) == ("patches",)
    assert pooling_of("beit", SimpleNamespace(use_mean_pooling=False)) == ("class",)
    assert pooling_of("class+distillation", None) == ("class", "distillation")
