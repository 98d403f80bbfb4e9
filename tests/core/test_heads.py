import pytest
import torch

from captum_gmar.core.heads import (
    attention_grad,
    attention_probs,
    context_head_scores,
    fuse_heads,
    gate_scores,
    gradient_weighted_heads,
    head_scores,
    normalize_head_weights,
    reduce_heads,
    split_heads,
    uniform_except,
)

B, T, H, D = 2, 5, 3, 4


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_attention(seed: int = 0) -> torch.Tensor:
    return torch.softmax(torch.randn(B, H, T, T, generator=gen(seed)) * 3, dim=-1)


def test_split_heads_puts_channel_blocks_on_heads():
    x = torch.arange(B * T * H * D, dtype=torch.float32).view(B, T, H * D)
    heads = split_heads(x, H)
    assert heads.shape == (B, H, T, D)
    for h in range(H):
        torch.testing.assert_close(heads[:, h], x[..., h * D : (h + 1) * D])


def test_split_heads_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="cannot be split"):
        split_heads(torch.zeros(1, 2, 7), 3)


def test_attention_probs_is_scaled_softmax():
    q, k = torch.randn(2, B, H, T, D, generator=gen()).unbind(0)
    probs = attention_probs(q, k, scaling=0.5)
    expected = torch.softmax(q @ k.transpose(-1, -2) * 0.5, dim=-1)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(-1), torch.ones(B, H, T))
    assert attention_probs(q.half(), k.half(), 0.5).dtype == torch.float32


def test_attention_probs_adds_a_bias_or_applies_a_bool_mask_as_sdpa_does():
    q, k, v = torch.randn(3, B, H, T, D, generator=gen(3)).unbind(0)
    bias = torch.randn(1, H, T, T, generator=gen(4))
    probs = attention_probs(q, k, 0.5, bias)
    torch.testing.assert_close(probs, torch.softmax(q @ k.transpose(-1, -2) * 0.5 + bias, dim=-1))
    torch.testing.assert_close(probs @ v, torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.5))
    mask = torch.rand(B, 1, T, T, generator=gen(5)) > 0.3
    mask[..., 0] = True  # every row attends somewhere
    masked = attention_probs(q, k, 0.5, mask)
    assert (masked[~mask.expand_as(masked)] == 0).all()
    torch.testing.assert_close(masked @ v, torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.5))


def test_attention_grad_equals_autograd():
    attn = random_attention().requires_grad_(True)
    value = torch.randn(B, H, T, D, generator=gen(1))
    context = (attn @ value).transpose(1, 2).reshape(B, T, H * D)
    weights = torch.randn(B, T, H * D, generator=gen(2))
    (context * weights).sum().backward()
    # d(sum(context * weights)) / d(context) == weights
    torch.testing.assert_close(attention_grad(weights, value), attn.grad)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_context_head_scores_are_the_split_heads_scores(norm):
    context_grad = torch.randn(B, T, H * D, generator=gen(3))
    torch.testing.assert_close(context_head_scores(context_grad, H, norm), head_scores(split_heads(context_grad, H), norm))
    torch.testing.assert_close(context_head_scores(context_grad.half(), H, norm), head_scores(split_heads(context_grad.half(), H), norm))
    with pytest.raises(ValueError, match="norm"):
        context_head_scores(context_grad, H, "l3")
    with pytest.raises(ValueError, match="cannot be split"):
        context_head_scores(context_grad, 5, norm)


def test_head_scores_l1_and_l2():
    grad = torch.randn(B, H, T, D, generator=gen())
    torch.testing.assert_close(head_scores(grad, "l1"), grad.abs().sum((2, 3)))
    torch.testing.assert_close(head_scores(grad, "l2"), grad.pow(2).sum((2, 3)).sqrt())
    with pytest.raises(ValueError, match="norm"):
        head_scores(grad, "l3")


def test_normalize_head_weights_sums_to_one_and_is_scale_invariant():
    scores = torch.rand(B, 4, H, generator=gen())
    weights = normalize_head_weights(scores)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, 4))
    torch.testing.assert_close(normalize_head_weights(scores * 7.0), weights)


def test_normalize_head_weights_uniform_where_all_zero():
    scores = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 3.0]])
    weights = normalize_head_weights(scores)
    torch.testing.assert_close(weights[0], torch.full((3,), 1 / 3))
    torch.testing.assert_close(weights[1], torch.tensor([0.25, 0.0, 0.75]))
    assert torch.isfinite(weights).all()


def test_fuse_heads_keeps_rows_stochastic_and_selects_one_hot_head():
    attn = random_attention()
    weights = normalize_head_weights(torch.rand(B, H, generator=gen(3)))
    fused = fuse_heads(attn, weights)
    assert fused.shape == (B, T, T)
    torch.testing.assert_close(fused.sum(-1), torch.ones(B, T))
    one_hot = torch.zeros(B, H)
    one_hot[:, 1] = 1.0
    torch.testing.assert_close(fuse_heads(attn, one_hot), attn[:, 1])


def test_uniform_fusion_is_mean_fusion():
    attn = random_attention()
    torch.testing.assert_close(fuse_heads(attn, torch.full((B, H), 1 / H)), reduce_heads(attn, "mean"))


def test_reduce_heads_modes():
    attn = random_attention()
    torch.testing.assert_close(reduce_heads(attn, "max"), attn.max(1).values)
    torch.testing.assert_close(reduce_heads(attn, "min"), attn.min(1).values)
    with pytest.raises(ValueError, match="head_fusion"):
        reduce_heads(attn, "median")


def test_gradient_weighted_heads_is_mean_of_positive_products():
    attn = random_attention()
    grad = torch.randn(B, H, T, T, generator=gen(5))
    fused = gradient_weighted_heads(attn, grad)
    torch.testing.assert_close(fused, torch.relu(grad * attn).mean(1))
    assert (fused >= 0).all()


def test_uniform_except_keeps_the_kept_and_shares_the_rest_evenly():
    weights = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]])
    keep = torch.tensor([[False, True, False, False], [False, False, False, False]])
    expected = torch.tensor([[[0.8 / 3, 0.2, 0.8 / 3, 0.8 / 3], [0.25, 0.25, 0.25, 0.25]]])
    torch.testing.assert_close(uniform_except(weights, keep), expected)
    torch.testing.assert_close(uniform_except(weights, torch.ones(2, 4, dtype=torch.bool)), weights)
    per_example = keep.unsqueeze(0).repeat(2, 1, 1)
    torch.testing.assert_close(uniform_except(weights.repeat(2, 1, 1), per_example), expected.repeat(2, 1, 1))


def test_uniform_except_rejects_bad_masks():
    weights = torch.full((2, 3, 4), 0.25)
    with pytest.raises(TypeError, match="bool"):
        uniform_except(weights, torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"\(L, H\) or \(B, L, H\)"):
        uniform_except(weights, torch.ones(4, 3, dtype=torch.bool))


def test_gate_scores_are_the_gate_gradient_and_the_summed_attention_gradient_times_attention():
    generator = torch.Generator().manual_seed(0)
    attn = torch.softmax(torch.randn(2, 3, 5, 5, generator=generator), -1)
    value = torch.randn(2, 3, 5, 4, generator=generator)
    context_grad = torch.randn(2, 5, 12, generator=generator)
    grad = split_heads(context_grad, 3)
    gate = (grad * (attn @ value)).sum((-2, -1))
    assert (gate < 0).any() and (gate > 0).any()
    torch.testing.assert_close(gate_scores(grad, attn @ value), gate.abs())
    torch.testing.assert_close(gate_scores(grad, attn @ value, "positive"), gate.clamp_min(0))
    # sum_{t,j} dy/dC * C = sum_{t,s} dy/dA * A: the sum of GAE's product before its rectification
    torch.testing.assert_close(gate, (attention_grad(context_grad, value) * attn).sum((-2, -1)))
    # a head's values / c and its output gradient * c (the rescaling of evaluation.invariance): the same score
    scale = torch.tensor([0.01, 1.0, 100.0])[None, :, None, None]
    torch.testing.assert_close(gate_scores(grad * scale, attn @ (value / scale)), gate.abs(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="gate must be 'abs' or 'positive'"):
        gate_scores(grad, attn @ value, "signed")
    with pytest.raises(ValueError, match="of one shape"):
        gate_scores(grad, value[..., :3])
