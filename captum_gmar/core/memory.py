"""Memory and time an attribution call needs, estimated before it runs, and what a device has free.

Attention rollout and its relatives hold ``(B, H, T, T)`` maps: the memory grows with the
square of the token count ``T``, i.e. with the fourth power of the image side. A photo
fed at full resolution (4000 x 3000 px, patch 8: 187,501 tokens) would need hundreds of
GiB for one layer. The estimates let every method (:meth:`AttentionAttribution.check_memory
<captum_gmar.methods.base.AttentionAttribution.check_memory>`, which ``attribute`` calls
first) refuse such a call at once, with a way out, instead of running for hours or dying
in the allocator.

Memory: what the passes hold (per token, layer and hidden channel, in the model's dtype)
plus the attention maps, times :data:`SAFETY`. The maps are an eager attention's (kept
for a backward pass, or computed for a moment within a layer) and the float32 maps the
method builds from what was captured; the two are not alive at once (an eager
attention's are freed with its pass, before the method builds its own), so the larger
counts, besides the probabilities a capture at the kernel keeps. The passes and the maps
do not always peak together either (a backward pass may end before the maps are built),
but their sum is kept: an estimate taking the larger of the two was below the measured
peak of every method with a backward pass. The maps are freed and rebuilt layer by
layer, and the allocator may keep the freed ones resident (glibc does for blocks under
32 MiB): their size is counted once more, up to 128 MiB. Without that term the resident
peak of GAE on ``vit-tiny`` at 256 px (sdpa) was 174 to 269 MiB over seven runs against
an estimate of 212 MiB, although the call holds only 84 MiB at its peak when glibc returns every freed
block (``MALLOC_MMAP_THRESHOLD_``). The estimate is for the typical call: at or above the
median peak of five calls and at most twice it, for every method and both attention
kernels on ``vit-tiny`` at 256 px (1.18 to 1.77 times it in two runs,
``tests/core/test_memory.py``).
Fitted on ``dinov2-small`` (12 layers, 6 heads, 384 wide; 64 to 1,344 px, batch 1 and
16) and the bundled ``vit-tiny`` (6 layers, 4 heads, 128 wide; 128 to 512 px), CPU,
float32, sdpa and eager attention (``benchmarks/bench_memory.py``, table in
``docs/benchmarks.md``): the estimate is at or above every measured peak, 1.10 to 2.27
times it from 224 px up (more below, where the fixed part dominates). Calls that hold no
maps (AttnLRP and CP-LRP, which keep every rule's saved ratio or normalised input
instead, and Token Grad-CAM under sdpa) follow the per-channel count closely and take
the smaller :data:`RELEVANCE_SAFETY`.

Time: first a lower bound, the attention's multiply-adds (``q k^T`` and ``P V``, and
about twice that again for a backward pass) at 100 GFLOP/s per CPU thread, about the peak
of a current x86-64 core; a call above :data:`SLOW_CALL_SECONDS` by it is refused at once.
The real time is several times the bound (3.8 to 48 times on the calls measured, since
softmax, the rules and the maps are memory-bound), so a call whose bound exceeds
:data:`MEASURE_ABOVE_SECONDS` is timed: on one image of its own size where the batch
has 4 or more, otherwise on one image of each of two smaller sizes
(:func:`probe_tokens`), the per-image time fitted as ``a T^2 + b T``
(:func:`fitted_seconds`: the attention's and the per-token layers' parts) and
extrapolated to the call, times :data:`EXTRAPOLATION_MARGIN`. A call above :data:`SLOW_CALL_SECONDS` by that estimate is
refused unless ``allow_slow=True``.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path

import torch

#: bytes of a float32, the dtype the maps are rebuilt in
_FLOAT32 = 4
#: values per token, layer and hidden channel that a forward pass keeps for a backward pass
#: to the input (no parameter gradients: LayerNorm and GELU inputs, attention inputs and
#: outputs) and the method's per-token tensors (the heads' gradients); with the margins
#: below, the estimate is at least 1.30 times every measured peak of GMAR and GAE
#: (``dinov2-small`` keeps more per channel than the 128-wide ``vit-tiny``: its layer scales)
_SAVED_PER_CHANNEL = 16
#: the same without a backward pass: the queries and keys captured from every layer, and
#: one layer's activations at a time; with the margins, at least 1.30 times every measured
#: peak of attention rollout
_CAPTURED_PER_CHANNEL = 4
#: the same for AttnLRP and CP-LRP: the backward pass's activations and each rule's saved
#: tensors; measured 15-17 on ``dinov2-small``, 12-13 on the 128-wide ``vit-tiny``
_RELEVANCE_PER_CHANNEL = 16
#: the factor on the estimate of a call that holds attention maps; with it and
#: :data:`_HEAP_RETAINED_MAX`, the smallest margin over a measured peak is 1.10 (raw
#: attention, eager, on dinov2-small at 448 px)
SAFETY = 1.4
#: the factor on the estimate of a call that holds no maps of the method's own (AttnLRP's
#: and CP-LRP's, Token Grad-CAM's under sdpa): its peak follows the per-channel count
#: closely; with it the estimate is 1.18 to 1.42 times the measured peak on
#: ``dinov2-small`` from 224 px up with sdpa
RELEVANCE_SAFETY = 1.25
#: what any call allocates beyond the formula (thread-local buffers, the output), in bytes
_FIXED_BYTES = 16 * 2**20
#: the most of the maps' size counted again for freed blocks the allocator keeps resident:
#: glibc serves blocks below its mmap threshold (raised up to 32 MiB as larger blocks are
#: freed) from the heap and returns freed heap to the system only above a trim threshold of
#: up to 64 MiB per arena; the maps are freed and rebuilt layer by layer, so their size can
#: stay resident once more (two arenas: the caller's and torch's intra-op thread's)
_HEAP_RETAINED_MAX = 2 * 64 * 2**20
#: floating-point operations per second assumed for one CPU thread in the attention (about
#: a current x86-64 core's peak, so the time is a lower bound) and for an accelerator
_CPU_FLOPS_PER_THREAD = 1e11
_ACCELERATOR_FLOPS = 1e14
#: a call estimated to take longer than this is refused unless ``allow_slow=True``
SLOW_CALL_SECONDS = 600.0
#: a call whose lower bound exceeds this is timed on smaller inputs before it runs (the
#: real time was up to 48 times the bound; the two probes cost about 1/16 and 1/64 of one
#: image's call at the size that triggers them)
MEASURE_ABOVE_SECONDS = SLOW_CALL_SECONDS / 48
#: the larger probe's tokens: at most this many, and at most a quarter of the call's
_PROBE_TOKENS_MAX = 4096
#: the factor on a time extrapolated from smaller images: calls of GMAR and AttnLRP on a
#: DINOv2-S/14-shaped model at 518 to 1,022 px took 0.96 to 2.3 times the extrapolation
#: (2-core x86_64 CPU, ``benchmarks/bench_time_estimate.py``, docs/benchmarks.md)
EXTRAPOLATION_MARGIN = 2.0


def attention_call_bytes(
    batch: int,
    tokens: int,
    heads: int,
    layers: int,
    hidden: int,
    itemsize: int,
    maps_alive: int,
    backward: bool,
    eager: bool,
    maps_kept: bool = False,
) -> int:
    """Estimated peak memory of one attention-map attribution call on ``batch`` images, in bytes.

    Args:
        batch: images in one pass (the chunk, with ``internal_batch_size``).
        tokens: ``T``, special tokens included.
        heads, layers, hidden: ``H``, ``L`` and ``D`` of the model.
        itemsize: bytes per entry in the model's dtype.
        maps_alive: float32 ``(B, H, T, T)`` maps the method holds at once.
        backward: whether the call runs a backward pass, for which the forward pass keeps
            every layer's activations.
        eager: whether the model's attention is eager, which keeps each layer's
            probabilities for the backward pass (sdpa and flash kernels do not).
        maps_kept: whether the capture keeps every layer's probabilities even without a
            backward pass (an eager attention captured at its kernel, see
            :mod:`captum_gmar.vit.capture`).
    """
    per_channel = _SAVED_PER_CHANNEL if backward else _CAPTURED_PER_CHANNEL
    activations = batch * tokens * hidden * layers * per_channel * itemsize
    kept, transient = _eager_maps_bytes(batch, tokens, heads, layers if backward or maps_kept else 0, itemsize, eager, backward)
    method_maps = maps_alive * batch * heads * tokens * tokens * _FLOAT32
    # An eager attention's maps (every layer's, kept for the backward pass, or one layer's
    # for a moment) are freed before the method builds its own from what was captured, so
    # the larger counts (eager rollout on vit-tiny at 256 px held 44 MiB with every freed
    # block returned, as under sdpa); the probabilities a capture at the kernel keeps
    # without a backward pass are the method's input and stay beside its maps.
    maps = max(kept + transient, method_maps) if backward else kept + max(transient, method_maps)
    return _with_margin(activations, maps, SAFETY if maps else RELEVANCE_SAFETY)


def relevance_call_bytes(
    batch: int, tokens: int, heads: int, layers: int, hidden: int, itemsize: int, eager: bool, attention_gradient: bool
) -> int:
    """Estimated peak memory of one AttnLRP or CP-LRP call on ``batch`` images, in bytes;
    arguments as :func:`attention_call_bytes` (one forward and one backward pass, no maps
    of the method's own), with :data:`RELEVANCE_SAFETY` for :data:`SAFETY`.

    Args:
        attention_gradient: whether relevance flows through the attention probabilities
            (AttnLRP); CP-LRP holds them constant, so an eager attention computes no
            gradient of its scores and probabilities.
    """
    activations = batch * tokens * hidden * layers * _RELEVANCE_PER_CHANNEL * itemsize
    maps = sum(_eager_maps_bytes(batch, tokens, heads, layers, itemsize, eager, attention_gradient))
    return _with_margin(activations, maps, RELEVANCE_SAFETY)


def _eager_maps_bytes(batch: int, tokens: int, heads: int, kept: int, itemsize: int, eager: bool, gradients: bool) -> tuple[int, int]:
    """An eager attention's maps, in bytes: ``kept`` layers' probabilities (kept for a
    backward pass or by the capture), and what one layer holds for a moment: the scores and
    probabilities it computes, and their gradients where a backward pass goes through them
    (``gradients``). ``(0, 0)`` for other kernels."""
    if not eager:
        return 0, 0
    one_map = batch * heads * tokens * tokens * itemsize
    return kept * one_map, (2 + (2 if gradients else 0)) * one_map


def _with_margin(activations: int, maps: int, safety: float = SAFETY) -> int:
    """What the passes and the maps hold, times ``safety``, plus the maps' size once more
    (up to :data:`_HEAP_RETAINED_MAX`) for freed maps the allocator keeps, plus the fixed part."""
    return int(safety * (activations + maps)) + min(maps, _HEAP_RETAINED_MAX) + _FIXED_BYTES


def attention_seconds(batch: int, tokens: int, layers: int, hidden: int, backward: bool, device: torch.device) -> float:
    """A lower bound on the seconds the attention of a call on ``batch`` images takes.

    ``q k^T`` and ``P V`` are ``2 T^2 D`` multiply-adds per layer and image (all heads
    together); a backward pass computes both operands' gradients, about twice that again.

    Args:
        tokens, layers, hidden: ``T``, ``L`` and ``D`` of the model.
        backward: whether the call runs a backward pass.
        device: the model's device: a CPU runs :data:`_CPU_FLOPS_PER_THREAD` per thread
            of ``torch.get_num_threads()``; any other device is taken as an accelerator.
    """
    flops = 2 * 2 * batch * layers * tokens**2 * hidden * (3 if backward else 1)
    rate = torch.get_num_threads() * _CPU_FLOPS_PER_THREAD if device.type == "cpu" else _ACCELERATOR_FLOPS
    return flops / rate


def probe_tokens(tokens: int) -> tuple[int, int]:
    """The token counts of the two timed probes of a call on ``tokens`` tokens: a quarter of
    them (at most :data:`_PROBE_TOKENS_MAX`) and half that, so that the attention's ``T^2``
    part already dominates while each probe costs a small share of the call."""
    larger = min(tokens // 4, _PROBE_TOKENS_MAX)
    return larger // 2, larger


def fitted_seconds(probes: list[tuple[int, float]], tokens: int) -> float:
    """Seconds per image at ``tokens`` tokens, from per-image times measured at two token
    counts ``[(T1, s1), (T2, s2)]``: the exact fit of ``a T^2 + b T`` (the attention's
    part and the per-token layers' part), each coefficient at least 0 (timing noise can
    make one negative; the other then carries the time alone)."""
    (t1, s1), (t2, s2) = probes
    a = (s2 / t2 - s1 / t1) / (t2 - t1)
    b = s1 / t1 - a * t1
    if a < 0:
        a, b = 0.0, max(s1 / t1, s2 / t2)
    elif b < 0:
        a, b = max(s1 / t1**2, s2 / t2**2), 0.0
    return a * tokens**2 + b * tokens


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation on ``device`` can take, or ``None`` where it cannot be read.

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux). CUDA: the driver's free memory plus
    what PyTorch's caching allocator holds unused.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu" and os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None


def peak_resident_increase(call: Callable[[], object]) -> int:
    """How far ``call()`` raised this process's resident set above where it was, in bytes.

    Exact, not sampled: freed heap is returned to the system first (glibc's
    ``malloc_trim``), then the kernel's peak (``VmHWM``) is reset to the current resident
    set through ``/proc/self/clear_refs``. Linux only; other threads' allocations count too.
    """
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_bytes("VmRSS")
    call()
    return _status_bytes("VmHWM") - before


def _status_bytes(field: str) -> int:
    """A size field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} is not in /proc/self/status")


def gib(size: int) -> str:
    """``size`` bytes as GiB for messages, e.g. ``'524.3 GiB'``."""
    return f"{size / 2**30:.1f} GiB"
