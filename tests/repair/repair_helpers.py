"""What several repair tests build."""

from __future__ import annotations

import torch
import transformers
from torch import nn


class LogitsDoubled(nn.Module):
    """A classifier whose logits are doubled after its classifier layer: that layer's output
    is not the model's logits."""

    def __init__(self, inner: transformers.ViTForImageClassification) -> None:
        super().__init__()
        self.inner = inner
        self.num_labels = inner.config.num_labels

    def forward(self, pixel_values: torch.Tensor) -> transformers.modeling_outputs.ImageClassifierOutput:
        return transformers.modeling_outputs.ImageClassifierOutput(logits=2 * self.inner(pixel_values=pixel_values).logits)
