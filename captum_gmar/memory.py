"""Memory an attention attribution needs, estimated before it runs, and what a device has free.

Attention rollout and its relatives hold ``(B, H, T, T)`` maps: the memory grows with the
square of the token count ``T``, i.e. with the fourth power of the image side. A photo
fed at full resolution (4000 x 3000 px, patch 8: 187,501 tokens) would need hundreds of
GiB for one layer. The estimate lets :meth:`AttentionAttribution.attribute
<captum_gmar.attribution.AttentionAttribution.attribute>` refuse such a call at once,
with a way out, instead of running for minutes and dying in the allocator.

Calibrated on the reference model (6 layers, 4 heads, CPU, float32, 1,025 and 4,097
tokens, batch 1 and 2): the measured peak was 2.4-2.8 float32 maps for GMAR and rollout,
4.5-5.1 for GAE, plus one map per layer in the model's dtype when an eager-attention
model keeps its probabilities for the backward pass.
"""

from __future__ import annotations

import os

import torch

#: bytes of a float32, the dtype the maps are rebuilt in
_FLOAT32 = 4
#: per token, layer and hidden channel: the activations a forward and backward pass keep
#: (residual stream, LayerNorm outputs, projections and the MLP's 4x expansion)
_ACTIVATIONS_PER_CHANNEL = 16


def attention_call_bytes(
    batch: int,
    tokens: int,
    heads: int,
    layers: int,
    hidden: int,
    maps_alive: int,
    saved_map_itemsize: int,
    activation_itemsize: int,
) -> int:
    """Estimated peak memory of one attribution call on ``batch`` images, in bytes.

    Args:
        batch: images in one pass (the chunk, with ``internal_batch_size``).
        tokens: ``T``, special tokens included.
        heads, layers, hidden: ``H``, ``L`` and ``D`` of the model.
        maps_alive: float32 ``(B, H, T, T)`` maps the method holds at once.
        saved_map_itemsize: bytes per entry of the attention probabilities the model
            itself keeps for the backward pass, one map per layer (0 when it keeps none:
            sdpa/flash kernels, or no backward pass).
        activation_itemsize: bytes per entry of the model's activations.
    """
    one_map = batch * heads * tokens * tokens
    maps = one_map * (maps_alive * _FLOAT32 + layers * saved_map_itemsize)
    activations = batch * tokens * layers * hidden * _ACTIVATIONS_PER_CHANNEL * activation_itemsize
    return maps + activations


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
