"""The other baseline: slice discovery on the model's embeddings of the same images, the idea
behind Domino (Eyuboglu et al., ICLR 2022), instead of clustering their explanations.

Each image's embedding is what the model's classifier reads: the class token's final
hidden state. The embeddings are reduced to their first 32 principal components
(whitened), and, as Domino's error-aware mixture does with its labels and predictions,
the model's confidence in the explained class (its sigmoid probability, standardised) is
appended, weighted so that it counts as much as the embedding. A Gaussian mixture with
diagonal covariances is fitted for 2 to 10 slices and the number with the lowest BIC kept.
Slices are ranked most confident first: the model is surest of the images a shortcut
decides (Domino ranks by error instead, which would put such a slice last).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from transformers import ViTForImageClassification

from captum_gmar.imagedata import to_pixel_values

__all__ = ["embed", "embedding_slices"]

#: principal components kept of the embeddings
COMPONENTS = 32


@torch.no_grad()
def embed(model: ViTForImageClassification, images: np.ndarray, target: int, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The class token's final hidden state ``(N, D)`` of a ``ViTForImageClassification``
    on ``uint8 (N, 64, 64, 3)`` scenes, and the sigmoid of the ``target`` logit ``(N,)``."""
    embeddings, probabilities = [], []
    for start in range(0, len(images), batch_size):
        out = model(pixel_values=to_pixel_values(images[start : start + batch_size]), output_hidden_states=True)
        embeddings.append(model.vit.layernorm(out.hidden_states[-1])[:, 0])
        probabilities.append(torch.sigmoid(out.logits[:, target]))
    return torch.cat(embeddings).numpy(), torch.cat(probabilities).numpy()


def embedding_slices(
    embeddings: np.ndarray, confidence: np.ndarray, seed: int, ks: range = range(2, 11)
) -> tuple[np.ndarray, list[int], int]:
    """The slices of ``embeddings`` ``(N, D)`` and ``confidence`` ``(N,)``: each image's
    slice ``int (N,)``, the slices most confident first, and the number chosen by BIC."""
    components = min(COMPONENTS, embeddings.shape[1], len(embeddings) - 1)
    reduced = PCA(n_components=components, whiten=True, random_state=seed).fit_transform(embeddings)
    scaled = (confidence - confidence.mean()) / max(confidence.std(), 1e-12)
    features = np.concatenate([reduced, np.sqrt(components) * scaled[:, None]], axis=1)
    fits = [GaussianMixture(k, covariance_type="diag", n_init=3, random_state=seed).fit(features) for k in ks]
    best = min(fits, key=lambda fit: fit.bic(features))
    labels = best.predict(features)
    found = sorted(set(labels.tolist()))
    order = sorted(found, key=lambda s: -float(confidence[labels == s].mean()))
    return labels.astype(np.int64), order, len(found)
