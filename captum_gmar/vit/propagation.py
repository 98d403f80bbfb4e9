"""Applying the relevance-propagation rules of :mod:`captum_gmar.core.lrp_rules` during one pass.

Nothing is patched: as the kernel capture of :mod:`captum_gmar.vit.capture`, a
:class:`~torch.overrides.TorchFunctionMode`, active in the explaining thread only and only
for the duration of the forward pass, sees the model's calls and answers them with the
rules' versions, which have the same forward values:

- ``layer_norm``, ``rms_norm``, ``normalize`` and vector norms: the statistic held constant;
- GELU, SiLU, tanh (ViT's pooler) and other element-wise activations, called as
  functions: the identity rule;
  activation modules that compute theirs from several operations (CLIP's QuickGELU,
  ``gelu_new``) get it through a forward hook on the module;
- an element-wise or matrix product of two tensors that both depend on the input
  (eager attention's ``q k^T`` and ``P V``, a gated MLP): the uniform rule;
- ``scaled_dot_product_attention`` and ``multi_head_attention_forward`` (SigLIP's
  pooling head): AttnLRP's or CP-LRP's treatment of the queries, keys and values;
- CP-LRP, eager attention: the softmax's output (the probabilities) held constant inside
  the model's attention blocks;
- with ``gamma > 0``, ``linear``: the generalised gamma rule.

Other threads' passes and calls outside the pass are untouched, so a model explained
here runs normally elsewhere at the same time (under the package's per-model lock, see
:mod:`captum_gmar.vit.model_state`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..core import lrp_rules as rules
from .blocks import AttentionBlock
from .model_state import removing_hooks

Variant = Literal["attnlrp", "cplrp"]

_ACTIVATIONS = (F.gelu, F.silu, F.mish, F.relu, F.elu, F.hardswish, F.leaky_relu, F.softplus, F.relu6, torch.tanh, torch.Tensor.tanh)
_SOFTMAX = (F.softmax, torch.softmax, torch.Tensor.softmax)
_PRODUCTS = (torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__)
_MATMUL = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm)
_NORMS = (torch.norm, torch.Tensor.norm, torch.linalg.vector_norm, torch.linalg.norm)
#: activation modules whose forward is more than one call of :data:`_ACTIVATIONS`
_COMPOSITE_ACTIVATION_MODULES = ("transformers.activations", "timm.layers.activations")


@contextmanager
def relevance_rules(model: nn.Module, blocks: Sequence[AttentionBlock], variant: Variant, gamma: float = 0.0) -> Iterator[None]:
    """Apply ``variant``'s rules to this thread's forward passes of ``model`` inside the block.

    Args:
        model: the model whose activation modules get the identity rule.
        blocks: its attention blocks (CP-LRP holds eager attention's probabilities
            constant inside them).
        variant: ``"attnlrp"`` or ``"cplrp"``.
        gamma: the gamma rule's boost on linear layers; 0 for the plain gradient.

    Every hook is removed and the mode left on exit, also after an error.
    """
    owner = threading.get_ident()
    mode = _RelevanceMode(variant, gamma)
    with removing_hooks() as handles, ExitStack() as stack:
        for module in model.modules():
            if type(module).__module__.startswith(_COMPOSITE_ACTIVATION_MODULES):
                handles.append(module.register_forward_hook(_identity_hook(owner)))
        for block in blocks:
            handles.append(block.attention.register_forward_pre_hook(_scope(mode, owner, True)))
            handles.append(block.attention.register_forward_hook(_scope(mode, owner, False)))
        stack.enter_context(mode)
        yield


class _RelevanceMode(TorchFunctionMode):
    """Answers the calls of one forward pass with the rules' versions (module docstring)."""

    def __init__(self, variant: Variant, gamma: float) -> None:
        super().__init__()
        self.variant = variant
        self.gamma = gamma
        self.in_attention = False

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> object:
        kwargs = kwargs or {}
        rule = self._rule(func, args, kwargs)
        return func(*args, **kwargs) if rule is None else rule()

    def _rule(self, func: Callable, args: tuple, kwargs: dict) -> Callable[[], object] | None:
        """The rule's version of this call, or ``None`` to run it as it is."""
        if func is F.layer_norm:
            return lambda: rules.layer_norm(
                *_bind(args, kwargs, ("input", "normalized_shape", "weight", "bias", "eps"), (None, None, 1e-5))
            )
        if func is F.rms_norm:
            return lambda: rules.rms_norm(*_bind(args, kwargs, ("input", "normalized_shape", "weight", "eps"), (None, None)))
        if func is F.normalize:
            return lambda: _normalize(*_bind(args, kwargs, ("input", "p", "dim", "eps"), (2.0, 1, 1e-12)))
        if func in _NORMS:
            return lambda: func(*args, **kwargs).detach()
        if func in _ACTIVATIONS and _depends_on_input(args[0]):
            return lambda: rules.identity_rule(args[0], func(*args, **kwargs))
        if func is F.scaled_dot_product_attention:
            return lambda: func(*self._attention_inputs(*args[:3]), *args[3:], **kwargs)
        if func is F.multi_head_attention_forward:
            query, key, value = _bind(args, kwargs, ("query", "key", "value"), ())
            rest = {k: v for k, v in kwargs.items() if k not in ("query", "key", "value")}
            return lambda: func(*self._attention_inputs(query, key, value), *args[3:], **rest)
        if func in _SOFTMAX and self.in_attention and self.variant == "cplrp":
            return lambda: func(*args, **kwargs).detach()
        if (func in _PRODUCTS or func in _MATMUL) and len(args) >= 2 and all(_depends_on_input(a) for a in args[:2]):
            return lambda: rules.divide_gradient(func(*args, **kwargs), 2)
        if func is F.linear and self.gamma > 0 and _depends_on_input(args[0]):
            x, weight, bias = _bind(args, kwargs, ("input", "weight", "bias"), (None,))
            return lambda: rules.gamma_linear(x, weight, bias, self.gamma)
        return None

    def _attention_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.variant == "cplrp":
            return rules.cp_attention_inputs(query, key, value)
        return rules.attnlrp_attention_inputs(query, key, value)


def _depends_on_input(value: object) -> bool:
    return isinstance(value, Tensor) and value.requires_grad


def _bind(args: tuple, kwargs: dict, names: tuple[str, ...], defaults: tuple) -> list:
    """The values of ``names`` from a call's positional and keyword arguments; the last
    ``len(defaults)`` names are optional."""
    required = len(names) - len(defaults)
    values = []
    for i, name in enumerate(names):
        if i < len(args):
            values.append(args[i])
        elif name in kwargs:
            values.append(kwargs[name])
        elif i >= required:
            values.append(defaults[i - required])
        else:
            raise TypeError(f"missing argument {name!r}")
    return values


def _normalize(x: Tensor, p: float, dim: int, eps: float) -> Tensor:
    return rules.normalize(x, x.norm(p, dim, keepdim=True).clamp_min(eps))


def _scope(mode: _RelevanceMode, owner: int, entering: bool) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple, *output: object) -> None:
        if threading.get_ident() == owner:
            mode.in_attention = entering

    return hook


def _identity_hook(owner: int) -> Callable[[nn.Module, tuple, Tensor], Tensor | None]:
    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        if threading.get_ident() != owner or not args or not _depends_on_input(args[0]):
            return None
        if rules.carries_identity_rule(output):  # a single activation call, which the mode answered already
            return None
        return rules.identity_rule(args[0], output)

    return hook
