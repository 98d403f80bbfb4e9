"""Cost: wall time and peak memory of one call, on CUDA or the CPU."""

from __future__ import annotations

import ctypes
import functools
import numbers
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

#: the columns a comparison writes for each method's cost, with how to read them
COST_COLUMNS: dict[str, str] = {
    "seconds_per_image": "Wall time per image",
    "peak_memory_mb": "Peak extra memory of one batch (MB; RSS on CPU, allocated on CUDA)",
}

_SAMPLE_SECONDS = 0.002
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


class Cost(NamedTuple):
    """What :func:`measure_cost` measured."""

    #: median wall time of the timed calls, in seconds
    seconds_median: float
    #: largest memory increase over the timed calls, in bytes (see :func:`measure_cost`)
    peak_memory_bytes: int
    #: what the last call returned
    output: Any


def measure_cost(
    fn: Callable[..., Any],
    *args: Any,
    device: torch.device | str,
    repeats: int = 3,
    warmup: int = 1,
    **kwargs: Any,
) -> Cost:
    """Time ``fn(*args, **kwargs)`` and measure the memory it needs on top of what is held.

    ``warmup`` untimed calls come first (lazy initialisation, kernel selection), then
    ``repeats`` timed ones. The previous output is released before each call, so it
    does not count.

    Memory, per timed call, the largest increase is kept:

    * CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak, minus the
      memory allocated before the call: tensors of PyTorch's caching allocator on
      ``device``, not memory held by cuBLAS/cuDNN workspaces or other libraries.
    * CPU: the peak increase of the resident set size, read from ``/proc/self/statm``
      (Linux) by a background thread every ~2 ms. It is process-wide (other threads'
      allocations count too), sampled (an allocation freed within 2 ms can be
      missed), and counts pages only once they are touched. So that the resident set
      follows live memory, the first CPU measurement makes glibc serve every block of
      64 KiB or more with its own mapping, returned to the system when freed (without
      it, freed activations stay in the heap and the next call reuses them unseen);
      this holds for the rest of the process and costs some page faults. Small blocks
      freed by earlier work still coalesce into large free heap chunks that a call
      could reuse unseen, so before each timed call the heap's free pages are returned
      to the system too (``malloc_trim``).

    Args:
        fn: the function to measure; ``args`` and ``kwargs`` are passed to it.
        device: where ``fn`` runs, ``"cpu"`` or a CUDA device; CUDA is synchronised
            before and after each call so the time covers its kernels.
        repeats: timed calls, at least 1.
        warmup: untimed calls first, at least 0.

    Returns:
        :class:`Cost`.
    """
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device}")
    for value, name, least in ((repeats, "repeats", 1), (warmup, "warmup", 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(f"{name} must be an int of at least {least}, got {value!r}")
    if device.type == "cpu":
        if not os.path.exists("/proc/self/statm"):
            raise RuntimeError("CPU memory is measured from /proc/self/statm, which only Linux provides")
        _return_freed_blocks_to_the_system()

    for _ in range(warmup):
        output = None  # release the previous output before the next call
        output = fn(*args, **kwargs)
    seconds, peaks = [], []
    for _ in range(repeats):
        output = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            start = time.perf_counter()
            output = fn(*args, **kwargs)
            torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
            peaks.append(torch.cuda.max_memory_allocated(device) - before)
        else:
            _release_free_heap()
            with _RssSampler() as sampler:
                start = time.perf_counter()
                output = fn(*args, **kwargs)
                seconds.append(time.perf_counter() - start)
            peaks.append(sampler.peak - sampler.before)
    return Cost(statistics.median(seconds), max(0, max(peaks)), output)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or ``None`` where it is not the C library."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@functools.cache
def _return_freed_blocks_to_the_system() -> None:
    """Fix glibc's mmap threshold at 64 KiB (``mallopt(M_MMAP_THRESHOLD)``), so that
    freed tensors leave the resident set; a no-op where glibc is not the C library."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)


def _release_free_heap() -> None:
    """Return the free pages of glibc's heap to the system (``malloc_trim(0)``), so that
    only live memory is resident when a measurement starts."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class _RssSampler:
    """Tracks the largest resident set size of this process while the block runs."""

    before: int
    peak: int

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_SECONDS):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _RssSampler:
        self.before = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
