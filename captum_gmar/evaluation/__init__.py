"""Evaluation of attribution maps: faithfulness, localisation, robustness, head importance, cost.

Pure functions over batched tensors that return one value per example (the caller
averages); see each module for the conventions.
"""

from .cost import Cost, measure_cost
from .faithfulness import (
    blur,
    deletion_auc,
    deletion_insertion_curves,
    insertion_auc,
    perturbation_auc,
    perturbation_curve,
)
from .head_importance import GroupDrops, group_masking_drops, head_masking_drops, rank_correlation
from .localisation import ClassSensitivity, class_sensitivity, mass_inside, pointing_game
from .robustness import infidelity_score, sensitivity_score

__all__ = [
    "ClassSensitivity",
    "Cost",
    "GroupDrops",
    "blur",
    "class_sensitivity",
    "deletion_auc",
    "deletion_insertion_curves",
    "group_masking_drops",
    "head_masking_drops",
    "infidelity_score",
    "insertion_auc",
    "mass_inside",
    "measure_cost",
    "perturbation_auc",
    "perturbation_curve",
    "pointing_game",
    "rank_correlation",
    "sensitivity_score",
]
