"""The decomposition of head weights into prior, image, class and interaction parts."""

import pytest
import torch

from captum_gmar.evaluation.diagnostics.weight_decomposition import COMPONENTS, class_share, decompose_head_weights

N, K, L, H = 5, 4, 3, 4


def normalised(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum(-1, keepdim=True)


def shares(weights):
    return dict(zip(COMPONENTS, decompose_head_weights(weights).shares.tolist()))


def test_a_pure_prior():
    prior = normalised(torch.rand(L, H, generator=torch.Generator().manual_seed(0)) + 0.1)
    result = decompose_head_weights(prior.expand(N, K, L, H))
    torch.testing.assert_close(result.shares, torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(result.layer_shares[:, 0], torch.ones(L, dtype=torch.float64))
    torch.testing.assert_close(result.layer_rms, (prior.double() - 1 / H).square().mean(-1).sqrt())


def test_a_pure_class_effect_and_a_pure_image_effect():
    """Deviations that average to zero over the other factor are a pure main effect."""
    effect = torch.randn(K, L, H, generator=torch.Generator().manual_seed(1)) * 0.02
    effect = effect - effect.mean(-1, keepdim=True)  # each layer still sums to 1
    effect = effect - effect.mean(0)  # zero mean over classes: no prior
    by_class = (1 / H + effect).expand(N, K, L, H)
    assert shares(by_class) == pytest.approx({"prior": 0, "image": 0, "class": 1, "interaction": 0}, abs=1e-12)
    by_image = (1 / H + effect[:, None]).expand(K, N, L, H)  # K images, each for N classes
    assert shares(by_image) == pytest.approx({"prior": 0, "image": 1, "class": 0, "interaction": 0}, abs=1e-12)
    assert class_share(by_class).tolist() == pytest.approx([1.0] * N)
    assert class_share(by_image).tolist() == pytest.approx([0.0] * K, abs=1e-12)


def test_shares_sum_to_one_and_the_parts_rebuild_the_deviation():
    weights = normalised(torch.rand(N, K, L, H, generator=torch.Generator().manual_seed(2)) + 0.5)
    result = decompose_head_weights(weights)
    torch.testing.assert_close(result.shares.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(result.layer_shares.sum(-1), torch.ones(L, dtype=torch.float64))
    assert (result.shares > 0).all()  # random weights have some of every part
    # the overall shares are the layers' shares weighted by each layer's sum of squares
    sums = result.layer_rms.square()
    torch.testing.assert_close(result.shares, (result.layer_shares * sums.unsqueeze(-1)).sum(0) / sums.sum())


def test_uniform_weights_have_nothing_to_share():
    assert decompose_head_weights(torch.full((N, K, L, H), 1 / H)).shares.isnan().all()


@pytest.mark.parametrize(
    "weights, error, message",
    [
        (torch.full((N, K, L, H), 1 / H).tolist(), TypeError, "floating-point"),
        (torch.full((K, L, H), 1 / H), ValueError, r"\(N images, K classes, L layers, H heads\)"),
        (torch.full((1, K, L, H), 1 / H), ValueError, "at least 2 images, 2 classes"),
        (torch.full((N, 1, L, H), 1 / H), ValueError, "at least 2 images, 2 classes"),
        (torch.full((N, K, L, H), 0.3), ValueError, "sum to 1"),
        (torch.full((N, K, L, H), float("nan")), ValueError, "finite and non-negative"),
    ],
)
def test_bad_weights(weights, error, message):
    with pytest.raises(error, match=message):
        decompose_head_weights(weights)


def test_class_share_needs_two_classes():
    with pytest.raises(ValueError, match="at least two classes"):
        class_share(torch.full((N, 1, L, H), 1 / H))
