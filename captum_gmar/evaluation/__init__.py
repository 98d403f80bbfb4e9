"""Evaluation of attribution maps: faithfulness, localisation, robustness, head importance,
cost, implementation invariance, and diagnostics of GMAR's head weights (decomposition, ablation, head profile).

Pure functions over batched tensors that return one value per example (the caller
averages); see each module for the conventions. :func:`compare` runs them for several
methods over a data set of explanation tasks (:mod:`.data`), in one process or several
(:mod:`.distributed`); :mod:`.report` summarises the rows and
:func:`write_report` writes a results folder (summary, report page, figure) from them.

The names below are imported on first use, so that the torch-free :mod:`.settings` (and
the command line's ``--help``, which shows its defaults) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it
_EXPORTS = {
    "ablation_masks": ".ablation",
    "ablation_methods": ".ablation",
    "ablation_table": ".ablation",
    "blur": ".faithfulness",
    "check_same_function": ".invariance",
    "class_sensitivity": ".localisation",
    "class_share": ".weight_decomposition",
    "ClassSensitivity": ".localisation",
    "compare": ".runner",
    "Cost": ".cost",
    "decompose_head_weights": ".weight_decomposition",
    "deletion_auc": ".faithfulness",
    "deletion_insertion_curves": ".faithfulness",
    "gini_index": ".localisation",
    "group_masking_drops": ".head_importance",
    "GroupDrops": ".head_importance",
    "head_masking_drops": ".head_importance",
    "head_profile": ".head_profile",
    "head_scales": ".invariance",
    "HeadProfile": ".head_profile",
    "HubDatasetTasks": ".data",
    "ImageFolderTasks": ".data",
    "infidelity_score": ".robustness",
    "insertion_auc": ".faithfulness",
    "invariance_table": ".invariance",
    "map_change": ".invariance",
    "mass_inside": ".localisation",
    "measure_cost": ".cost",
    "open_dataset": ".data",
    "paired_differences": ".report",
    "perturbation_auc": ".faithfulness",
    "perturbation_curve": ".faithfulness",
    "pointing_game": ".localisation",
    "rank_correlation": ".head_importance",
    "read_csv": ".report",
    "reparametrised_copy": ".invariance",
    "SceneTasks": ".data",
    "sensitivity_score": ".robustness",
    "Settings": ".settings",
    "summarize": ".report",
    "weight_correlations": ".head_profile",
    "WeightDecomposition": ".weight_decomposition",
    "write_report": ".results_folder",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'captum_gmar.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs, which do not run __getattr__
    from .ablation import ablation_masks as ablation_masks
    from .ablation import ablation_methods as ablation_methods
    from .ablation import ablation_table as ablation_table
    from .cost import Cost as Cost
    from .cost import measure_cost as measure_cost
    from .data import HubDatasetTasks as HubDatasetTasks
    from .data import ImageFolderTasks as ImageFolderTasks
    from .data import SceneTasks as SceneTasks
    from .data import open_dataset as open_dataset
    from .faithfulness import blur as blur
    from .faithfulness import deletion_auc as deletion_auc
    from .faithfulness import deletion_insertion_curves as deletion_insertion_curves
    from .faithfulness import insertion_auc as insertion_auc
    from .faithfulness import perturbation_auc as perturbation_auc
    from .faithfulness import perturbation_curve as perturbation_curve
    from .head_importance import GroupDrops as GroupDrops
    from .head_importance import group_masking_drops as group_masking_drops
    from .head_importance import head_masking_drops as head_masking_drops
    from .head_importance import rank_correlation as rank_correlation
    from .head_profile import HeadProfile as HeadProfile
    from .head_profile import head_profile as head_profile
    from .head_profile import weight_correlations as weight_correlations
    from .invariance import check_same_function as check_same_function
    from .invariance import head_scales as head_scales
    from .invariance import invariance_table as invariance_table
    from .invariance import map_change as map_change
    from .invariance import reparametrised_copy as reparametrised_copy
    from .localisation import ClassSensitivity as ClassSensitivity
    from .localisation import class_sensitivity as class_sensitivity
    from .localisation import gini_index as gini_index
    from .localisation import mass_inside as mass_inside
    from .localisation import pointing_game as pointing_game
    from .report import paired_differences as paired_differences
    from .report import read_csv as read_csv
    from .report import summarize as summarize
    from .results_folder import write_report as write_report
    from .robustness import infidelity_score as infidelity_score
    from .robustness import sensitivity_score as sensitivity_score
    from .runner import compare as compare
    from .settings import Settings as Settings
    from .weight_decomposition import WeightDecomposition as WeightDecomposition
    from .weight_decomposition import class_share as class_share
    from .weight_decomposition import decompose_head_weights as decompose_head_weights
