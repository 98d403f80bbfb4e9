"""The state of a model during this package's passes: its lock, eval mode, and unwrapping.

Kept apart from the model plumbing (:mod:`captum_gmar.models`) and importing nothing of
this package, so that any module (the zero-shot head, the evaluation) can use it without
an import cycle.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["evaluating", "model_lock", "unwrap_model"]


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
    """Eval mode (dropout off) and ``requires_grad=False`` on every parameter (so a
    backward pass computes no parameter gradients) inside the block; every module's mode
    and every parameter's flag are restored on exit, also after an error."""
    modes = {module: module.training for module in model.modules()}
    grads = {param: param.requires_grad for param in model.parameters()}
    try:
        model.eval()
        for param in grads:
            param.requires_grad_(False)
        yield
    finally:
        for param, flag in grads.items():
            param.requires_grad_(flag)
        for module, mode in modes.items():
            module.training = mode


def unwrap_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside peft and ``torch.compile`` wrappers.

    ``PeftModel`` injects its adapters into the wrapped model's own modules, so the
    wrapped model computes the same logits; a compiled wrapper's ``_orig_mod`` is the
    model it compiled.
    """
    while True:
        if type(model).__module__.startswith("peft.") and hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
