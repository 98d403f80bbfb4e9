import pytest
import torch

from captum_gmar.rollout import add_identity, add_residual, discard_lowest, rollout_cls_row

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


def test_rollout_cls_row_equals_full_product_row():
    mats = [stochastic(s) for s in range(4)]  # first layer first
    product = torch.eye(T).expand(B, T, T)
    for m in mats:
        product = m @ product  # M[L] @ ... @ M[1]
    row = rollout_cls_row(reversed(mats))
    torch.testing.assert_close(row, product[:, 0])
    torch.testing.assert_close(rollout_cls_row(reversed(mats), token=2), product[:, 2])
    torch.testing.assert_close(row.sum(-1), torch.ones(B))


def test_rollout_cls_row_accepts_a_generator_and_needs_a_layer():
    mats = [stochastic(s) for s in range(3)]
    torch.testing.assert_close(rollout_cls_row(m for m in reversed(mats)), rollout_cls_row(list(reversed(mats))))
    with pytest.raises(ValueError, match="at least one layer"):
        rollout_cls_row([])


def test_add_identity_is_the_chefer_update_as_a_factor():
    attn, rel = stochastic(4), stochastic(5)
    torch.testing.assert_close(add_identity(attn) @ rel, rel + attn @ rel)
