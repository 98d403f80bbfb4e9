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

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

#: public name -> module that defines it
_EXPORTS = {
    "ablation_masks": ".diagnostics.ablation",
    "ablation_methods": ".diagnostics.ablation",
    "ablation_table": ".report",
    "blur": ".metrics.faithfulness",
    "check_same_function": ".metrics.invariance",
    "class_sensitivity": ".metrics.localisation",
    "class_share": ".diagnostics.weight_decomposition",
    "ClassSensitivity": ".metrics.localisation",
    "compare": ".runner",
    "Cost": ".cost",
    "decompose_head_weights": ".diagnostics.weight_decomposition",
    "deletion_auc": ".metrics.faithfulness",
    "deletion_insertion_curves": ".metrics.faithfulness",
    "gini_index": ".metrics.localisation",
    "group_masking_drops": ".diagnostics.head_importance",
    "GroupDrops": ".diagnostics.head_importance",
    "head_masking_drops": ".diagnostics.head_importance",
    "head_profile": ".diagnostics.head_profile",
    "head_scales": ".metrics.invariance",
    "HeadProfile": ".diagnostics.head_profile",
    "HubDatasetTasks": ".data",
    "ImageFolderTasks": ".data",
    "infidelity_score": ".metrics.robustness",
    "insertion_auc": ".metrics.faithfulness",
    "invariance_table": ".metrics.invariance",
    "map_change": ".metrics.invariance",
    "mass_inside": ".metrics.localisation",
    "measure_cost": ".cost",
    "open_dataset": ".data",
    "paired_differences": ".report",
    "perturbation_auc": ".metrics.faithfulness",
    "perturbation_curve": ".metrics.faithfulness",
    "pointing_game": ".metrics.localisation",
    "rank_correlation": ".diagnostics.head_importance",
    "read_csv": ".report",
    "reparametrised_copy": ".metrics.invariance",
    "SceneTasks": ".data",
    "sensitivity_score": ".metrics.robustness",
    "Settings": ".settings",
    "summarize": ".report",
    "weight_correlations": ".diagnostics.head_profile",
    "WeightDecomposition": ".diagnostics.weight_decomposition",
    "write_report": ".results_folder",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

if TYPE_CHECKING:  # for type checkers and IDEs, which do not run __getattr__
    from .cost import Cost as Cost
    from .cost import measure_cost as measure_cost
    from .data import HubDatasetTasks as HubDatasetTasks
    from .data import ImageFolderTasks as ImageFolderTasks
    from .data import SceneTasks as SceneTasks
    from .data import open_dataset as open_dataset
    from .diagnostics.ablation import ablation_masks as ablation_masks
    from .diagnostics.ablation import ablation_methods as ablation_methods
    from .diagnostics.head_importance import GroupDrops as GroupDrops
    from .diagnostics.head_importance import group_masking_drops as group_masking_drops
    from .diagnostics.head_importance import head_masking_drops as head_masking_drops
    from .diagnostics.head_importance import rank_correlation as rank_correlation
    from .diagnostics.head_profile import HeadProfile as HeadProfile
    from .diagnostics.head_profile import head_profile as head_profile
    from .diagnostics.head_profile import weight_correlations as weight_correlations
    from .diagnostics.weight_decomposition import WeightDecomposition as WeightDecomposition
    from .diagnostics.weight_decomposition import class_share as class_share
    from .diagnostics.weight_decomposition import decompose_head_weights as decompose_head_weights
    from .metrics.faithfulness import blur as blur
    from .metrics.faithfulness import deletion_auc as deletion_auc
    from .metrics.faithfulness import deletion_insertion_curves as deletion_insertion_curves
    from .metrics.faithfulness import insertion_auc as insertion_auc
    from .metrics.faithfulness import perturbation_auc as perturbation_auc
    from .metrics.faithfulness import perturbation_curve as perturbation_curve
    from .metrics.invariance import check_same_function as check_same_function
    from .metrics.invariance import head_scales as head_scales
    from .metrics.invariance import invariance_table as invariance_table
    from .metrics.invariance import map_change as map_change
    from .metrics.invariance import reparametrised_copy as reparametrised_copy
    from .metrics.localisation import ClassSensitivity as ClassSensitivity
    from .metrics.localisation import class_sensitivity as class_sensitivity
    from .metrics.localisation import gini_index as gini_index
    from .metrics.localisation import mass_inside as mass_inside
    from .metrics.localisation import pointing_game as pointing_game
    from .metrics.robustness import infidelity_score as infidelity_score
    from .metrics.robustness import sensitivity_score as sensitivity_score
    from .report import ablation_table as ablation_table
    from .report import paired_differences as paired_differences
    from .report import read_csv as read_csv
    from .report import summarize as summarize
    from .results_folder import write_report as write_report
    from .runner import compare as compare
    from .settings import Settings as Settings
