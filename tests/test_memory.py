"""The memory estimate against measured peaks, and reading what a device has available."""

import pytest
import torch

from captum_gmar import AttentionRollout, GenericAttentionExplainability, GMARAttribution, load_reference_model
from captum_gmar.evaluation import measure_cost
from captum_gmar.memory import attention_call_bytes, available_bytes, gib


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("method", [GMARAttribution, GenericAttentionExplainability, AttentionRollout])
def test_estimate_is_close_to_the_measured_peak(method, attn):
    explainer = method(load_reference_model(attn_implementation=attn))
    x = torch.randn(1, 3, 256, 256)  # 1,025 tokens: the maps dominate
    vit = explainer.vit
    estimate = attention_call_bytes(
        1, vit.num_tokens(256, 256), 4, 6, 128, 4, explainer.maps_alive, explainer.needs_gradients, attn == "eager"
    )
    measured = measure_cost(explainer.attribute, x, target=1, device="cpu", repeats=1, warmup=1).peak_memory_bytes
    assert 0.75 * measured <= estimate <= 1.5 * measured, (gib(estimate), gib(measured))


def test_estimate_grows_with_the_square_of_the_tokens_and_with_the_batch():
    def maps_only(batch: int, tokens: int, backward: bool = True, eager: bool = False) -> int:
        return attention_call_bytes(batch, tokens, 4, 6, 0, 2, 3, backward, eager)

    base = maps_only(1, 100)
    assert base == 100 * 100 * 4 * 3 * 4  # three float32 maps
    assert maps_only(1, 200) == 4 * base
    assert maps_only(3, 100) == 3 * base
    assert maps_only(1, 100, eager=True) == (6 + 2) * 100 * 100 * 4 * 2  # float16 maps kept by 6 eager layers, +2
    assert maps_only(1, 100, backward=False, eager=True) == base


def test_activations_are_kept_for_every_layer_only_with_a_backward_pass():
    def activations(backward: bool) -> int:
        return attention_call_bytes(1, 100, 4, 6, 128, 4, 0, backward, False)

    assert activations(True) == 6 * activations(False) > 0
    assert attention_call_bytes(1, 100, 4, 6, 128, 4, 3, True, False) == max(activations(True), 3 * 4 * 100 * 100 * 4)


def test_available_bytes_on_the_cpu():
    available = available_bytes(torch.device("cpu"))
    assert available is None or 0 < available < 2**50
    assert available_bytes(torch.device("meta")) is None
