import pytest
import torch
import transformers

from captum_gmar.evaluation import Cost, measure_cost

MB = 2**20


def allocate(megabytes: int) -> float:
    x = torch.ones(megabytes * MB // 4)  # float32, every page touched
    return float(x.sum())


def test_cpu_peak_memory_sees_a_large_temporary_tensor():
    cost = measure_cost(allocate, 200, device="cpu", repeats=2)
    assert isinstance(cost, Cost)
    assert cost.output == 200 * MB // 4
    assert cost.peak_memory_bytes >= 150 * MB
    assert cost.seconds_median > 0


def test_trivial_call_is_cheap_and_passes_arguments():
    cost = measure_cost(lambda a, b=0: a + b, 2, b=3, device=torch.device("cpu"), repeats=5, warmup=0)
    assert cost.output == 5
    assert cost.seconds_median < 0.5
    assert 0 <= cost.peak_memory_bytes < 50 * MB


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="repeats"):
        measure_cost(abs, 1, device="cpu", repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_cost(abs, 1, device="cpu", warmup=-1)
    with pytest.raises(ValueError, match="CPU or CUDA"):
        measure_cost(abs, 1, device="meta")


def test_cpu_peak_is_seen_again_on_a_repeated_forward_backward():
    """Activations freed by one call and allocated again by the next must count both
    times (without returning freed blocks to the system the heap reuses them unseen)."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(num_hidden_layers=4, hidden_size=384, num_attention_heads=6, intermediate_size=1536)
    model = transformers.ViTForImageClassification(config).eval().requires_grad_(False)
    x = torch.randn(2, 3, 224, 224)

    def forward_backward():
        inputs = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(pixel_values=inputs).logits[:, 0].sum(), inputs)[0]

    peaks = [measure_cost(forward_backward, device="cpu", repeats=1, warmup=0).peak_memory_bytes for _ in range(3)]
    assert min(peaks) > 20e6
    assert min(peaks) > 0.5 * max(peaks)
