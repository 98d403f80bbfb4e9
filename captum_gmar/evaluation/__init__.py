"""Evaluation of attribution maps: faithfulness, localisation, robustness, head importance,
cost, implementation invariance, and diagnostics of GMAR's head weights (decomposition, ablation, head profile).

Pure functions over batched tensors that return one value per example (the caller
averages); see each module for the conventions. :func:`compare` runs them for several
methods over a data set of explanation tasks (:mod:`.data`), in one process or several
(:mod:`.distributed`); :mod:`.report` summarises the rows.
"""

from .cost import Cost, measure_cost
from .data import HubDatasetTasks, ImageFolderTasks, SceneTasks, open_dataset
from .diagnostics.ablation import ablation_masks, ablation_methods
from .diagnostics.head_importance import GroupDrops, group_masking_drops, head_masking_drops, rank_correlation
from .diagnostics.head_profile import HeadProfile, head_profile, weight_correlations
from .diagnostics.weight_decomposition import WeightDecomposition, class_share, decompose_head_weights
from .metrics.faithfulness import (
    blur,
    deletion_auc,
    deletion_insertion_curves,
    insertion_auc,
    perturbation_auc,
    perturbation_curve,
)
from .metrics.invariance import check_same_function, head_scales, invariance_table, map_change, reparametrised_copy
from .metrics.localisation import ClassSensitivity, class_sensitivity, gini_index, mass_inside, pointing_game
from .metrics.robustness import infidelity_score, sensitivity_score
from .report import ablation_table, paired_differences, read_csv, summarize
from .runner import compare

__all__ = [
    "ClassSensitivity",
    "Cost",
    "GroupDrops",
    "HeadProfile",
    "HubDatasetTasks",
    "ImageFolderTasks",
    "SceneTasks",
    "WeightDecomposition",
    "ablation_masks",
    "ablation_methods",
    "ablation_table",
    "blur",
    "check_same_function",
    "class_sensitivity",
    "class_share",
    "compare",
    "decompose_head_weights",
    "deletion_auc",
    "deletion_insertion_curves",
    "gini_index",
    "group_masking_drops",
    "head_masking_drops",
    "head_profile",
    "head_scales",
    "infidelity_score",
    "insertion_auc",
    "invariance_table",
    "map_change",
    "mass_inside",
    "measure_cost",
    "open_dataset",
    "perturbation_auc",
    "perturbation_curve",
    "pointing_game",
    "rank_correlation",
    "reparametrised_copy",
    "read_csv",
    "sensitivity_score",
    "paired_differences",
    "summarize",
    "weight_correlations",
]
