"""Memory an attention attribution needs, estimated before it runs, and what a device has free.

Attention rollout and its relatives hold ``(B, H, T, T)`` maps: the memory grows with the
square of the token count ``T``, i.e. with the fourth power of the image side. A photo
fed at full resolution (4000 x 3000 px, patch 8: 187,501 tokens) would need hundreds of
GiB for one layer. The estimate lets :meth:`AttentionAttribution.attribute
<captum_gmar.attribution.AttentionAttribution.attribute>` refuse such a call at once,
with a way out, instead of running for minutes and dying in the allocator.

Calibrated on the reference model (6 layers, 4 heads, CPU, float32, 1,025 to 4,097
tokens, batch 1 and 2): the measured peak was 2.4-2.8 float32 maps for GMAR and rollout
and 4.5-5.1 for GAE, or, when an eager-attention model keeps one map per layer for the
backward pass, those maps plus two.
"""

from __future__ import annotations

import os

import torch

#: bytes of a float32, the dtype the maps are rebuilt in
_FLOAT32 = 4
#: per token, layer and hidden channel: the activations a forward pass keeps for a backward
#: pass to the input (no parameter gradients: LayerNorm and GELU inputs, attention
#: inputs and outputs, the MLP's 4x expansion), with room to spare
_ACTIVATIONS_PER_CHANNEL = 8


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
    """Estimated peak memory of one attribution call on ``batch`` images, in bytes.

    Args:
        batch: images in one pass (the chunk, with ``internal_batch_size``).
        tokens: ``T``, special tokens included.
        heads, layers, hidden: ``H``, ``L`` and ``D`` of the model.
        itemsize: bytes per entry in the model's dtype.
        maps_alive: float32 ``(B, H, T, T)`` maps the method holds at once.
        backward: whether the call runs a backward pass, for which the forward pass keeps
            every layer's activations (without one, a layer's are freed after it ran).
        eager: whether the model's attention is eager, which keeps each layer's
            probabilities for the backward pass (sdpa and flash kernels do not).
        maps_kept: whether the capture keeps every layer's probabilities even without a
            backward pass (an eager attention captured at its kernel, see
            :mod:`captum_gmar.capture`).
    """
    one_map = batch * heads * tokens * tokens
    activations = batch * tokens * hidden * _ACTIVATIONS_PER_CHANNEL * itemsize * (layers if backward else 1)
    # eager attention holds a layer's scores and probabilities, and keeps the latter for the backward pass
    eager_maps = ((layers if backward or maps_kept else 0) + 2) * one_map * itemsize if eager else 0
    # the backward pass ends (and frees the graph) before the method builds its maps; maps
    # captured from an eager kernel stay alive until then
    kept = layers * one_map * itemsize if eager and maps_kept else 0
    return max(activations + eager_maps, kept + maps_alive * one_map * _FLOAT32)


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


def gib(size: int) -> str:
    """``size`` bytes as GiB for messages, e.g. ``'524.3 GiB'``."""
    return f"{size / 2**30:.1f} GiB"
