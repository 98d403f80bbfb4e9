"""Evaluation of attribution maps: faithfulness, localisation, robustness, head importance, cost.

Pure functions over batched tensors that return one value per example (the caller
averages); see each module for the conventions. :func:`compare` runs them for several
methods over a data set of explanation tasks (:mod:`.data`), in one process or several
(:mod:`.distributed`); :mod:`.report` summarises the rows.
"""

from .cost import Cost, measure_cost
from .data import HubDatasetTasks, ImageFolderTasks, SceneTasks, open_dataset
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
from .report import paired_differences, read_csv, summarize
from .robustness import infidelity_score, sensitivity_score
from .runner import compare

__all__ = [
    "ClassSensitivity",
    "Cost",
    "GroupDrops",
    "HubDatasetTasks",
    "ImageFolderTasks",
    "SceneTasks",
    "blur",
    "class_sensitivity",
    "compare",
    "deletion_auc",
    "deletion_insertion_curves",
    "group_masking_drops",
    "head_masking_drops",
    "infidelity_score",
    "insertion_auc",
    "mass_inside",
    "measure_cost",
    "open_dataset",
    "perturbation_auc",
    "perturbation_curve",
    "pointing_game",
    "rank_correlation",
    "read_csv",
    "sensitivity_score",
    "paired_differences",
    "summarize",
]
