import pytest
import torch

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
