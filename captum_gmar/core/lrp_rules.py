"""Layer-wise relevance propagation rules in Gradient x Input form: pure functions over tensors.

AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022) explain a
transformer with one forward and one backward pass: each operation keeps its forward
value and gets a backward pass whose gradient, multiplied by the operation's input, is
the relevance that the rule gives that input. The relevance of the pixels is then
``pixel_values * gradient`` (as in the ``lxt`` package, whose ``efficient`` rules these
reproduce):

- linear maps (linear layers, convolutions, additions, means): the plain gradient (LRP-0),
  or the generalised gamma rule on linear layers (:func:`gamma_linear`);
- element-wise non-linearities (GELU, SiLU, ...): the identity rule (:func:`identity_rule`),
  the relevance passes through unchanged;
- normalisations (LayerNorm, RMSNorm, L2 normalisation): the normalising statistic is
  treated as a constant (:func:`layer_norm`, :func:`rms_norm`, :func:`normalize`), so the
  operation is linear in its input;
- products of two input-dependent tensors (the attention's ``q k^T`` and ``P V``, gated
  MLPs): the uniform rule, each factor gets half (:func:`divide_gradient`); through a
  fused attention kernel that is ``1/4`` of the gradient for the queries and keys and
  ``1/2`` for the values (:func:`attnlrp_attention_inputs`);
- CP-LRP instead lets no gradient through the attention probabilities
  (:func:`cp_attention_inputs`): the queries and keys are constants.

Every function returns the operation's exact forward value; only the gradient changes.
Nothing here knows about models or hooks (see :mod:`captum_gmar.vit.propagation`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: the identity rule's stabiliser of ``y / x`` (``lxt``'s)
IDENTITY_EPSILON = 1e-10
#: the gamma rule's stabiliser of its denominators (``zennit``'s default)
GAMMA_STABILIZER = 1e-6


def with_gradient_of(value: Tensor, surrogate: Tensor) -> Tensor:
    """``value`` in the forward pass, ``surrogate``'s gradient in the backward pass.

    ``value.detach() + (surrogate - surrogate.detach())``: the second term is exactly 0,
    so the forward value is ``value`` bit for bit, and the graph is ``surrogate``'s.
    """
    return value.detach() + (surrogate - surrogate.detach())


class _ScaledGradient(torch.autograd.Function):
    """``value`` in the forward pass; in the backward pass the gradient goes to ``x``,
    multiplied by ``scale`` (a tensor broadcastable to ``x``, or a number).

    Apply it through :func:`_scaled`, which passes ``value`` detached: an input that
    requires grad would keep its whole graph alive (autograd links the node to every
    such input, even one whose gradient is ``None``), e.g. a GELU's saved input next
    to the identity rule's ratio.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, value: Tensor, scale: Tensor | float) -> Tensor:
        if isinstance(scale, Tensor):
            ctx.save_for_backward(scale)
        ctx.scale = None if isinstance(scale, Tensor) else scale
        return value.detach().view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        scale = ctx.saved_tensors[0] if ctx.scale is None else ctx.scale
        return grad * scale, None, None


class _IdentityRule(_ScaledGradient):
    """:class:`_ScaledGradient` under its own name, so that a result of
    :func:`identity_rule` can be told from others (:func:`carries_identity_rule`)."""


def _scaled(function: type[_ScaledGradient], x: Tensor, value: Tensor, scale: Tensor | float) -> Tensor:
    """``function.apply(x, value, scale)`` with ``value`` detached (see :class:`_ScaledGradient`)."""
    return function.apply(x, value.detach(), scale)


def divide_gradient(x: Tensor, factor: float) -> Tensor:
    """``x``, with its gradient divided by ``factor`` (the uniform rule's share)."""
    return _scaled(_ScaledGradient, x, x, 1.0 / factor)


def identity_rule(x: Tensor, y: Tensor) -> Tensor:
    """``y = f(x)`` of an element-wise ``f``, with the gradient ``y / x`` (identity rule).

    The relevance ``x * dL/dx = y * dL/dy`` passes through ``f`` unchanged. ``y / x``
    is stabilised as in ``lxt`` (``x + 1e-10``); where that is 0 (an input of exactly 0
    in float16) the gradient is 0.
    """
    ratio = (y.detach() / (x.detach() + IDENTITY_EPSILON)).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    return _scaled(_IdentityRule, x, y, ratio)


def carries_identity_rule(y: Tensor) -> bool:
    """Whether ``y`` is a result of :func:`identity_rule` (applying it again would change nothing)."""
    return type(y.grad_fn) is _IdentityRule._backward_cls


class _LayerNormConstantStd(torch.autograd.Function):
    """``F.layer_norm``, differentiated with the standard deviation held constant."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dims, ctx.eps = tuple(range(-len(normalized_shape), 0)), eps
        return F.layer_norm(x, normalized_shape, weight, bias, eps)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        dims = ctx.dims
        # in float32 at least, as F.layer_norm computes it: a float16 square overflows
        wide = torch.promote_types(x.dtype, torch.float32)
        std = (x.to(wide).var(dims, unbiased=False, keepdim=True) + ctx.eps).sqrt()
        scaled = (grad if weight is None else grad * weight).to(wide)
        # d/dx of (x - mean(x)) / std * w with std constant: centre the incoming gradient
        return ((scaled - scaled.mean(dims, keepdim=True)) / std).to(x.dtype), None, None, None, None


def layer_norm(x: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """``F.layer_norm`` with the standard deviation held constant in the backward pass
    (no gradient to ``weight`` and ``bias``, which the passes hold constant too)."""
    return _LayerNormConstantStd.apply(x, tuple(normalized_shape), weight, bias, eps)


def rms_norm(x: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None, eps: float | None) -> Tensor:
    """``F.rms_norm`` with the root mean square held constant in the backward pass."""
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    wide = torch.promote_types(x.dtype, torch.float32)
    surrogate = x * torch.rsqrt(x.detach().to(wide).pow(2).mean(dims, keepdim=True) + eps).to(x.dtype)
    if weight is not None:
        surrogate = surrogate * weight
    return with_gradient_of(F.rms_norm(x, normalized_shape, weight, eps), surrogate)


def normalize(x: Tensor, norm: Tensor) -> Tensor:
    """``x / norm`` with the norm held constant (an L2-normalised embedding, CLIP's)."""
    return x / norm.detach()


def attnlrp_attention_inputs(query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """AttnLRP's uniform rule through a fused attention ``softmax(q k^T) v``: the two
    products each halve the gradient, so queries and keys get ``1/4``, values ``1/2``."""
    return divide_gradient(query, 4), divide_gradient(key, 4), divide_gradient(value, 2)


def cp_attention_inputs(query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CP-LRP: no gradient through the attention probabilities (queries and keys constant)."""
    return query.detach(), key.detach(), value


class _GammaLinear(torch.autograd.Function):
    """``F.linear`` whose backward pass is the generalised gamma rule in Gradient x Input form."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, gamma: float) -> Tensor:
        output = F.linear(x, weight, bias)
        ctx.save_for_backward(x, weight, bias, output)
        ctx.gamma = gamma
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, bias, output = ctx.saved_tensors
        relevance = gamma_relevance(x, weight, bias, output, grad * output, ctx.gamma)
        sign = torch.where(x == 0, torch.ones_like(x), x.sign())
        return relevance / (x + sign * IDENTITY_EPSILON), None, None, None


def gamma_linear(x: Tensor, weight: Tensor, bias: Tensor | None, gamma: float) -> Tensor:
    """``F.linear(x, weight, bias)`` whose gradient carries the generalised gamma rule.

    See :func:`gamma_relevance`; the gradient is that relevance divided by ``x`` (so
    that ``x * gradient`` is the rule's relevance), as ``lxt`` does with ``zennit``.
    """
    return _GammaLinear.apply(x, weight, bias, gamma)


def gamma_relevance(x: Tensor, weight: Tensor, bias: Tensor | None, output: Tensor, relevance: Tensor, gamma: float) -> Tensor:
    """Generalised LRP-gamma (Montavon et al. 2019; Andeol et al. 2021) for ``y = x W^T + b``.

    Outputs ``y > 0`` are explained by the positive contributions with the positive
    weights boosted (``x+ (W + gamma W+)`` and ``x- (W + gamma W-)``), outputs ``y < 0``
    by the negative ones; exactly ``zennit.rules.Gamma``.

    Args:
        x: ``(..., I)`` input; weight ``(O, I)``; bias ``(O,)`` or ``None``.
        output: ``(..., O)`` the layer's output ``y``.
        relevance: ``(..., O)`` relevance of the outputs.
        gamma: the boost, ``>= 0`` (0 is LRP-0 up to the stabiliser).

    Returns:
        ``(..., I)`` relevance of the inputs.
    """
    positive_w = weight + gamma * weight.clamp(min=0)
    negative_w = weight + gamma * weight.clamp(max=0)
    positive_b = None if bias is None else bias + gamma * bias.clamp(min=0)
    negative_b = None if bias is None else bias + gamma * bias.clamp(max=0)
    x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
    up = F.linear(x_pos, positive_w, positive_b) + F.linear(x_neg, negative_w)
    down = F.linear(x_pos, negative_w, negative_b) + F.linear(x_neg, positive_w)
    scale_up = (output > 0) * relevance / _stabilize(up)
    scale_down = (output < 0) * relevance / _stabilize(down)
    return x_pos * (scale_up @ positive_w + scale_down @ negative_w) + x_neg * (scale_up @ negative_w + scale_down @ positive_w)


def _stabilize(denominator: Tensor) -> Tensor:
    sign = torch.where(denominator == 0, torch.ones_like(denominator), denominator.sign())
    return denominator + sign * GAMMA_STABILIZER
