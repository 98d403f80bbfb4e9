"""The package's own exceptions, for failures that are neither a wrong argument type nor a
wrong argument value. Each subclasses the built-in exception a caller would catch anyway."""

from __future__ import annotations


class UnsupportedModelError(TypeError):
    """The model is not a vision transformer this package can explain."""


class NonFiniteError(FloatingPointError):
    """The model's logits or the gradients behind a map are NaN or infinite."""


class InsufficientMemoryError(MemoryError):
    """A call would need more memory than the device has available."""


class TooSlowError(RuntimeError):
    """A call's attention alone would take far longer than anyone waits for one call."""


class DiskFullError(OSError):
    """No space left on a device, or a disk quota reached, while a file was written: the
    file is as it was (nothing half-written is left)."""


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded: missing data, a truncated or empty file, a
    format PIL does not read, or more pixels than PIL's decompression-bomb limit."""


class RankFailedError(RuntimeError):
    """A process of a distributed run failed: raised on every rank at the same step.

    Attributes:
        rank: the (lowest) failing process's rank.
        error: its exception (a ``RuntimeError`` naming the type where it did not pickle).
        remote_traceback: the traceback as that process formatted it.
        completed: what the ranks that did not fail returned at that step, in rank order.
    """

    def __init__(self, rank: int, error: BaseException, remote_traceback: str, completed: list | None = None) -> None:
        super().__init__(f"rank {rank}: {error}")
        self.rank = rank
        self.error = error
        self.remote_traceback = remote_traceback
        self.completed = completed or []
