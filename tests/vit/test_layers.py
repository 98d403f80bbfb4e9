"""The residual stream between layers: every family's layers are found, the pooled patch
tokens are those transformers hands back, and a direction added to them moves the
scores, and nothing else, only inside the call."""

import pytest
import torch
from tiny_models import MODEL_NAMES, PREFIX_TOKENS

from captum_gmar.vit.layers import layer_modules, pooled_patches, scores_with_tokens_shifted
from captum_gmar.vit.model import VisionTransformer
from captum_gmar.vit.outputs import logit_scores


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_family_has_one_layer_per_block_and_its_pooled_patches_are_the_hidden_states(load_tiny, images, name):
    vit = VisionTransformer(load_tiny(name))
    layers = layer_modules(vit)
    assert len(layers) == vit.num_layers == 3 and len(set(map(id, layers))) == 3
    for layer in range(3):
        pooled = pooled_patches(vit, images, layer)
        assert pooled.shape == (3, vit.hidden_size) and pooled.dtype == torch.float32
        # transformers' hidden states: the embeddings, then each layer's output (but the last: 4.57's ViTs give it after
        # the final norm)
        if not name.startswith("Timm") and layer < 2:
            hidden = vit.model(pixel_values=images, output_hidden_states=True)
            states = getattr(hidden, "hidden_states", None) or hidden.vision_model_output.hidden_states
            expected = states[layer + 1][:, PREFIX_TOKENS[name] :].mean(dim=1)
            torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)


def test_a_direction_moves_the_scores_only_inside_the_call(load_tiny, images):
    vit = VisionTransformer(load_tiny("ViTForImageClassification"))
    scores = logit_scores(vit)
    plain = scores(vit.logits(images))
    directions = torch.zeros(3, vit.hidden_size)
    directions[1, 0] = 5.0
    directions[2] = -directions[1]
    shifted = scores_with_tokens_shifted(vit, images, 1, directions, scores)
    assert shifted.shape == (3, 3, 5)
    torch.testing.assert_close(shifted[0], plain)  # the zero direction changes nothing
    assert (shifted[1] - plain).abs().max() > 1e-3 and (shifted[1] - shifted[2]).abs().max() > 1e-3
    torch.testing.assert_close(scores(vit.logits(images)), plain)  # the hook is gone after the call
    # added at the last layer, a direction moves the mean of the patch tokens the final norm reads by exactly itself
    moved = {}

    def keep(module, args):
        moved["tokens"] = args[0]

    handle = vit.model.vit.layernorm.register_forward_pre_hook(keep)
    try:
        scores_with_tokens_shifted(vit, images, 2, directions[1:2], scores)
    finally:
        handle.remove()
    torch.testing.assert_close(moved["tokens"][:, 1:].mean(dim=1), pooled_patches(vit, images, 2) + directions[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [-1, 3, 1.0, True])
def test_a_layer_outside_the_model_is_refused(load_tiny, images, layer):
    vit = VisionTransformer(load_tiny("ViTForImageClassification"))
    with pytest.raises(ValueError, match=r"^layer must be an integer from 0 to 2, got"):
        pooled_patches(vit, images, layer)
