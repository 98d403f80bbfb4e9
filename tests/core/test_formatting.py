import numpy as np
import pytest
import torch

from captum_gmar.core.formatting import batch_slices, check_pixel_values, format_targets

PATCH = (8, 8)


def test_check_pixel_values_accepts_a_float_batch():
    x = torch.zeros(2, 3, 16, 24)
    assert check_pixel_values(x, 3, PATCH) is x


@pytest.mark.parametrize(
    "value, error, message",
    [
        (np.zeros((1, 3, 16, 16), dtype=np.float32), TypeError, "torch.Tensor"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), TypeError, "floating point"),
        (torch.zeros(3, 16, 16), ValueError, "4-D"),
        (torch.zeros(0, 3, 16, 16), ValueError, "empty batch"),
        (torch.zeros(1, 1, 16, 16), ValueError, "1 channels but the model expects 3"),
        (torch.zeros(1, 16, 16, 3), ValueError, "channels-first"),
        (torch.zeros(1, 3, 4, 16), ValueError, "smaller than one 8x8 patch"),
        (torch.tensor([float("nan")]).expand(1, 3, 16, 16), ValueError, "NaN or infinite"),
        (torch.tensor([float("inf")]).expand(1, 3, 16, 16), ValueError, "NaN or infinite"),
        (torch.zeros(1, 3, 16, 16, device="meta"), ValueError, "meta device"),
    ],
)
def test_check_pixel_values_rejects_bad_inputs(value, error, message):
    with pytest.raises(error, match=message):
        check_pixel_values(value, 3, PATCH)


def test_format_targets_captum_conventions():
    assert format_targets(None, 3, 5) is None
    assert format_targets(2, 3, 5).tolist() == [2, 2, 2]
    assert format_targets(np.int64(4), 2, 5).tolist() == [4, 4]
    assert format_targets([0, 4, 1], 3, 5).tolist() == [0, 4, 1]
    assert format_targets(torch.tensor([1, 2, 3]), 3, 5).tolist() == [1, 2, 3]
    assert format_targets(torch.tensor(3), 2, 5).tolist() == [3, 3]
    assert format_targets(torch.tensor([3]), 2, 5).tolist() == [3, 3]
    assert format_targets(torch.tensor([1, 2], dtype=torch.int32), 2, 5).dtype == torch.long


@pytest.mark.parametrize(
    "target, error, message",
    [
        (5, ValueError, "out of range: the model has 5 classes"),
        (-1, ValueError, "out of range"),
        ([0, 7, 1], ValueError, "target 7 is out of range"),
        ([0, 1], ValueError, "2 entries but the batch has 3"),
        (torch.tensor([0, 1, 2, 3]), ValueError, "4 entries but the batch has 3"),
        (torch.zeros(3, 1, dtype=torch.long), ValueError, "0-D or 1-D"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer class indices"),
        (1.5, TypeError, "target must be None"),
        (True, TypeError, "target must be None"),
        ("cat", TypeError, "target must be None"),
        ([0, 1.0, 2], TypeError, "one integer class index per example"),
        ([(0, 1), (1, 1), (2, 1)], TypeError, "one integer class index per example"),
        ((1, 2, 3), TypeError, "tuple indexes one multi-dimensional output"),
        (2**70, ValueError, "target 1180591620717411303424 is out of range"),
        ([0, 2**70, 1], ValueError, "out of range"),
        (np.uint64(2**63), ValueError, "out of range"),
    ],
)
def test_format_targets_rejects_bad_targets(target, error, message):
    with pytest.raises(error, match=message):
        format_targets(target, 3, 5)


def test_batch_slices():
    assert batch_slices(5, None) == [slice(0, 5)]
    assert batch_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batch_slices(2, 8) == [slice(0, 2)]
    with pytest.raises(ValueError, match="at least 1"):
        batch_slices(5, 0)
    with pytest.raises(TypeError, match="int or None"):
        batch_slices(5, 2.5)
