"""The baseline: CoRelAy's SpRAy pipeline (``corelay.pipeline.spectral.SpectralClustering``)
on the same patch maps, as ViRelAy's analysis example runs it.

The pipeline's defaults: Euclidean ``pdist`` distances, a symmetric 10-nearest-neighbour
affinity, the symmetric normalised Laplacian, its 32 smallest eigenvalues, k-means on
the 32 eigenvectors. Preprocessing as the example's default variant (``spectral``): each
map divided by its sum, then flattened (the example's channel sum does not apply: a patch
map has no channels). CoRelAy picks no number of clusters: it clusters for every ``k``
asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["corelay_clusters"]


def corelay_clusters(maps: np.ndarray, ks: Sequence[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """CoRelAy's spectral clustering of ``maps`` (``(N, h, w)``, non-negative, none
    all zero) for each ``k`` of ``ks``: the eigenvalues ``(32,)`` ascending and, per
    ``k``, the labels ``int (N,)``.

    Raises:
        ImportError: ``corelay`` is not installed (``pip install corelay``).
        ValueError: a map sums to zero (the preprocessing divides by the sum).
    """
    try:
        from corelay.pipeline.spectral import SpectralClustering
        from corelay.processor.base import Processor
        from corelay.processor.clustering import KMeans
        from corelay.processor.flow import Parallel
    except ImportError as error:
        raise ImportError("the baseline needs CoRelAy: pip install corelay") from error
    sums = maps.reshape(len(maps), -1).sum(1)
    if not (sums > 0).all():
        raise ValueError(f"{int((sums <= 0).sum())} maps sum to zero or less: CoRelAy's normalisation divides by the sum")

    class NormaliseFlatten(Processor):
        """The example's ``Normalize`` (over the map's axes) then ``Flatten``."""

        def function(self, data: Any) -> Any:
            return (data / data.sum((1, 2), keepdims=True)).reshape(len(data), -1)

    pipeline = SpectralClustering(
        preprocessing=NormaliseFlatten(),
        clustering=Parallel([KMeans(n_clusters=k, kwargs={"n_init": 10, "random_state": 0}) for k in ks], broadcast=True, is_output=True),
    )
    (eigenvalues, _), labels = pipeline(maps.astype(np.float64))
    return np.sort(eigenvalues), {k: np.asarray(found, dtype=np.int64) for k, found in zip(ks, labels)}
