"""Reports of a comparison: summary statistics, CSV, Markdown table and figure grid."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..datasets.scenes import PIXEL_MEAN, PIXEL_STD
from ..visualization import comparison_grid, to_display_image
from .methods import Method
from .runner import Explanations

#: columns of the summary table, in order, with how to read them
COLUMNS: dict[str, str] = {
    "deletion_auc": "Deletion AUC, blur baseline (lower is better)",
    "insertion_auc": "Insertion AUC, blur baseline (higher is better)",
    "positive_perturbation_auc": "Chefer positive perturbation AUC (lower is better)",
    "negative_perturbation_auc": "Chefer negative perturbation AUC (higher is better)",
    "pointing_game": "Pointing game hit rate (higher is better)",
    "mass_inside": "Share of the map's mass inside the target item's mask (higher is better)",
    "class_sensitivity": "Two-item scenes: mass on the explained item minus mass on the other (higher is better)",
    "infidelity": "Captum infidelity (lower is better)",
    "sensitivity": "Captum sensitivity_max (lower is better)",
    "head_rank_correlation": "Spearman correlation of head weights with head-masking logit drops (GMAR only)",
    "seconds_per_image": "Wall time per image",
    "peak_memory_mb": "Peak extra memory of one batch (MB; RSS on CPU, allocated on CUDA)",
}


def summarize(rows: Sequence[dict]) -> list[dict[str, float | str]]:
    """Per method: the mean of each metric over the rows where it was computed, with the
    standard error of the mean (``<column>_sem``) and the row count; peak memory is the
    maximum over batches."""
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        entry: dict[str, float | str] = {"method": method, "explanations": len(mine)}
        for column in COLUMNS:
            values = np.array([row[column] for row in mine if column in row], dtype=float)
            values = values[~np.isnan(values)]
            if not len(values):
                continue
            if column == "peak_memory_mb":
                entry[column] = float(values.max())
                continue
            entry[column] = float(values.mean())
            entry[f"{column}_sem"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def write_csv(rows: Sequence[dict], path: str | os.PathLike[str]) -> None:
    """Write the per-explanation rows (all columns that occur) to ``path``."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(summary: Sequence[dict]) -> str:
    """The summary as a Markdown table: one row per method, ``mean ± sem`` per metric."""
    columns = [c for c in COLUMNS if any(c in entry for entry in summary)]
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for entry in summary:
        cells = []
        for column in columns:
            if column not in entry:
                cells.append("")
            elif column == "seconds_per_image":
                cells.append(f"{entry[column] * 1000:.2f} ms")
            elif column == "peak_memory_mb":
                cells.append(f"{entry[column]:.0f}")
            else:
                cells.append(f"{entry[column]:.3f} ± {entry[column + '_sem']:.3f}")
        lines.append(f"| {entry['method']} | " + " | ".join(cells) + " |")
    legend = [f"- `{column}`: {COLUMNS[column]}" for column in columns]
    return "\n".join(lines + [""] + legend) + "\n"


def comparison_figure(
    methods: Sequence[Method],
    explanations: Explanations,
    rows: Sequence[int],
    device: torch.device,
    id2label: dict[int, str],
    score_fn: Callable[[Tensor], Tensor],
    title: str | None = None,
    caption: str | None = None,
) -> Figure:
    """Image | one map per method, for the explanation tasks ``rows``, the explained
    item's mask outlined; each row is titled with the explained class and the model's
    score for it, and the predicted class where that differs.

    Args:
        methods: the compared methods.
        explanations: the comparison's tasks.
        rows: indices of the tasks to draw (one figure row each).
        device: where the methods' model lives.
        id2label: class names for the row titles (the model config's).
        score_fn: images -> class scores ``(N, K)`` (probabilities).
        title, caption: of the figure (see :func:`~captum_gmar.visualization.comparison_grid`).
    """
    index = torch.as_tensor(list(rows))
    x, t = explanations.pixel_values[index].to(device), explanations.targets[index].to(device)
    maps = {m.name: m(x, t).cpu() for m in methods}
    with torch.no_grad():
        scores = score_fn(x).cpu()
    images = [to_display_image(image, mean=[PIXEL_MEAN] * 3, std=[PIXEL_STD] * 3) for image in x]
    titles = [class_title(row_scores, int(target), id2label) for row_scores, target in zip(scores, t)]
    return comparison_grid(images, maps, row_titles=titles, masks=explanations.masks[index], title=title, caption=caption)


def class_title(scores: Tensor, target: int, id2label: dict[int, str]) -> str:
    """``'Sneaker (p 0.93)'`` for the explained class, plus ``'predicted: Bag (p 0.80)'``
    on a second line when the top class differs; ``scores`` ``(K,)``."""
    predicted = int(scores.argmax())
    text = f"{id2label[target]} (p {scores[target]:.2f})"
    if predicted != target:
        text += f"\npredicted: {id2label[predicted]} (p {scores[predicted]:.2f})"
    return text
