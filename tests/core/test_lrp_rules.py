"""The relevance-propagation rules as pure functions: exact forward values, the gradients
each rule prescribes, and the gamma rule against zennit's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lxt_reference import zennit_rules

from captum_gmar import lrp_rules as rules


def leaf(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def test_with_gradient_of_keeps_the_value_and_takes_the_surrogates_gradient():
    x = leaf(5)
    value = torch.exp(x)
    out = rules.with_gradient_of(value, 3 * x)
    assert torch.equal(out, value)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 3.0))


def test_divide_gradient():
    x = leaf(4)
    out = rules.divide_gradient(x * 2, 4)
    assert torch.equal(out, x * 2)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.5))


@pytest.mark.parametrize("fn", [F.gelu, F.silu, torch.tanh])
def test_identity_rule_passes_relevance_through(fn):
    x = leaf(3, 7)
    y = rules.identity_rule(x, fn(x))
    assert torch.equal(y, fn(x))
    upstream = torch.randn(3, 7, dtype=torch.float64)
    (y * upstream).sum().backward()
    torch.testing.assert_close(x * x.grad, y.detach() * upstream)  # relevance in = relevance out


def test_identity_rule_at_zero_input_in_float16_is_finite():
    x = torch.zeros(3, dtype=torch.float16, requires_grad=True)
    rules.identity_rule(x, F.gelu(x)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_layer_norm_is_exact_and_linear_in_its_input():
    x = leaf(2, 4, 8)
    weight, bias = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    y = rules.layer_norm(x, (8,), weight, bias, 1e-6)
    assert torch.equal(y, F.layer_norm(x, (8,), weight, bias, 1e-6))
    y.sum().backward()
    std = (x.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
    # d/dx of (x - mean(x)) / std * w with std constant
    expected = (weight - weight.mean()) / std
    torch.testing.assert_close(x.grad, expected.expand_as(x))


def test_rms_norm_is_exact_with_a_constant_scale():
    x = leaf(3, 6)
    weight = torch.randn(6, dtype=torch.float64)
    y = rules.rms_norm(x, (6,), weight, 1e-6)
    torch.testing.assert_close(y, F.rms_norm(x, (6,), weight, 1e-6), rtol=0, atol=0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (weight / (x.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()).detach().expand_as(x))


def test_attention_inputs():
    q, k, v = leaf(2, 3, seed=1), leaf(2, 3, seed=2), leaf(2, 3, seed=3)
    sum(t.sum() for t in rules.attnlrp_attention_inputs(q, k, v)).backward()
    assert (q.grad == 0.25).all() and (k.grad == 0.25).all() and (v.grad == 0.5).all()
    cq, ck, cv = rules.cp_attention_inputs(q, k, v)
    assert not cq.requires_grad and not ck.requires_grad and cv is v


def test_gamma_zero_is_the_gradient_times_input_up_to_the_stabiliser():
    generator = torch.Generator().manual_seed(3)
    x, weight, bias = leaf(4, 6), torch.randn(5, 6, dtype=torch.float64, generator=generator), torch.zeros(5, dtype=torch.float64)
    upstream = torch.randn(4, 5, dtype=torch.float64, generator=generator)
    out = (rules.gamma_linear(x, weight, bias, 0.0) * upstream).sum()
    # each output's relevance is divided by itself plus the stabiliser (1e-6): exact where outputs are not tiny
    assert (x.detach() @ weight.T).abs().min() > 1e-2
    out.backward()
    torch.testing.assert_close(x.grad, upstream @ weight, rtol=1e-3, atol=1e-4)


def test_gamma_rule_equals_zennits():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 5).double()
    x = leaf(4, 6)
    upstream = torch.randn(4, 5, dtype=torch.float64)
    out = layer(x)
    relevance = upstream * out.detach()  # zennit's relevance at the output
    expected = zennit_relevance(zennit_rules().Gamma(gamma=0.25), layer, x.detach(), relevance)
    got = rules.gamma_relevance(x.detach(), layer.weight, layer.bias, out.detach(), relevance, 0.25)
    torch.testing.assert_close(got, expected)


def test_gamma_rule_conserves_relevance_without_bias():
    generator = torch.Generator().manual_seed(4)
    x, weight = leaf(4, 6), torch.randn(5, 6, dtype=torch.float64, generator=generator)
    out = F.linear(x, weight).detach()
    assert out.abs().min() > 1e-2  # the stabiliser (1e-6) shifts relevance by about 1e-6 / |output|
    relevance = torch.randn(4, 5, dtype=torch.float64, generator=generator)
    got = rules.gamma_relevance(x.detach(), weight, None, out, relevance, 0.5)
    torch.testing.assert_close(got.sum(-1), relevance.sum(-1), rtol=0, atol=1e-5)  # up to the stabiliser (1e-6)


def zennit_relevance(rule, layer, x, relevance):
    """zennit's own relevance for ``layer`` at input ``x``: its hook's backward pass with
    the output gradient set so that gradient x output is ``relevance``."""
    x = x.clone().requires_grad_(True)
    handles = rule.register(layer)
    try:
        out = layer(x)
        out.backward(relevance)
    finally:
        handles.remove()
    return x.grad


def test_carries_identity_rule_tells_the_identity_rule_from_the_uniform_rule():
    x = leaf(3)
    assert rules.carries_identity_rule(rules.identity_rule(x, F.gelu(x)))
    assert not rules.carries_identity_rule(rules.divide_gradient(x * x, 2))
    assert not rules.carries_identity_rule(F.gelu(x))
