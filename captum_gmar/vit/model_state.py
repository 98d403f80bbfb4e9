"""The state of a model during this package's passes: its lock, eval mode, frozen
parameters, and unwrapping.

Nothing here changes what other threads see: a module's train/eval mode and a
parameter's ``requires_grad`` flag are shared by every thread, so a pass never flips them
(a training thread's dropout and parameter gradients would silently change). A pass must
compute what eval mode computes, so a module whose training mode changes the output
(dropout with ``p > 0``, batch norm, stochastic depth) is refused before the pass, and a
function mode active in the explaining thread refuses, where it happens, any dropout,
batch statistic or random draw during the pass (another thread switching the model to
training mode mid-call). Modules without such a layer, a user's new head in training mode
for one, run as they are. The parameters are held constant by another function mode of
the explaining thread.

Kept apart from the model plumbing (:mod:`captum_gmar.vit.model`) and importing nothing of
this package, so that any module (the zero-shot head, the evaluation) can use it without
an import cycle.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

__all__ = ["evaluating", "frozen_parameters", "model_lock", "training_effects", "unchanged_weights", "unwrap_model"]


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that serialises this package's passes on ``model`` (one per model, made on
    first use, dropped with the model)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Require that ``model`` computes in this thread what eval mode computes, for the block.

    On entry, a module in training mode whose output depends on the mode is refused
    (:func:`training_effects`); inside the block, a function mode of this thread refuses
    every call that only training mode makes, where it is made: a dropout with ``p > 0``,
    ``scaled_dot_product_attention`` with dropout, batch statistics, a random draw (a
    module switched to training mode by another thread during the pass). Nothing is
    switched.

    Raises:
        ValueError: naming the module and what its training mode would change.
    """
    _check_eval_mode(model)
    with _EvalOnly(model):
        yield


def training_effects(model: nn.Module) -> list[tuple[str, str]]:
    """``(name, effect)`` of each module of ``model`` in training mode whose output depends
    on the mode: dropout with ``p > 0`` (also an attention's dropout probability, as
    Hugging Face attentions keep it), stochastic depth (``drop_prob > 0``), batch norm, and
    instance norm with running statistics. Modules in training mode without such an
    effect (linear layers, layer norms, a user's new head) are not listed."""
    found = []
    for name, module in model.named_modules():
        if module.training and not _is_own(module):
            effect = _training_effect(module)
            if effect:
                found.append((name or "the model", effect))
    return found


def _training_effect(module: nn.Module) -> str | None:
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return f"dropout p={module.p}" if module.p > 0 else None
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batch norm (batch statistics, and its running statistics would be updated)"
    if isinstance(module, nn.modules.instancenorm._InstanceNorm) and module.track_running_stats:
        return "instance norm with running statistics (they would be updated)"
    stochastic = "drop" in type(module).__name__.lower()  # timm's PatchDropout keeps its rate as `prob`
    for attribute, value in vars(module).items():  # plain attributes, e.g. an attention's dropout probability
        if isinstance(value, float) and value > 0 and ("drop" in attribute.lower() or (stochastic and attribute == "prob")):
            kind = "stochastic depth" if "path" in type(module).__name__.lower() or attribute == "drop_prob" else "dropout"
            return f"{kind} {attribute}={value}"
    return None


def _check_eval_mode(model: nn.Module) -> None:
    effects = training_effects(model)
    if effects:
        name, effect = effects[0]
        more = f" and {len(effects) - 1} more" if len(effects) > 1 else ""
        raise ValueError(
            f"{type(model).__name__} is in training mode, where {name} ({effect}){more} would change the output: the passes "
            "need what eval mode computes, and the mode is shared by every thread; call model.eval() first, or explain a copy "
            "(copy.deepcopy(model).eval())"
        )


def _is_own(module: nn.Module) -> bool:
    # the package's wrappers (a similarity head, Quantus' model) have no layer that depends on the mode
    return type(module).__module__.split(".")[0] == __name__.split(".")[0]


#: calls that draw random numbers: no output of eval mode depends on one
_RANDOM = frozenset(
    {
        torch.rand, torch.rand_like, torch.randn, torch.randn_like, torch.randint, torch.randint_like, torch.randperm,
        torch.bernoulli, torch.normal, torch.poisson, torch.multinomial,
        torch.Tensor.bernoulli, torch.Tensor.bernoulli_, torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.random_,
        torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.log_normal_, torch.Tensor.cauchy_, torch.Tensor.multinomial,
    }
)  # fmt: skip
#: dropouts: ``(input, p, training, ...)``
_DROPOUTS = frozenset({F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout})
#: ATen's dropouts, which a model may call directly: ``(input, p, train)``
_TORCH_DROPOUTS = frozenset(
    {torch.dropout, torch.dropout_, torch.alpha_dropout, torch.alpha_dropout_, torch.feature_dropout, torch.feature_dropout_,
     torch.feature_alpha_dropout, torch.feature_alpha_dropout_}
)  # fmt: skip


def _training_call(func: Callable, args: tuple, kwargs: dict) -> str | None:
    """What makes this call differ from eval mode's, or ``None``."""
    if func in _RANDOM:
        return f"a random draw ({getattr(func, '__name__', func)})"
    if func in _DROPOUTS or func in _TORCH_DROPOUTS:
        p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
        training = args[2] if len(args) > 2 else kwargs.get("training", kwargs.get("train", True))
        return f"a dropout with p={p} in training mode" if training and p > 0 else None
    if func is F.scaled_dot_product_attention:
        p = args[4] if len(args) > 4 else kwargs.get("dropout_p", 0.0)
        return f"an attention dropout with p={p}" if p > 0 else None
    if func is F.batch_norm:
        return "a batch norm with batch statistics" if (args[5] if len(args) > 5 else kwargs.get("training", False)) else None
    if func is F.instance_norm:
        running = args[1] if len(args) > 1 else kwargs.get("running_mean")
        use_input_stats = args[5] if len(args) > 5 else kwargs.get("use_input_stats", True)
        return "an instance norm updating its running statistics" if running is not None and use_input_stats else None
    return None


class _EvalOnly(TorchFunctionMode):
    """Refuses, in the thread that entered it, every call that only training mode makes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> object:
        kwargs = kwargs or {}
        call = _training_call(func, args, kwargs)
        if call is not None:
            now = training_effects(self.model)
            found = f"{type(self.model).__name__} ran {call} during the pass{_called_from(self.model)}"
            if now:
                raise ValueError(
                    f"{found}, so the map would not be eval mode's: {now[0][0]} is in training mode now ({now[0][1]}). Was the "
                    "model switched to training mode during the call (by another thread)? Call model.eval() and keep it there "
                    "while explaining, or explain a copy (copy.deepcopy(model).eval())"
                )
            raise ValueError(  # the model's own code draws: no mode is to blame
                f"{found}, so the map would change from call to call: remove the draw, or make it deterministic, while explaining"
            )
        return func(*args, **kwargs)


def _called_from(model: nn.Module) -> str:
    """Where the call being made comes from, in words: the innermost function outside torch
    and this package (a hook's, a model's ``forward``: its name, file and line), and the
    innermost module of ``model`` that runs (the one whose ``forward`` or hook it is)."""
    modules = {id(module): name for name, module in model.named_modules()}
    skipped = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)))
    code = module = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and (code is None or module is None):
        if code is None and not frame.f_code.co_filename.startswith(skipped):
            code = f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"
        owner = frame.f_locals.get("self")
        if module is None and isinstance(owner, nn.Module) and id(owner) in modules:
            module = f"module {modules[id(owner)]!r}" if modules[id(owner)] else "the model"
        frame = frame.f_back
    return (f" in {code}" if code else "") + (f", within {module} (its forward or a hook on it)" if module else "")


@contextmanager
def removing_hooks() -> Iterator[list[RemovableHandle]]:
    """A list to put the handles of hooks in; every one is removed on exit, also after an
    error, so that a pass leaves the model's hooks as it found them."""
    handles: list[RemovableHandle] = []
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def frozen_parameters() -> Iterator[None]:
    """Hold every parameter constant in this thread's calls inside the block.

    A backward pass then computes no parameter gradients and the forward pass saves no
    tensor for them (the inputs of the linear layers, the MLP's 4x expansion included),
    and the relevance rules see which tensors depend on the input. Unlike
    ``requires_grad_(False)`` this is invisible to other threads. Enter it last, so that
    the other function modes of the pass see the parameters held constant.
    """
    with _FrozenParameters():
        yield


class _FrozenParameters(TorchFunctionMode):
    """Passes every :class:`~torch.nn.Parameter` argument (also in a list, tuple or keyword)
    detached: the same storage and values, outside the autograd graph."""

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> object:
        return func(*map(_detached, args), **{key: _detached(value) for key, value in (kwargs or {}).items()})


def _detached(value: object) -> object:
    if isinstance(value, nn.Parameter):
        return value.detach() if value.requires_grad else value  # a frozen one is outside the graph already
    if isinstance(value, (list, tuple)) and any(isinstance(item, nn.Parameter) and item.requires_grad for item in value):
        return type(value)(item.detach() if isinstance(item, nn.Parameter) else item for item in value)
    return value


@contextmanager
def unchanged_weights(model: nn.Module) -> Iterator[None]:
    """Raise if a parameter of ``model`` is changed in place during the block (an optimizer
    step in another thread), also in place of the error autograd raises for it.

    Raises:
        RuntimeError: the weights changed, so the map would mix two models.
    """
    before = _weights_version(model)
    try:
        yield
    except Exception as error:
        if _weights_version(model) != before:
            raise _changed_weights() from error
        raise
    if _weights_version(model) != before:
        raise _changed_weights()


def _weights_version(model: nn.Module) -> int:
    # a tensor's version counts its in-place changes and never decreases, so the sum moves with any of them
    return sum(param._version for param in model.parameters())


def _changed_weights() -> RuntimeError:
    return RuntimeError(
        "the model's weights changed during the call (an optimizer step in another thread?), so the map would mix "
        "two models: explain a copy (copy.deepcopy(model).eval()) or between steps"
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside peft and ``torch.compile`` wrappers.

    ``PeftModel`` injects its adapters into the wrapped model's own modules, so the
    wrapped model computes the same logits; a compiled wrapper's ``_orig_mod`` is the
    model it compiled.
    """
    while True:
        wrapper: Any = model  # peft's and torch.compile's wrappers: their parts are found by name
        if type(model).__module__.startswith("peft.") and hasattr(model, "get_base_model"):
            model = wrapper.get_base_model()
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = wrapper._orig_mod
        else:
            return model
