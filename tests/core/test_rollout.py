import pytest
import torch

from captum_gmar.core.rollout import add_identity, add_residual, discard_lowest, readout_row, rollout_row

B, T = 2, 6


def stochastic(seed: int) -> torch.Tensor:
    return torch.softmax(torch.randn(B, T, T, generator=torch.Generator().manual_seed(seed)) * 2, dim=-1)


def test_add_residual_rows_sum_to_one():
    attn = stochastic(0)
    mixed = add_residual(attn, 0.3)
    torch.testing.assert_close(mixed, 0.7 * attn + 0.3 * torch.eye(T))
    torch.testing.assert_close(mixed.sum(-1), torch.ones(B, T))


def test_add_residual_extremes():
    attn = stochastic(1)
    torch.testing.assert_close(add_residual(attn, 0.0), attn)
    torch.testing.assert_close(add_residual(attn, 1.0), torch.eye(T).expand(B, T, T))


def test_add_residual_renormalises_non_stochastic_rows():
    attn = stochastic(2) * 3.0
    torch.testing.assert_close(add_residual(attn, 0.5).sum(-1), torch.ones(B, T))
    zero = torch.zeros(1, 3, 3)
    assert torch.equal(add_residual(zero, 0.0), zero)


def test_discard_lowest_zeroes_the_lowest_entries_but_keeps_cls_to_cls():
    attn = stochastic(3)
    attn[:, 0, 0] = 0.0  # the lowest entry, but protected
    out = discard_lowest(attn, 0.5)
    count = int(T * T * 0.5)
    for b in range(B):
        flat = attn[b].flatten()
        order = flat[1:].argsort()[:count] + 1
        expected = flat.clone()
        expected[order] = 0.0
        torch.testing.assert_close(out[b].flatten(), expected)
    assert discard_lowest(attn, 0.0) is attn


def test_rollout_row_equals_the_full_products_row_and_pooled_rows():
    mats = [stochastic(s) for s in range(4)]  # first layer first
    product = torch.eye(T).expand(B, T, T)
    for m in mats:
        product = m @ product  # M[L] @ ... @ M[1]
    cls = rollout_row(reversed(mats), torch.eye(T)[0])
    torch.testing.assert_close(cls, product[:, 0])
    torch.testing.assert_close(cls.sum(-1), torch.ones(B))
    p = torch.softmax(torch.randn(T, generator=torch.Generator().manual_seed(9)), dim=0)
    torch.testing.assert_close(rollout_row(reversed(mats), p), p @ product)
    per_example = torch.softmax(torch.randn(B, T, generator=torch.Generator().manual_seed(10)), dim=-1)
    torch.testing.assert_close(rollout_row(reversed(mats), per_example), (per_example[:, None] @ product)[:, 0])


def test_rollout_row_accepts_a_generator_and_needs_a_layer():
    mats = [stochastic(s) for s in range(3)]
    p = torch.eye(T)[0]
    torch.testing.assert_close(rollout_row((m for m in reversed(mats)), p), rollout_row(list(reversed(mats)), p))
    with pytest.raises(ValueError, match="at least one layer"):
        rollout_row([], p)


def test_readout_row_averages_spans_each_averaged_over_its_tokens():
    torch.testing.assert_close(readout_row(5, [(0, 1)]), torch.tensor([1.0, 0, 0, 0, 0]))
    torch.testing.assert_close(readout_row(5, [(1, 5)]), torch.tensor([0, 0.25, 0.25, 0.25, 0.25]))
    torch.testing.assert_close(readout_row(5, [(0, 1), (1, 2)]), torch.tensor([0.5, 0.5, 0, 0, 0]))
    torch.testing.assert_close(readout_row(6, [(0, 1), (2, 6)]), torch.tensor([0.5, 0, 0.125, 0.125, 0.125, 0.125]))
    torch.testing.assert_close(readout_row(4, [(0, 4)]), torch.full((4,), 0.25))
    for bad in ([], [(2, 2)], [(0, 7)]):
        with pytest.raises(ValueError):
            readout_row(5, bad)


def test_add_identity_is_the_chefer_update_as_a_factor():
    attn, rel = stochastic(4), stochastic(5)
    torch.testing.assert_close(add_identity(attn) @ rel, rel + attn @ rel)
