"""The package's own exceptions, for failures that are neither a wrong argument type nor a
wrong argument value. Each subclasses the built-in exception a caller would catch anyway."""

from __future__ import annotations


class UnsupportedModelError(TypeError):
    """The model is not a vision transformer this package can explain."""


class NonFiniteError(FloatingPointError):
    """The model's logits or the gradients behind a map are NaN or infinite."""


class InsufficientMemoryError(MemoryError):
    """A call would need more memory than the device has available."""
