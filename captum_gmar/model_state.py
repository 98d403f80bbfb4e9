"""The state of a model during this package's passes: its lock, eval mode, frozen
parameters, and unwrapping.

Nothing here changes what other threads see: a module's train/eval mode and a
parameter's ``requires_grad`` flag are shared by every thread, so a pass never flips them
(a training thread's dropout and parameter gradients would silently change). The passes
need eval mode, so a model in training mode is refused; the parameters are held constant
by a function mode active in the explaining thread only.

Kept apart from the model plumbing (:mod:`captum_gmar.models`) and importing nothing of
this package, so that any module (the zero-shot head, the evaluation) can use it without
an import cycle.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["evaluating", "frozen_parameters", "model_lock", "unchanged_weights", "unwrap_model"]


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
    """Require eval mode of every module of ``model`` (the package's own wrappers aside)
    on entry and on leaving the block; nothing is switched.

    Raises:
        ValueError: a module is in training mode (on leaving: was switched to it during
            the block, e.g. by another thread).
    """
    _check_eval_mode(model, "is in training mode")
    yield
    _check_eval_mode(model, "was switched to training mode during the pass (by another thread?)")


def _check_eval_mode(model: nn.Module, state: str) -> None:
    # the package's wrappers (a similarity head, Quantus' model) have no layer that depends on the mode
    training = [name or "the model" for name, module in model.named_modules() if module.training and not _is_own(module)]
    if training:
        raise ValueError(
            f"{type(model).__name__} {state} ({len(training)} modules, e.g. {training[0]}): the passes need eval mode, "
            "which is shared by every thread; call model.eval() first, or explain a copy (copy.deepcopy(model).eval())"
        )


def _is_own(module: nn.Module) -> bool:
    return type(module).__module__.split(".")[0] == __name__.split(".")[0]


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
        return value.detach()
    if isinstance(value, (list, tuple)) and any(isinstance(item, nn.Parameter) for item in value):
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
