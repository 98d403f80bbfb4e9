import pytest
import torch

from captum_gmar.core.maps import input_map, patch_map


def test_patch_map_drops_prefix_tokens_and_is_row_major():
    relevance = torch.arange(2 * (3 + 6), dtype=torch.float32).view(2, 9)
    grid = patch_map(relevance, num_prefix_tokens=3, grid=(2, 3))
    assert grid.shape == (2, 2, 3)
    torch.testing.assert_close(grid[0], torch.tensor([[3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]))


def test_patch_map_rejects_a_wrong_grid():
    with pytest.raises(ValueError, match="do not fill a 2x2 grid"):
        patch_map(torch.zeros(1, 6), 1, (2, 2))


def test_input_map_shape_channels_and_constant_map():
    patches = torch.full((2, 3, 4), 0.25)
    full = input_map(patches, (8, 8), (2, 3, 24, 32))
    assert full.shape == (2, 3, 24, 32) and full.is_contiguous()
    torch.testing.assert_close(full, torch.full((2, 3, 24, 32), 0.25))
    torch.testing.assert_close(full[:, 0], full[:, 2])


def test_input_map_zeroes_pixels_no_patch_covers():
    patches = torch.ones(1, 2, 3)
    full = input_map(patches, (8, 8), (1, 1, 20, 29))  # covered area 16 x 24
    assert full[..., :16, :24].eq(1).all()
    assert full[..., 16:, :].eq(0).all() and full[..., :, 24:].eq(0).all()


def test_input_map_keeps_the_hot_patch_in_place():
    patches = torch.zeros(1, 4, 4)
    patches[0, 1, 2] = 1.0
    full = input_map(patches, (8, 8), (1, 1, 32, 32))[0, 0]
    row, col = divmod(int(full.argmax()), 32)
    assert 8 <= row < 16 and 16 <= col < 24
