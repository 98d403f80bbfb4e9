"""Which blocks of a call glibc's ``malloc`` keeps resident once freed: those it serves from
its heap, up to its mmap threshold (which rises as blocks it served by ``mmap`` are freed,
at most 32 MiB on 64-bit), and not those above it, which go back to the system. The CPU
memory estimate (:func:`~captum_gmar.core.memory.estimated_bytes`) counts the terms of
:func:`mmapped_terms` once."""

from __future__ import annotations

import os
import platform

from .memory import _FLOAT32, CallSizes

#: glibc's largest mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``): a block above
#: it is served by ``mmap`` unless a free heap chunk is as large (see :func:`mmapped_terms`)
_MMAP_THRESHOLD_MAX = 32 * 2**20
#: glibc's settings that change which blocks it serves by mmap and how much freed heap it
#: keeps (``mallopt``'s ``M_*``; an arena's count and the checks do not)
_MALLOC_SETTINGS = ("mmap_threshold", "mmap_max", "trim_threshold", "top_pad", "hugetlb")


def malloc_defaults() -> bool:
    """Whether this process allocates with glibc's ``malloc`` under its default mmap and trim
    settings, as far as the environment tells: none of :data:`_MALLOC_SETTINGS` among the
    variables or in ``GLIBC_TUNABLES`` (``MALLOC_MMAP_THRESHOLD_``,
    ``glibc.malloc.mmap_threshold``), no ``LD_PRELOAD`` (which may put jemalloc or tcmalloc
    in its place). A call of ``mallopt`` within the process is not seen."""
    if platform.libc_ver()[0] != "glibc" or os.environ.get("LD_PRELOAD"):
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return not any(f"MALLOC_{name.upper()}_" in os.environ or f"glibc.malloc.{name}" in tunables for name in _MALLOC_SETTINGS)


def smallest_blocks(sizes: CallSizes) -> dict[str, int]:
    """The bytes of the smallest large block of each term of :data:`COEFFICIENTS` in a call
    of ``sizes``, 0 for the terms counted as heap blocks whatever their size: a ``(B, T,
    D)`` tensor for the layers' terms (beside them only LayerNorm's statistics and sdpa's
    log-sum-exp, ``(B, T)`` and ``(B, H, T)``); one ``(B, H, T, T)`` map of an eager
    attention; one image's ``(T, T)`` float32 map for the method's maps (with a
    ``discard_ratio`` below 1/3, rollout's ``topk`` holds smaller ones, a few MiB); the
    capture's tensors (the relative position biases, ``(1, H, T, T)``, do not grow with the
    batch) and the copies of the images (the output map is ``(B, 1, H, W)``) as heap blocks."""
    layer, eager_map = sizes.layer_bytes, sizes.map_values * sizes.itemsize
    return {
        "graph": layer,
        "relevance": layer,
        "layer": layer,
        "captured": 0,
        "captured_maps": eager_map,
        "pass_images": 0,
        "relevance_images": 0,
        "maps_images": 0,
        "eager_kept": eager_map,
        "eager_moment": eager_map,
        "maps": sizes.tokens**2 * _FLOAT32,
    }


def mmapped_terms(sizes: CallSizes) -> frozenset[str]:
    """The terms of a call of ``sizes`` whose large blocks (:func:`smallest_blocks`) are
    above glibc's largest mmap threshold (:data:`_MMAP_THRESHOLD_MAX`): served by ``mmap``
    where the heap has no free chunk as large, and returned to the system when freed, they
    stay resident only while alive. None where :func:`malloc_defaults` is false: an
    allocator or settings of the user's may keep them."""
    if not malloc_defaults():
        return frozenset()
    return frozenset(term for term, block in smallest_blocks(sizes).items() if block > _MMAP_THRESHOLD_MAX)
