import pytest
import torch

from captum_gmar import GMARAttribution
from captum_gmar.evaluation import (
    blur,
    deletion_auc,
    deletion_insertion_curves,
    insertion_auc,
    perturbation_auc,
    perturbation_curve,
)

# A 16 x 16 scene whose class-0 score is the share of an 8 x 8 square (a quarter of the
# pixels, four 4 x 4 patches) still showing: the only evidence a map should find.
SIZE, B = 16, 4
SQUARE = torch.zeros(SIZE, SIZE, dtype=torch.bool)
SQUARE[4:12, 4:12] = True


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def square_score(x: torch.Tensor, other: float = 0.55) -> torch.Tensor:
    """``(n, 2)``: class 0 the mean of the square (1 when intact, 0 when zeroed), class 1 constant."""
    share = x[:, :, SQUARE].mean((1, 2))
    return torch.stack([share, torch.full_like(share, other)], dim=1)


@pytest.fixture
def scene():
    images = torch.randn(B, 3, SIZE, SIZE, generator=gen(0))
    images[:, :, SQUARE] = 1.0
    perfect = SQUARE.float() + 0.01 * torch.rand(B, SIZE, SIZE, generator=gen(1))
    maps = {"perfect": perfect, "random": torch.rand(B, SIZE, SIZE, generator=gen(2)), "inverted": -perfect}
    return images, maps, torch.zeros(B, dtype=torch.long)


def test_blur_is_a_normalised_separable_gaussian():
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1.0
    offsets = torch.arange(-4, 5, dtype=torch.float64)
    g = torch.exp(-0.5 * (offsets / 2.0) ** 2)
    g = (g / g.sum()).float()
    expected = torch.zeros(21, 21)
    expected[6:15, 6:15] = torch.outer(g, g)
    torch.testing.assert_close(blur(impulse, sigma=2.0)[0, 0], expected)
    constant = torch.full((2, 3, 8, 8), 0.7)
    torch.testing.assert_close(blur(constant, sigma=1.5), constant)
    tiny = torch.randn(1, 3, 4, 4, generator=gen())
    assert blur(tiny, sigma=5.0).shape == tiny.shape  # kernel cut to fit reflect padding
    with pytest.raises(ValueError, match="sigma"):
        blur(constant, sigma=0)


@pytest.mark.parametrize("unit, patch_size", [("pixel", None), ("patch", 4), ("patch", (4, 4))])
def test_deletion_and_insertion_rank_perfect_random_inverted(scene, unit, patch_size):
    images, maps, targets = scene
    kwargs = dict(baseline="zero", unit=unit, patch_size=patch_size)
    deletion = {name: deletion_auc(square_score, images, m, targets, **kwargs) for name, m in maps.items()}
    insertion = {name: insertion_auc(square_score, images, m, targets, **kwargs) for name, m in maps.items()}
    # The square goes first (perfect) or last (inverted): the share falls linearly over a quarter.
    torch.testing.assert_close(deletion["perfect"], torch.full((B,), 0.125))
    torch.testing.assert_close(deletion["inverted"], torch.full((B,), 0.875))
    torch.testing.assert_close(insertion["perfect"], torch.full((B,), 0.875))
    torch.testing.assert_close(insertion["inverted"], torch.full((B,), 0.125))
    assert (deletion["perfect"] < deletion["random"]).all() and (deletion["random"] < deletion["inverted"]).all()
    assert (insertion["perfect"] > insertion["random"]).all() and (insertion["random"] > insertion["inverted"]).all()


def test_curves_run_between_the_image_and_the_baseline(scene):
    images, maps, targets = scene
    baseline = torch.full((3, 1, 1), 0.5)  # broadcast to the images
    for mode, first, last in (("deletion", 1.0, 0.5), ("insertion", 0.5, 1.0)):
        fractions, scores = deletion_insertion_curves(square_score, images, maps["random"], targets, mode=mode, baseline=baseline, steps=8)
        torch.testing.assert_close(fractions, torch.linspace(0, 1, 9))
        assert scores.shape == (B, 9) and scores.dtype == torch.float32
        torch.testing.assert_close(scores[:, 0], torch.full((B,), first))
        torch.testing.assert_close(scores[:, -1], torch.full((B,), last))


def test_order_is_by_relevance_with_ties_in_row_major_order():
    image = torch.ones(1, 1, 2, 2)

    def pixels(x):
        return x.flatten(1)  # one "class" per pixel

    def curve(map_values, target):
        maps = torch.tensor(map_values, dtype=torch.float32).view(1, 2, 2)
        return deletion_insertion_curves(pixels, image, maps, torch.tensor([target]), baseline="zero", steps=4)[1][0]

    torch.testing.assert_close(curve([0.0, 0.0, 0.0, 0.0], 1), torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(curve([0.0, 3.0, 2.0, 1.0], 0), torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]))
    torch.testing.assert_close(curve([0.0, 3.0, 2.0, 1.0], 3), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))


def test_patches_are_ranked_by_their_mean_relevance(scene):
    images, _, targets = scene
    maps = SQUARE.float().expand(B, SIZE, SIZE).clone()
    maps[:, 0, 0] = 10.0  # one bright pixel: first as a pixel, but its patch's mean is only 0.625
    pixel = deletion_auc(square_score, images, maps, targets, baseline="zero")
    patch = deletion_auc(square_score, images, maps, targets, baseline="zero", unit="patch", patch_size=4)
    torch.testing.assert_close(patch, torch.full((B,), 0.125))
    assert (pixel > patch).all()


def test_chunks_do_not_change_the_result(scene):
    images, maps, targets = scene
    seen = []

    def recording(x):
        seen.append(x.shape[0])
        return square_score(x)

    full = deletion_auc(square_score, images, maps["random"], targets, baseline="blur", steps=5)
    chunked = deletion_auc(recording, images, maps["random"], targets, baseline="blur", steps=5, batch_size=7)
    torch.testing.assert_close(chunked, full)
    assert max(seen) == 7 and sum(seen) == B * 6


def test_perturbation_tests_rank_perfect_and_inverted(scene):
    images, maps, targets = scene
    auc = {
        (name, positive): perturbation_auc(square_score, images, m, targets, positive=positive)
        for name, m in maps.items()
        for positive in (True, False)
    }
    # Positive: the prediction flips once 20% of the pixels (the square first) are gone:
    # correct at 0 and 0.1 -> 100 * (0.1 + 0.05). Inverted: it flips only at 90%.
    torch.testing.assert_close(auc["perfect", True], torch.full((B,), 15.0))
    torch.testing.assert_close(auc["inverted", True], torch.full((B,), 85.0))
    torch.testing.assert_close(auc["perfect", False], torch.full((B,), 85.0))
    torch.testing.assert_close(auc["inverted", False], torch.full((B,), 15.0))
    assert (auc["perfect", True] <= auc["random", True]).all() and (auc["random", True] <= auc["inverted", True]).all()


def test_perturbation_curve_starts_from_the_unperturbed_prediction(scene):
    images, maps, _ = scene
    targets = torch.tensor([0, 1, 0, 1])
    fractions, correct = perturbation_curve(square_score, images, maps["perfect"], targets, positive=True, fractions=[0.0, 0.5, 1.0])
    torch.testing.assert_close(fractions, torch.tensor([0.0, 0.5, 1.0]))
    assert correct.dtype == torch.bool
    assert correct.tolist() == [[True, False, False], [False, True, True]] * 2


def test_runs_on_a_tiny_vit_with_gmar_maps(load_tiny, images):
    gmar = GMARAttribution(load_tiny("ViTForImageClassification"))
    targets = torch.tensor([0, 2, 4])
    maps = gmar.attribute(images, target=targets)[:, 0]

    def probabilities(x):
        return torch.softmax(gmar.forward_func(x), dim=-1)

    for auc in (deletion_auc, insertion_auc):
        scores = auc(probabilities, images, maps, targets, steps=4, unit="patch", patch_size=8)
        assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    scores = perturbation_auc(probabilities, images, maps, targets, positive=True)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 90)).all()


def test_bad_arguments_raise(scene):
    images, maps, targets = scene
    m = maps["random"]
    with pytest.raises(ValueError, match="reduce the channels"):
        deletion_auc(square_score, images, m.unsqueeze(1).expand(B, 3, SIZE, SIZE), targets)
    with pytest.raises(TypeError, match="integer"):
        deletion_auc(square_score, images, m, targets.float())
    with pytest.raises(ValueError, match="targets must have shape"):
        deletion_auc(square_score, images, m, targets[:2])
    with pytest.raises(ValueError, match="below the number of classes"):
        deletion_auc(square_score, images, m, torch.full((B,), 2))
    with pytest.raises(ValueError, match="score_fn must map"):
        deletion_auc(lambda x: x.mean((1, 2, 3)), images, m, targets)
    with pytest.raises(ValueError, match="NaN"):
        deletion_auc(square_score, images, torch.full_like(m, float("nan")), targets)
    with pytest.raises(ValueError, match="mode"):
        deletion_insertion_curves(square_score, images, m, targets, mode="both")
    with pytest.raises(ValueError, match="steps"):
        deletion_auc(square_score, images, m, targets, steps=0)
    with pytest.raises(ValueError, match="needs patch_size"):
        deletion_auc(square_score, images, m, targets, unit="patch")
    with pytest.raises(ValueError, match="only used with unit='patch'"):
        deletion_auc(square_score, images, m, targets, patch_size=4)
    with pytest.raises(ValueError, match="divide"):
        deletion_auc(square_score, images, m, targets, unit="patch", patch_size=5)
    with pytest.raises(ValueError, match="unit"):
        deletion_auc(square_score, images, m, targets, unit="token")
    with pytest.raises(ValueError, match="baseline must be"):
        deletion_auc(square_score, images, m, targets, baseline="mean")
    with pytest.raises(ValueError, match="broadcast"):
        deletion_auc(square_score, images, m, targets, baseline=torch.zeros(2, SIZE, SIZE))
    with pytest.raises(ValueError, match="batch_size"):
        deletion_auc(square_score, images, m, targets, batch_size=0)
    with pytest.raises(ValueError, match="increase strictly"):
        perturbation_auc(square_score, images, m, targets, positive=True, fractions=[0.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="at least two"):
        perturbation_auc(square_score, images, m, targets, positive=True, fractions=[0.5])
    with pytest.raises(TypeError, match="positive"):
        perturbation_auc(square_score, images, m, targets, positive="yes")
