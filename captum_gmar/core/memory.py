"""Memory and time an attribution call needs, estimated before it runs, and what a device has free.

Attention rollout and its relatives hold ``(B, H, T, T)`` maps: the memory grows with the
square of the token count ``T``, i.e. with the fourth power of the image side. A photo
fed at full resolution (4000 x 3000 px, patch 8: 187,501 tokens) would need hundreds of
GiB for one layer. The estimates let every method (:meth:`AttentionAttribution.check_memory
<captum_gmar.methods.base.AttentionAttribution.check_memory>`, which ``attribute`` calls
first) refuse such a call at once, with a way out, instead of running for hours or dying
in the allocator.

Memory: the tensors alive at the call's peak (:func:`live_bytes`), which is what a caching
allocator such as CUDA's holds (``torch.cuda.max_memory_allocated``), and on a CPU what
the C library keeps resident besides (:func:`estimated_bytes`: glibc keeps freed heap
blocks, while blocks above its largest mmap threshold, 32 MiB, are resident only while
alive, :func:`~captum_gmar.core.allocator.mmapped_terms`). A call has two phases, and its peak is the larger of them:

- the passes: the forward pass's graph for the backward pass (or, without one, what the
  capture keeps of every layer), the layer in flight, copies of the images, and an eager
  attention's ``(B, H, T, T)`` probabilities (kept for the backward pass, or computed for
  a moment within a layer);
- the maps: what the capture kept of every layer (queries and keys, and values, tokens
  and the heads' gradients where the method reads them), copies of the images and the
  float32 maps the method builds from them. The graph is freed before they are built.

The coefficients (:data:`COEFFICIENTS`, and each method's ``maps_alive``) were fitted on
the peak of live tensors, measured on CPU with :func:`peak_live_bytes`
(``benchmarks/bench_memory.py --measure live``, ``benchmarks/fit_memory.py``): every
method, sdpa and eager attention, on a random ViT-B/16 at 224 px (batch 1 and 16),
``dinov2-small`` (112 to 672 px, batch 1 and 16), ``vit-tiny`` (64 to 512 px, batch 1 and
8; with eager attention GMAR alone) and five small random ViT and DINOv2 shapes (2 to 6
layers, 64 to 192 wide, 64 to 384 px). The CPU's live peak of the ViT-B/16 calls is the CUDA allocator's peak measured
on an H200 to 0.6 MiB, so the fit holds for CUDA: the estimate for a CUDA device is 1.03
to 1.20 times the H200's peak of every method at batch 1 and 16, and 1.04 to 1.62 times
the live peak of every call measured from 16 MiB up (``docs/benchmarks.md``). What a
model keeps beyond the fit's GELU ViTs is counted exactly: the relative position biases
of BEiT and Data2Vec-Vision under sdpa, and the wider activations of CLIP's ``quick_gelu``
(:class:`CallSizes`).

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
from dataclasses import dataclass
from pathlib import Path

import torch

#: bytes of a float32, the dtype of the images and of the maps the methods build
_FLOAT32 = 4
#: bytes per unit of each term of :func:`attention_call_phases` and
#: :func:`relevance_call_phases`, fitted on the measured peak of live tensors
#: (``benchmarks/fit_memory.py``, see the module's docstring):
#:
#: - ``graph``: values per token, layer and hidden channel (model dtype) that the forward
#:   pass keeps for a backward pass to the input, with the parameters held constant (the
#:   inputs of the LayerNorms, the GELU and the attention, the attention's output);
#:   ``relevance`` the same under the rules of AttnLRP and CP-LRP (each rule's saved tensors);
#: - ``captured``: the ``(B, T, D)`` tensors per layer the capture keeps (counted exactly);
#:   ``captured_maps`` the ``(B, H, T, T)`` probabilities it keeps at an eager kernel;
#: - ``layer``: values per token and hidden channel of the one layer in flight (its MLP
#:   is 4 times as wide, with its gradients during the backward pass);
#: - ``pass_images``, ``relevance_images``, ``maps_images``: float32 copies of the images
#:   alive during the passes (the input, its gradient), under the relevance rules (and
#:   ``x * gradient``), and while the maps are built (and the output map at the input's size);
#: - ``eager_kept``: an eager attention's probabilities kept per layer for the backward
#:   pass, in maps of the model's dtype; ``eager_moment`` per map a layer computes for a
#:   moment (its scores and probabilities, and their gradients where the backward pass
#:   goes through them);
#: - ``maps``: the method's own float32 maps, counted by its ``maps_alive`` (fitted per method).
COEFFICIENTS: dict[str, float] = {
    "graph": 11.27,
    "relevance": 10.03,
    "captured": 1.0,
    "captured_maps": 1.0,
    "layer": 12.49,
    "pass_images": 0.69,
    "relevance_images": 1.46,
    "maps_images": 2.35,
    "eager_kept": 0.86,
    "eager_moment": 0.89,
    "maps": 1.0,
}
#: a phase of a call: the bytes of each term of :data:`COEFFICIENTS` per unit of its coefficient
Terms = dict[str, float]
#: the factor on the fitted live tensors: a call of a model outside the fit may hold a
#: little more (the fit's smallest ratio is 1.0 by construction)
LIVE_MARGIN = 1.05
#: on a CPU, the factor on the live tensors glibc serves from its heap, also on those of
#: the other phase, which stay resident: it keeps the small blocks the passes free while
#: the maps are built, and serves blocks up to its mmap threshold (which rises as blocks
#: it served by mmap are freed, up to 32 MiB) from the heap. How much stays differs by method: the median
#: resident peak of five calls of the bundled ``vit-tiny`` at 256 px was 1.1 to 1.2 times
#: raw attention's live peak and 2.3 times GAE's (sdpa), and GAE's from 156 to 233 MiB
#: between runs and machines; with these the estimate is 1.35 to 2.49 times that median
#: for every method and both attention kernels (``tests/core/test_memory.py``,
#: docs/benchmarks.md). With the threshold held fixed (``MALLOC_MMAP_THRESHOLD_=131072``)
#: the median is the live peak, 1.00 to 1.04 times it, and the calls 1.5 to 2.1 times slower
RESIDENT_FACTOR = 2.2
#: the share of an eager attention's ``(B, H, T, T)`` maps (kept for the backward pass, or of
#: the moment) counted again on a CPU: freed layer by layer, they stay in the heap
_RESIDENT_EAGER = 1.2
#: the most counted for freed blocks of the other phases kept resident beyond a phase's
#: high-water mark: glibc returns blocks above its mmap threshold to the system when they
#: are freed, and the free top of its heap above a trim threshold of up to 64 MiB per
#: arena (two arenas: the caller's and torch's intra-op thread's); holes within it stay
_HEAP_RETAINED_MAX = 2 * 64 * 2**20
#: what a call on a CPU holds beyond the formula (thread-local buffers, the output), in
#: bytes, and per thread of ``torch.get_num_threads()``: the CPU's sdpa kernels keep
#: buffers per thread (up to 1.0 MiB each measured, ``vit-tiny`` and ``dinov2-small``
#: at 1,025 tokens, 2 to 64 threads)
_FIXED_BYTES = 4 * 2**20
_PER_THREAD_BYTES = 2**20
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


@dataclass(frozen=True)
class CallSizes:
    """The sizes one attribution call's memory depends on.

    Attributes:
        batch: images in one pass (the chunk, with ``internal_batch_size``).
        tokens: ``T``, special tokens included.
        heads, layers, hidden: ``H``, ``L`` and ``D`` of the model.
        itemsize: bytes per value in the model's dtype.
        pixels: values per image, ``C * H * W``.
        biases: ``(1, H, T, T)`` relative position biases the passes keep (an sdpa kernel
            saves them; the capture keeps them).
        activation_extra: values per token and hidden channel the MLP's activation keeps
            for a backward pass beyond a GELU's (and computes within a layer).
    """

    batch: int
    tokens: int
    heads: int
    layers: int
    hidden: int
    itemsize: int
    pixels: int
    biases: int = 0
    activation_extra: float = 0.0

    @property
    def layer_bytes(self) -> int:
        """One ``(B, T, D)`` tensor in the model's dtype."""
        return self.batch * self.tokens * self.hidden * self.itemsize

    @property
    def map_values(self) -> int:
        """Entries of one ``(B, H, T, T)`` map."""
        return self.batch * self.heads * self.tokens**2

    @property
    def image_bytes(self) -> int:
        """The batch of images in float32."""
        return self.batch * self.pixels * _FLOAT32


def attention_call_phases(
    sizes: CallSizes, maps_alive: float, captured: int, backward: bool, eager: bool, maps_kept: bool
) -> tuple[Terms, Terms]:
    """The terms of the two phases of an attention-map attribution call: the passes, and
    the building of the maps after them (the graph is freed by then).

    Args:
        sizes: the call's sizes.
        maps_alive: float32 ``(B, H, T, T)`` maps' worth the method holds at once while it
            builds its maps (fitted per method).
        captured: ``(B, T, D)`` tensors per layer the capture keeps for the maps: queries
            and keys, and values, tokens and the heads' gradients where the method reads them.
        backward: whether the call runs a backward pass, for which the forward pass keeps
            every layer's activations.
        eager: whether the model's attention is eager, which keeps each layer's
            probabilities for the backward pass (sdpa and flash kernels do not).
        maps_kept: whether the capture keeps every layer's probabilities (an eager
            attention captured at its kernel, see :mod:`captum_gmar.vit.capture`).

    The terms counted exactly (coefficient 1) are under ``"captured"``, the capture's
    tensors, the relative position biases and what an activation keeps beyond a GELU, and
    ``"captured_maps"``, the probabilities the capture keeps at an eager kernel.
    """
    layers, per_layer, one_map = sizes.layers, sizes.layer_bytes, sizes.map_values * sizes.itemsize
    bias = _bias_bytes(sizes)
    activation = sizes.activation_extra * (layers if backward else 1) * per_layer
    passes = {
        "graph": layers * per_layer if backward else 0,
        "captured": (0 if backward else captured * layers * per_layer) + bias + activation,
        "layer": per_layer,
        "pass_images": sizes.image_bytes,
        **_eager_terms(sizes, eager, keeps=backward or maps_kept, gradients=backward),
    }
    building = {
        "captured": captured * layers * per_layer + bias,
        "captured_maps": layers * one_map if maps_kept else 0,
        "maps_images": sizes.image_bytes,
        "maps": maps_alive * sizes.map_values * _FLOAT32,
    }
    return passes, building


def relevance_call_phases(sizes: CallSizes, eager: bool, attention_gradient: bool) -> tuple[Terms]:
    """The terms of an AttnLRP or CP-LRP call: one forward and one backward pass under the
    rules, no maps of the method's own; arguments as :func:`attention_call_phases`.

    Args:
        attention_gradient: whether relevance flows through the attention probabilities
            (AttnLRP); CP-LRP holds them constant, so an eager attention computes no
            gradient of its scores and probabilities.
    """
    return (
        {
            "relevance": sizes.layers * sizes.layer_bytes,
            # the rules pass the activations' gradient through unchanged: only a layer's temporaries
            "captured": _bias_bytes(sizes) + sizes.activation_extra * sizes.layer_bytes,
            "layer": sizes.layer_bytes,
            "relevance_images": sizes.image_bytes,
            **_eager_terms(sizes, eager, keeps=True, gradients=attention_gradient),
        },
    )


def _bias_bytes(sizes: CallSizes) -> int:
    """The relative position biases kept, ``(1, H, T, T)`` each, and where there are any, one
    layer's ``(B, H, T, T)`` scores: an sdpa kernel given a float mask may build them (with
    transformers 4.57, BEiT's sdpa calls held up to two thirds of a map more per image)."""
    if not sizes.biases:
        return 0
    return (sizes.biases * sizes.heads * sizes.tokens**2 + sizes.map_values) * sizes.itemsize


def _eager_terms(sizes: CallSizes, eager: bool, keeps: bool, gradients: bool) -> Terms:
    """An eager attention's maps: every layer's probabilities where they are kept (for a
    backward pass, or by the capture), and the maps a layer computes for a moment (scores
    and probabilities, and their gradients where the backward pass goes through them)."""
    if not eager:
        return {}
    one_map = sizes.map_values * sizes.itemsize
    return {"eager_kept": sizes.layers * one_map if keeps else 0, "eager_moment": (2 + 2 * gradients) * one_map}


def live_bytes(phases: tuple[Terms, ...]) -> float:
    """The fitted peak of live tensors of a call: its largest phase under :data:`COEFFICIENTS`."""
    return max(sum(COEFFICIENTS[term] * size for term, size in phase.items()) for phase in phases)


def estimated_bytes(phases: tuple[Terms, ...], resident: bool, mmapped: frozenset[str] = frozenset()) -> int:
    """The estimated peak memory of a call of ``phases``, in bytes.

    Under a caching allocator (CUDA's), the fitted live tensors (:func:`live_bytes`) times
    :data:`LIVE_MARGIN`. On a CPU (``resident``), with glibc's ``malloc``, the largest
    phase of:

    - its terms served from the heap (all but ``mmapped``, see :func:`~captum_gmar.core.allocator.mmapped_terms`),
      times :data:`RESIDENT_FACTOR` as well;
    - its ``mmapped`` terms, once: resident while alive and only then;
    - what the heap keeps of the other phases' terms (those the capture kept are alive in
      every phase and not counted again), likewise scaled, and :data:`_RESIDENT_EAGER` of
      an eager attention's maps served from the heap, up to :data:`_HEAP_RETAINED_MAX`; and
      at least the earlier phases' heap, likewise scaled: freed heap stays resident while
      the later phase's ``mmapped`` blocks are alive (without it GAE on ``dinov2-small`` at
      896 and 1,024 px was at 0.91 to 0.94 times its peak);

    plus the fixed part and the threads' buffers.
    """
    if not resident:
        return int(LIVE_MARGIN * live_bytes(phases))
    on_heap = tuple({term: size for term, size in phase.items() if term not in mmapped} for phase in phases)
    heap_bytes = [live_bytes((phase,)) for phase in on_heap]
    # the heap's phases added up, without an eager attention's maps (their share is counted
    # apart) and, after the passes, without what the capture kept: alive during the passes
    # too (for a backward pass the graph holds the queries, keys and values)
    eager_terms = ("eager_kept", "eager_moment")
    passes, *later = on_heap
    added_up = live_bytes(({term: size for term, size in passes.items() if term not in eager_terms},)) + sum(
        live_bytes(({term: size for term, size in phase.items() if term not in ("captured", "captured_maps")},)) for phase in later
    )
    eager = sum(passes.get(term, 0) for term in eager_terms)
    peaks = []
    for index, (phase, heap) in enumerate(zip(phases, heap_bytes)):
        mmapped_bytes = live_bytes(({term: size for term, size in phase.items() if term in mmapped},))
        retained = min(LIVE_MARGIN * RESIDENT_FACTOR * max(added_up - heap, 0) + _RESIDENT_EAGER * eager, _HEAP_RETAINED_MAX)
        high_water = LIVE_MARGIN * RESIDENT_FACTOR * max(max(heap_bytes[:index], default=0.0) - heap, 0)
        peaks.append(LIVE_MARGIN * (RESIDENT_FACTOR * heap + mmapped_bytes) + max(retained, high_water))
    threads = torch.get_num_threads() * _PER_THREAD_BYTES
    return int(max(peaks) + _FIXED_BYTES + threads)


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


def peak_live_bytes(call: Callable[[], object]) -> int:
    """The most bytes of tensors alive at once during ``call()`` on CPU, above those alive before.

    Every allocation and free of PyTorch's CPU allocator, in order, from ``torch.profiler``
    (``profile_memory=True``): what a caching allocator such as CUDA's counts as allocated
    (``torch.cuda.max_memory_allocated``), without what the C library keeps resident.
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profile:
        call()
    events = [event for event in profile.profiler.kineto_results.events() if event.name() == "[memory]"]
    alive = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):  # stable: same-time events keep their order
        alive += event.nbytes()
        peak = max(peak, alive)
    return peak


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
