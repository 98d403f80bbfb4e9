import pytest
import torch

from captum_gmar.evaluation import ClassSensitivity, class_sensitivity, gini_index, mass_inside, pointing_game


def single_pixel(row: int, col: int, size: int = 5) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[row, col] = True
    return mask


def test_pointing_game_hits_misses_and_tolerance():
    peak = torch.zeros(5, 5)
    peak[2, 2] = 1.0
    maps = peak.expand(3, 5, 5)
    masks = torch.stack([single_pixel(2, 2), single_pixel(1, 1), single_pixel(0, 0)])
    assert pointing_game(maps, masks).tolist() == [True, False, False]
    assert pointing_game(maps, masks, tolerance=1).tolist() == [True, True, False]  # Chebyshev distance 1
    assert pointing_game(maps, masks, tolerance=2).tolist() == [True, True, True]
    assert pointing_game(maps, masks).dtype == torch.bool


def test_pointing_game_breaks_ties_in_row_major_order():
    maps = torch.zeros(2, 5, 5)
    maps[:, 3, 1] = maps[:, 1, 4] = 2.0  # two maxima: (1, 4) comes first
    masks = torch.stack([single_pixel(1, 4), single_pixel(3, 1)])
    assert pointing_game(maps, masks).tolist() == [True, False]


def test_mass_inside_exact_values():
    maps = torch.tensor([[[1.0, 2.0], [3.0, -4.0]], [[0.0, 0.0], [0.0, 0.0]], [[-1.0, -2.0], [0.0, 0.0]]])
    masks = torch.tensor([[[True, False], [False, True]]] * 3)
    # Negative relevance is clamped: 1 of the positive mass 6 lies inside.
    torch.testing.assert_close(mass_inside(maps, masks), torch.tensor([1 / 6, 0.0, 0.0]))
    torch.testing.assert_close(mass_inside(maps[:1], ~masks[:1]), torch.tensor([5 / 6]))


def test_class_sensitivity_signs():
    left = torch.zeros(1, 4, 4, dtype=torch.bool)
    left[..., :2] = True
    right = ~left
    on_left = left.float()
    right_heavy = 0.25 * left.float() + 0.75 * right.float()
    maps = torch.cat([on_left, right.float(), torch.ones(1, 4, 4), right_heavy])
    result = class_sensitivity(maps, left.expand(4, 4, 4), right.expand(4, 4, 4))
    assert isinstance(result, ClassSensitivity)
    torch.testing.assert_close(result.on_target, torch.tensor([1.0, 0.0, 0.5, 0.25]))
    torch.testing.assert_close(result.on_other, torch.tensor([0.0, 1.0, 0.5, 0.75]))
    torch.testing.assert_close(result.difference, torch.tensor([1.0, -1.0, 0.0, -0.5]))


def test_overlapping_pixels_count_for_both_items():
    maps = torch.ones(1, 1, 4)
    target = torch.tensor([[[True, True, False, False]]])
    other = torch.tensor([[[False, True, True, False]]])
    result = class_sensitivity(maps, target, other)
    torch.testing.assert_close(result.on_target, torch.tensor([0.5]))
    torch.testing.assert_close(result.on_other, torch.tensor([0.5]))


def test_bad_arguments_raise():
    maps, masks = torch.rand(2, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match="bool"):
        pointing_game(maps, masks.float())
    with pytest.raises(ValueError, match="shape"):
        mass_inside(maps, masks[:, :3])
    with pytest.raises(ValueError, match="masks must have shape"):
        mass_inside(maps, masks[0])
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, masks, tolerance=-1)
    with pytest.raises(ValueError, match="NaN"):
        mass_inside(torch.full_like(maps, float("nan")), masks)
    with pytest.raises(TypeError, match="floating-point"):
        mass_inside(masks, masks)


def test_gini_index_exact_values():
    even = torch.ones(1, 4, 4)
    one = torch.zeros(1, 4, 4)
    one[0, 2, 1] = 5.0
    half = torch.zeros(1, 1, 4)
    half[0, 0, :2] = 1.0
    torch.testing.assert_close(gini_index(torch.cat([even, one])), torch.tensor([0.0, 15 / 16]))
    torch.testing.assert_close(gini_index(half), torch.tensor([0.5]))  # (2*3-5)/4 + (2*4-5)/4 over n*sum = 8
    torch.testing.assert_close(gini_index(torch.zeros(1, 4, 4)), torch.zeros(1))
    torch.testing.assert_close(gini_index(-one), torch.zeros(1))  # negative relevance is no mass


def test_gini_index_on_the_patch_grid():
    """A patch map upsampled by repetition has the patch map's Gini on the patch grid."""
    patch = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0))
    upsampled = patch.repeat_interleave(4, -1).repeat_interleave(4, -2)
    torch.testing.assert_close(gini_index(upsampled, patch_size=4), gini_index(patch))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        gini_index(torch.rand(2, 1, 4, 4))
