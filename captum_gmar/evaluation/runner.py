"""The side-by-side comparison: every method, every metric, on evaluation scenes.

A scene with one item gives one explanation (its class); a scene with two items gives
two, one per item, so that class sensitivity can compare the mass on the explained item
with the mass on the other one. Every method explains the same images for the same
targets in the same batches; the results are one row per method and explanation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..datasets.scenes import Scenes, to_pixel_values
from ..models import VisionTransformer
from ..names import METHOD_KEYS, METRIC_KEYS
from .cost import measure_cost
from .faithfulness import deletion_auc, insertion_auc, perturbation_auc
from .head_importance import head_masking_drops, rank_correlation
from .localisation import class_sensitivity, mass_inside, pointing_game
from .methods import build_methods
from .robustness import infidelity_score, sensitivity_score


@dataclass(frozen=True)
class Explanations:
    """The explanation tasks of a set of scenes, ``E`` of them.

    Attributes:
        pixel_values: ``(E, 3, H, W)`` model inputs.
        targets: ``(E,)`` the class of the explained item.
        masks: ``(E, H, W)`` the explained item's mask.
        other_masks: ``(E, H, W)`` the other item's mask (all False in one-item scenes).
        two_items: ``(E,)`` whether the scene holds two items.
        scene: ``(E,)`` index of the scene.
    """

    pixel_values: Tensor
    targets: Tensor
    masks: Tensor
    other_masks: Tensor
    two_items: Tensor
    scene: Tensor

    def __len__(self) -> int:
        return len(self.targets)


def explanation_tasks(scenes: Scenes) -> Explanations:
    """One task per item: scene ``i``'s item ``k`` explained with class ``labels[i, k]``."""
    scene, slot = np.nonzero(scenes.labels >= 0)
    masks = torch.from_numpy(scenes.masks)
    return Explanations(
        pixel_values=to_pixel_values(scenes.images)[scene],
        targets=torch.from_numpy(scenes.labels[scene, slot]),
        masks=masks[scene, slot],
        other_masks=masks[scene, 1 - slot],
        two_items=torch.from_numpy(scenes.num_items[scene] == 2),
        scene=torch.from_numpy(scene),
    )


def score_function(vit: VisionTransformer) -> Callable[[Tensor], Tensor]:
    """Class scores the metrics perturb: sigmoid for multi-label models, else softmax."""
    if vit.model.config.problem_type == "multi_label_classification":
        return lambda x: torch.sigmoid(vit.logits(x).float())
    return lambda x: torch.softmax(vit.logits(x).float(), dim=-1)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(device)


def compare(
    model: nn.Module,
    scenes: Scenes,
    methods: Sequence[str] = METHOD_KEYS,
    metrics: Sequence[str] = METRIC_KEYS,
    device: str = "auto",
    batch_size: int = 32,
    robustness_limit: int = 100,
    ig_steps: int = 50,
    ig_internal_batch_size: int | None = None,
    deletion_steps: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float | int | str]]:
    """Run ``methods`` on every explanation task of ``scenes`` and score them.

    Args:
        model: a supported classifier (moved to ``device`` and put in eval mode).
        scenes: evaluation scenes.
        methods: keys of :data:`~captum_gmar.evaluation.methods.METHOD_KEYS`.
        metrics: groups of :data:`METRIC_KEYS`; ``"robustness"`` (Captum's infidelity and
            sensitivity_max, which re-run the method) is limited to the first
            ``robustness_limit`` tasks; ``"heads"`` scores GMAR's head weights.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: explanations per batch (IG's steps are split by
            ``ig_internal_batch_size``).
        deletion_steps: steps of the deletion and insertion curves.
        seed: seeds torch and the robustness metrics' noise, so a run is reproducible.

    Returns:
        One row per method and task: ``method``, ``scene``, ``target``, ``two_items`` and
        the metric columns of :data:`~captum_gmar.evaluation.report.COLUMNS` that were computed.
    """
    unknown = [m for m in metrics if m not in METRIC_KEYS]
    if unknown:
        raise ValueError(f"unknown metric group(s) {', '.join(unknown)}; choose from {', '.join(METRIC_KEYS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    torch.manual_seed(seed)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    vit = VisionTransformer(model)
    score_fn = score_function(vit)
    built = build_methods(model, methods, ig_steps=ig_steps, ig_internal_batch_size=ig_internal_batch_size)
    tasks = explanation_tasks(scenes)
    starts = range(0, len(tasks), batch_size)
    rows: list[dict[str, float | int | str]] = []
    bar = tqdm(total=len(built) * len(starts), desc="compare", disable=not progress)
    for method in built:
        method(tasks.pixel_values[:1].to(dev), tasks.targets[:1].to(dev))  # warm-up, untimed
        for start in starts:
            part = slice(start, start + batch_size)
            x, t = tasks.pixel_values[part].to(dev), tasks.targets[part].to(dev)
            cost = measure_cost(method.maps_and_head_weights, x, t, device=dev, repeats=1, warmup=0)
            maps, weights = cost.output
            columns: dict[str, Tensor] = {}
            if "faithfulness" in metrics:
                columns["deletion_auc"] = deletion_auc(score_fn, x, maps, t, baseline="blur", steps=deletion_steps)
                columns["insertion_auc"] = insertion_auc(score_fn, x, maps, t, baseline="blur", steps=deletion_steps)
                columns["positive_perturbation_auc"] = perturbation_auc(score_fn, x, maps, t, positive=True)
                columns["negative_perturbation_auc"] = perturbation_auc(score_fn, x, maps, t, positive=False)
            if "localisation" in metrics:
                masks, other = tasks.masks[part].to(dev), tasks.other_masks[part].to(dev)
                columns["pointing_game"] = pointing_game(maps, masks).float()
                columns["mass_inside"] = mass_inside(maps, masks)
                sensitivity = class_sensitivity(maps, masks, other).difference
                columns["class_sensitivity"] = torch.where(tasks.two_items[part].to(dev), sensitivity, math.nan)
            if "robustness" in metrics:  # NaN beyond the first robustness_limit tasks
                keep = slice(0, max(0, min(len(t), robustness_limit - start)))
                columns["infidelity"] = torch.full((len(t),), math.nan)
                columns["sensitivity"] = torch.full((len(t),), math.nan)
                if keep.stop:
                    columns["infidelity"][keep] = infidelity_score(vit.logits, x[keep], maps[keep], t[keep], seed=seed).cpu()
                    columns["sensitivity"][keep] = sensitivity_score(method.explain, x[keep], t[keep], seed=seed).cpu()
            if "heads" in metrics and weights is not None:  # GMAR's weights, from the timed call
                drops = head_masking_drops(vit, x, t)
                columns["head_rank_correlation"] = rank_correlation(weights, drops)
            for i in range(len(t)):
                row: dict[str, float | int | str] = {
                    "method": method.name,
                    "scene": int(tasks.scene[start + i]),
                    "target": int(t[i]),
                    "two_items": bool(tasks.two_items[start + i]),
                    "seconds_per_image": cost.seconds_median / len(t),
                    "peak_memory_mb": cost.peak_memory_bytes / 2**20,
                }
                row.update({name: float(values[i]) for name, values in columns.items()})
                rows.append(row)
            bar.update()
    bar.close()
    return rows
