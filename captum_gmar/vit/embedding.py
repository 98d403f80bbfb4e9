"""The embedding a supported backbone itself returns, and the base class of a head on it
(:class:`EmbeddingHead`, e.g. :class:`~captum_gmar.vit.similarity.SimilarityModel`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..names import EMBEDDING_MODEL_CLASSES, EMBEDDING_MODELS, ZERO_SHOT_MODEL_CLASSES
from .blocks import ForeignModule
from .calls import hf_logits, is_timm, transformers_names
from .model_state import unwrap_model
from .zero_shot import image_features


class EmbeddingHead(nn.Module):
    """Base class of a head on the embedding a supported backbone itself returns.

    The embedding is the one the model returns: ``pooler_output`` of ``Dinov2Model``,
    ``ViTModel`` (its pooler), ``BeitModel``, ``SiglipVisionModel``, ...,
    ``image_embeds`` of ``CLIPVisionModelWithProjection``, ``get_image_features`` of a
    zero-shot image-text model (its image tower), the output of a timm ViT created with
    ``num_classes=0`` (see :data:`~captum_gmar.names.EMBEDDING_MODEL_CLASSES`). The
    attribution methods read out the rollout where that embedding pools the tokens.
    A subclass sets ``num_labels`` and implements ``forward(pixel_values) -> (B,
    num_labels)`` from :meth:`embed` (e.g.
    :class:`~captum_gmar.vit.similarity.SimilarityModel`).

    Args:
        backbone: a supported embedding model (also inside peft or ``torch.compile``).

    Raises:
        UnsupportedModelError: ``backbone`` is not one of them.
    """

    num_labels: int

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = unwrap_model(backbone)
        self.embedding_width = embedding_width(self.backbone)

    def embed(self, pixel_values: Tensor) -> Tensor:
        """``(B, D)`` embeddings of ``pixel_values`` ``(B, C, H, W)``, with autograd."""
        return read_embedding(self.backbone, pixel_values)


def embedding_width(model: nn.Module) -> int:
    """``D``, the width of the embedding ``model`` returns (see :class:`EmbeddingHead`).

    Raises:
        UnsupportedModelError: ``model`` is not a supported embedding model.
    """
    kind, spec = embedding_kind(model)
    hf: ForeignModule = model
    if kind == "zero-shot":
        config = hf.config
        return int(getattr(config, "projection_dim", None) or config.vision_config.hidden_size)  # SigLIP: no projection
    if kind == "timm":
        return int(getattr(model, "head_hidden_size", None) or hf.num_features)
    return int(getattr(hf.config, spec[4]))  # CLIPVisionModel's config is the vision config


def read_embedding(model: nn.Module, pixel_values: Tensor) -> Tensor:
    """``(B, D)``: the embedding ``model`` returns for ``pixel_values`` (see :class:`EmbeddingHead`)."""
    kind, spec = embedding_kind(model)
    if kind == "zero-shot":
        return image_features(model, pixel_values)
    if kind == "timm":
        return model(pixel_values)
    field = spec[3]

    def read(x: Tensor, **kwargs: Any) -> Tensor:
        output = model(pixel_values=x, **kwargs)
        embedding = getattr(output, field)
        return output.last_hidden_state[:, 0] if embedding is None else embedding  # ViT, DeiT, BEiT without pooler: CLS

    return hf_logits(model, vision_tower(model), read)(pixel_values)


def embedding_kind(model: nn.Module) -> tuple[str, tuple]:
    """``("zero-shot", ())``, ``("timm", ())`` or ``("hf", EMBEDDING_MODELS entry)``."""
    names = transformers_names(model)
    if names & set(ZERO_SHOT_MODEL_CLASSES):
        return "zero-shot", ()
    if is_timm(model):
        timm_model: ForeignModule = model
        if timm_model.num_classes != 0:
            raise UnsupportedModelError(
                f"this timm {type(model).__name__} has a classifier; for its embedding create it with num_classes=0"
            )
        return "timm", ()
    found = [name for name in EMBEDDING_MODEL_CLASSES if name in names]
    if not found:
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a supported embedding model; supported: {', '.join(EMBEDDING_MODEL_CLASSES)}, "
            f"the image towers of {', '.join(ZERO_SHOT_MODEL_CLASSES)}, and timm ViTs created with num_classes=0"
        )
    return "hf", EMBEDDING_MODELS[found[0]]


def vision_tower(model: nn.Module) -> nn.Module:
    """The vision transformer of an embedding model: its ``vision_model`` or itself."""
    return getattr(model, "vision_model", model)
