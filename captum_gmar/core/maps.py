"""From token relevance to maps: the patch grid, maps shaped like the input, and pixel maps summed per patch."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def patch_map(token_relevance: Tensor, num_prefix_tokens: int, grid: tuple[int, int]) -> Tensor:
    """Drop the special tokens and lay the patch tokens out on their grid.

    Args:
        token_relevance: ``(B, T)`` with ``T = num_prefix_tokens + h * w``; patches in
            row-major order, as ViT's patch embedding flattens them.
        num_prefix_tokens: CLS plus distillation or register tokens.
        grid: ``(h, w)``.

    Returns:
        ``(B, h, w)``.
    """
    h, w = grid
    patches = token_relevance[:, num_prefix_tokens:]
    if patches.shape[1] != h * w:
        raise ValueError(f"{patches.shape[1]} patch tokens do not fill a {h}x{w} grid")
    return patches.reshape(-1, h, w)


def input_map(patches: Tensor, patch_size: tuple[int, int], input_shape: tuple[int, ...]) -> Tensor:
    """Upsample a patch map to the input's pixels, broadcast over channels.

    The map is bilinearly upsampled to the area the patches cover (``h * ph`` by
    ``w * pw``); pixels beyond it, which the patch embedding never reads when the image
    size is not a multiple of the patch size, get 0.

    Args:
        patches: ``(B, h, w)``.
        patch_size: ``(ph, pw)``.
        input_shape: ``(B, C, H, W)``.

    Returns:
        ``(B, C, H, W)``, contiguous, in ``patches``' dtype.
    """
    batch, channels, height, width = input_shape
    h, w = patches.shape[-2:]
    covered = F.interpolate(patches.unsqueeze(1), size=(h * patch_size[0], w * patch_size[1]), mode="bilinear", align_corners=False)
    full = F.pad(covered, (0, width - covered.shape[-1], 0, height - covered.shape[-2]))
    return full.expand(batch, channels, height, width).contiguous()


def patch_sums(maps: Tensor, patch_size: tuple[int, int]) -> Tensor:
    """``(B, H, W)`` pixel maps summed over each patch of ``patch_size`` ``(ph, pw)`` px: ``(B, h, w)``."""
    height, width = maps.shape[-2:]
    if height % patch_size[0] or width % patch_size[1]:
        raise ValueError(f"the inputs ({height}x{width} px) are not whole patches of {patch_size} px: use resolution='pixels'")
    return F.avg_pool2d(maps[:, None], patch_size)[:, 0] * (patch_size[0] * patch_size[1])
