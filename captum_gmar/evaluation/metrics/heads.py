"""The ``heads`` metric group: do GMAR's head weights pick the heads the prediction depends
on? (:mod:`~captum_gmar.evaluation.diagnostics.head_importance`)."""

from __future__ import annotations

from torch import Tensor

from ..diagnostics.head_importance import head_masking_drops, rank_correlation
from .base import Column, MetricGroup, MetricInputs

__all__ = ["HeadImportance"]


class HeadImportance(MetricGroup):
    """The rank correlation of a method's head weights with the logit drops of masking each
    head (methods that return head weights: GMAR)."""

    key = "heads"
    columns = (Column("head_rank_correlation", "Spearman correlation of head weights with head-masking logit drops (GMAR only)", "higher"),)

    def compute(self, inputs: MetricInputs) -> dict[str, Tensor]:
        if inputs.weights is None:  # GMAR's weights, from the timed call
            return {}
        return {"head_rank_correlation": rank_correlation(inputs.weights, head_masking_drops(self.vit, inputs.x, inputs.t))}
