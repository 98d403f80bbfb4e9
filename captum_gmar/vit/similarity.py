"""Similarity to reference embeddings as classes: explaining what backbones are used for.

A backbone (DINOv2, CLIP's or SigLIP's image tower, a plain ViT, a timm ViT without
head) maps an image to an embedding, and retrieval, near-duplicate search and k-NN rank
images by the cosine similarity of embeddings. With ``K`` reference embeddings ``R``
``(K, D)`` the ``K`` cosines play the role of class logits:

    logit[b, k] = cos(e_b - mu, R_k - mu)

where ``e_b`` is the embedding the model itself returns for image ``b`` (see
:class:`~captum_gmar.vit.embedding.EmbeddingHead`) and ``mu`` an optional centre, the
mean embedding of a gallery: the cosine between embeddings of unrelated photos is far
from 0 (about 0.5 on DINOv2-S/14's class token), and centring removes what every image
shares. A map then explains why an image is similar to one reference, and ``target``,
batches, Captum's methods and metrics and the comparison work as for classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.formatting import batch_slices, check_pixel_values
from .architectures import describe
from .embedding import EmbeddingHead
from .model_state import evaluating, model_lock

__all__ = ["SimilarityModel", "embed_images"]


class SimilarityModel(EmbeddingHead):
    """A backbone's cosine similarity to ``K`` reference embeddings: ``(B, C, H, W) -> (B, K)``.

    Every attribution class builds one when given ``references=`` (and ``center=``); pass
    one yourself to :func:`~captum_gmar.evaluation.runner.compare`, Captum or Quantus.

    Args:
        backbone: a supported embedding model (see :class:`~captum_gmar.vit.embedding.EmbeddingHead`).
        references: ``(K, D)`` reference embeddings, e.g. from :func:`embed_images`
            with the same backbone; reference ``k`` is class ``k``.
        center: ``(D,)`` subtracted from the image's and the references' embeddings
            before the cosine (e.g. ``embed_images(backbone, gallery).mean(0)``), or ``None``.

    Raises:
        UnsupportedModelError: ``backbone`` is not a supported embedding model.
        TypeError: ``references`` or ``center`` is not a floating-point tensor.
        ValueError: a shape other than ``(K, D)`` / ``(D,)`` (``D`` the backbone's
            embedding width), NaN or infinite values, or a reference of (centred) norm 0.
    """

    references: Tensor
    center: Tensor | None

    def __init__(self, backbone: nn.Module, references: Tensor, center: Tensor | None = None) -> None:
        super().__init__(backbone)
        width = self.embedding_width
        references = _check_vectors("references", references, width, matrix=True)
        if center is not None:
            center = _check_vectors("center", center, width, matrix=False)
            references = references - center
        norms = references.norm(dim=-1)
        if (norms == 0).any():
            k = int((norms == 0).nonzero()[0])
            raise ValueError(
                f"references: reference {k} has norm 0{' after centring' if center is not None else ''}, so its cosine is undefined"
            )
        self.num_labels = int(references.shape[0])
        device = next(self.backbone.parameters()).device
        # buffers: they move with .to() and count in the model's state (a resumed comparison checks them)
        self.register_buffer("references", (references / norms[:, None]).to(device), persistent=True)
        self.register_buffer("center", None if center is None else center.to(device), persistent=True)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """``(B, K)`` cosine similarities of the images' (centred) embeddings to the references."""
        embedding = self.embed(pixel_values)
        image = embedding if self.center is None else embedding - self.center.to(embedding.device, embedding.dtype)
        norms = image.norm(dim=-1, keepdim=True)
        # the direction of a vector within rounding of 0 (an image's own embedding less itself, which another pass computes
        # in another order) is rounding noise, and 0/0 later reads as an overflow; one sync per pass
        zero = (norms <= torch.finfo(image.dtype).eps ** 0.5 * embedding.norm(dim=-1, keepdim=True)).flatten()
        if zero.any():
            raise ValueError(
                f"the embedding of image(s) {zero.nonzero().flatten()[:10].tolist()} "
                + ("equals center, so the centred embedding is 0" if self.center is not None else "is 0")
                + " and its cosine to a reference is undefined"
                + (": centre on a gallery's mean embedding, not on one of the explained images'" if self.center is not None else "")
            )
        return (image / norms) @ self.references.to(image.device, image.dtype).t()


def embed_images(model: nn.Module, pixel_values: Tensor, internal_batch_size: int | None = None) -> Tensor:
    """The embeddings ``(N, D)`` a supported backbone gives ``pixel_values`` ``(N, C, H, W)``.

    The embedding :class:`SimilarityModel` (and ``references=``) compares: run in eval
    mode, under the model's lock, without gradients, on the model's device and dtype.

    Args:
        model: a supported embedding model (see :class:`~captum_gmar.vit.embedding.EmbeddingHead`).
        pixel_values: images prepared by the model's image processor.
        internal_batch_size: images per forward pass (default: all at once).

    Returns:
        float32 ``(N, D)`` on ``pixel_values``' device.
    """
    head = EmbeddingHead(model)
    head.num_labels = head.embedding_width
    arch = describe(head)  # the backbone's channels and patch size, to check the images against
    check_pixel_values(pixel_values, arch.num_channels, arch.patch_size)
    backbone = head.backbone
    param = next(backbone.parameters())
    parts = []
    with model_lock(backbone), evaluating(backbone), torch.no_grad():
        for part in batch_slices(pixel_values.shape[0], internal_batch_size):
            parts.append(head.embed(pixel_values[part].to(param.device, param.dtype)).float())
    return torch.cat(parts).to(pixel_values.device)


def _check_vectors(name: str, value: object, width: int, matrix: bool) -> Tensor:
    """``value`` as a detached float32 CPU tensor, checked: floating point, ``(K, width)``
    (``matrix``) or ``(width,)``, finite."""
    shape = f"(K, {width})" if matrix else f"({width},)"
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {shape} of embeddings, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {value.dtype}; embed the references with embed_images(model, pixel_values)")
    if value.is_meta:
        raise ValueError(f"{name} is on the meta device (no values)")
    if value.dim() != (2 if matrix else 1) or value.shape[-1] != width or value.shape[0] == 0:
        hint = " (embed them with the model you explain: embed_images(model, pixel_values))" if matrix else ""
        raise ValueError(f"{name} must be {shape}, this model's embedding width being {width}; got shape {tuple(value.shape)}{hint}")
    value = value.detach().cpu().float()
    if not torch.isfinite(value).all():
        where = f" (reference {int((~torch.isfinite(value)).any(-1).nonzero()[0])})" if matrix else ""
        raise ValueError(f"{name} contain NaN or infinite values{where}")
    return value
