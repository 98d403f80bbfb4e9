"""Reports of a comparison: summary statistics, the results CSV (written as rows come,
read back one row at a time), Markdown table and figure grid."""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import Dataset

from ..visualization import comparison_grid, to_display_image
from .data import collate
from .files import open_no_follow
from .methods import Method

#: columns of the summary table, in order, with how to read them
COLUMNS: dict[str, str] = {
    "deletion_auc": "Deletion AUC (lower is better; the baseline: blur, the mean image for similarities)",
    "insertion_auc": "Insertion AUC (higher is better; the baseline: blur, the mean image for similarities)",
    "positive_perturbation_auc": "Chefer positive perturbation AUC (lower is better)",
    "negative_perturbation_auc": "Chefer negative perturbation AUC (higher is better)",
    "pointing_game": "Pointing game hit rate (higher is better)",
    "mass_inside": "Share of the map's mass inside the explained object's mask (higher is better)",
    "gini": "Gini index of the map on the patch grid (0: mass spread evenly; near 1: on one patch)",
    "class_sensitivity": "Images with two labelled objects: mass on the explained one minus mass on the other (higher is better)",
    "class_specificity": "Composites of photos: the sum over their photos of the map's share on the explained photo's cell, less 1 "
    "(0 for any map that does not change with the target; higher is better)",
    "infidelity": "Captum infidelity (lower is better)",
    "sensitivity": "Captum sensitivity_max (lower is better)",
    "head_rank_correlation": "Spearman correlation of head weights with head-masking logit drops (GMAR only)",
    "rollout_correlation": "Pearson correlation with attention rollout's map, on the patch grid",
    "randomised_head_correlation": "Spearman correlation with the map after re-initialising the classifier head (lower: the map depends on it)",
    "randomised_block_correlation": "Spearman correlation with the map after re-initialising the last block (lower: the map depends on it)",
    "randomised_head_pixel_correlation": "the same as randomised_head_correlation on pixels instead of the patch grid",
    "randomised_block_pixel_correlation": "the same as randomised_block_correlation on pixels instead of the patch grid",
    "invariance": "Map change (total variation on the patch grid) when every head is rescaled, the function kept the same "
    "(0: implementation-invariant; see evaluation.invariance)",
    "head_entropy": "Normalised entropy of the head weights, mean over layers (1: uniform, GMAR = rollout; GMAR only)",
    "head_weight_class_share": "Share of the head weights' squared deviation from uniform that changes with the explained class, every class explained (GMAR only)",
    "seconds_per_image": "Wall time per image",
    "peak_memory_mb": "Peak extra memory of one batch (MB; RSS on CPU, allocated on CUDA)",
}


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float | str]]:
    """Per method: the mean of each metric over the rows where it was computed, with the
    standard error of the mean (``<column>_sem``) and the row count; peak memory is the
    maximum over batches. One pass over ``rows`` (e.g. :func:`read_csv`), so a results
    file of any length is summarised in constant memory."""
    counts: dict[str, int] = {}
    stats: dict[str, dict[str, _Running]] = {}
    for row in rows:
        method = str(row["method"])
        counts[method] = counts.get(method, 0) + 1
        columns = stats.setdefault(method, {})
        for column in COLUMNS:
            value = row.get(column)
            if value is not None and not math.isnan(float(value)):
                columns.setdefault(column, _Running()).add(float(value))
    summary = []
    for method, count in counts.items():
        entry: dict[str, float | str] = {"method": method, "explanations": count}
        for column in COLUMNS:
            if column not in stats[method]:
                continue
            running = stats[method][column]
            if column == "peak_memory_mb":
                entry[column] = running.maximum
                continue
            entry[column] = running.mean
            entry[f"{column}_sem"] = running.sem
        summary.append(entry)
    return summary


def paired_differences(rows: Iterable[Mapping[str, Any]], method: str, baseline: str) -> dict[str, dict[str, float]]:
    """``method`` minus ``baseline`` on the same items, per metric of :data:`COLUMNS` (the
    timings aside): ``{column: {"mean", "sem", "count"}}`` over the items where both were
    computed. Pairing removes the items' own variance, so a difference far smaller than
    either method's standard error in :func:`summarize` can still be resolved.

    Rows are matched on ``item``; ``rows`` is read once but the baseline's rows are held
    until their pair arrives (at most one row per item and method).

    Raises:
        ValueError: no item has rows of both methods.
    """
    waiting: dict[tuple[str, Any], Mapping[str, Any]] = {}
    stats: dict[str, _Running] = {}
    columns = [c for c in COLUMNS if c not in ("seconds_per_image", "peak_memory_mb")]
    for row in rows:
        name = str(row["method"])
        if name not in (method, baseline):
            continue
        other = waiting.pop(((baseline if name == method else method), row["item"]), None)
        if other is None:
            waiting[(name, row["item"])] = row
            continue
        ours, theirs = (row, other) if name == method else (other, row)
        for column in columns:
            a, b = ours.get(column), theirs.get(column)
            if a is not None and b is not None and not math.isnan(float(a)) and not math.isnan(float(b)):
                stats.setdefault(column, _Running()).add(float(a) - float(b))
    if not stats:
        raise ValueError(f"no item has rows of both {method!r} and {baseline!r}")
    return {column: {"mean": r.mean, "sem": r.sem, "count": r.count} for column, r in stats.items()}


class _Running:
    """Count, mean, sum of squared deviations (Welford's update) and maximum of a stream."""

    def __init__(self) -> None:
        self.count, self.mean, self.squares, self.maximum = 0, 0.0, 0.0, -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.squares += delta * (value - self.mean)
        self.maximum = max(self.maximum, value)

    @property
    def sem(self) -> float:
        """Standard error of the mean (sample standard deviation over sqrt(n)); 0 for one value."""
        return math.sqrt(self.squares / (self.count - 1) / self.count) if self.count > 1 else 0.0


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write the per-explanation rows (all columns that occur) to ``path``."""
    with ResultsWriter(path) as writer:
        writer.write(rows)


class ResultsWriter:
    """Appends result rows to a CSV file as they come, one batch per :meth:`write`.

    The header is the columns of the first rows written (every batch holds every
    method's rows, so the first has every column), or the existing file's when
    appending. Each write ends with whole lines flushed and synced to disk, so a crash
    leaves every earlier batch intact and at most the batch being written cut short. A
    symbolic link at ``path`` is refused (an ``OSError``), never written through.
    """

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        self.path = Path(path)
        self._fields: list[str] | None = None
        if append and self.path.is_file() and self.path.stat().st_size:
            with open(self.path, newline="", encoding="utf-8") as handle:
                self._fields = next(csv.reader(handle))
        self._handle = open_no_follow(self.path, "a" if append else "w", newline="")

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows``; columns a row lacks are left empty."""
        if not rows:
            return
        buffer = io.StringIO()
        if self._fields is None:
            self._fields = list(dict.fromkeys(key for row in rows for key in row))
            csv.writer(buffer).writerow(self._fields)
        csv.DictWriter(buffer, fieldnames=self._fields, extrasaction="raise").writerows(rows)
        self._handle.write(buffer.getvalue())
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_csv(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The rows of a results file, one at a time, typed: metric columns as floats (NaN
    included), whole numbers as ints, ``True``/``False`` as bools, the rest as strings;
    empty cells are left out of the row."""
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            yield {key: _parse(key, value) for key, value in row.items() if value not in ("", None)}


def _parse(column: str, text: str) -> Any:
    if column in COLUMNS:
        return float(text)
    if column != "method" and re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"True": True, "False": False}.get(text, text)


def summary_cell(entry: Mapping[str, Any], column: str) -> str:
    """One summary value as the tables show it: ``mean ± sem`` to 3 decimals, the time in
    milliseconds, the memory in whole MB."""
    if column == "seconds_per_image":
        return f"{entry[column] * 1000:.2f} ms"
    if column == "peak_memory_mb":
        return f"{entry[column]:.0f}"
    return f"{entry[column]:.3f} ± {entry[column + '_sem']:.3f}"


def markdown_table(summary: Sequence[dict]) -> str:
    """The summary as a Markdown table: one row per method, ``mean ± sem`` per metric."""
    columns = [c for c in COLUMNS if any(c in entry for entry in summary)]
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for entry in summary:
        cells = [summary_cell(entry, column) if column in entry else "" for column in columns]
        lines.append(f"| {entry['method']} | " + " | ".join(cells) + " |")
    legend = [f"- `{column}`: {COLUMNS[column]}" for column in columns]
    return "\n".join(lines + [""] + legend) + "\n"


def comparison_figure(
    methods: Sequence[Method],
    dataset: Dataset,
    indices: Sequence[int],
    device: torch.device,
    id2label: Mapping[int, str],
    score_fn: Callable[[Tensor], Tensor],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    title: str | None = None,
    caption: str | None = None,
    score_name: str = "p",
) -> Figure:
    """Image | one map per method, for the items ``indices`` of ``dataset``, the explained
    object's mask outlined where there is one; each row is titled with the explained
    class and the model's score for it, and the predicted class where that differs.

    Args:
        methods: the compared methods.
        dataset: a data set of explanation tasks (see :mod:`~captum_gmar.evaluation.data`).
        indices: the items to draw (one figure row each).
        device: where the methods' model lives.
        id2label: class names for the row titles (the model config's).
        score_fn: images -> class scores ``(N, K)`` (probabilities).
        mean, std: the image processor's normalisation, undone to draw the images
            (without them each image is min-max scaled).
        title, caption: of the figure (see :func:`~captum_gmar.visualization.comparison_grid`).
        score_name: what the scores are, in the row titles (see :func:`class_title`).
    """
    batch = collate([dataset[int(i)] for i in indices])
    x, t = batch.pixel_values.to(device), batch.targets.to(device)
    maps = {m.name: m(x, t).cpu() for m in methods}
    with torch.no_grad():
        scores = score_fn(x).cpu()
    images = [to_display_image(image, mean=mean, std=std) for image in x]
    titles = [class_title(row_scores, int(target), id2label, score_name) for row_scores, target in zip(scores, t)]
    masks = batch.masks if batch.has_mask.any() else None
    return comparison_grid(images, maps, row_titles=titles, masks=masks, title=title, caption=caption)


def class_title(scores: Tensor, target: int, id2label: Mapping[int, str], score_name: str = "p") -> str:
    """``'Sneaker (p 0.93)'`` for the explained class, plus ``'predicted: Bag (p 0.80)'``
    on a second line when the top class differs; ``scores`` ``(K,)``. With
    ``score_name="cos"`` (similarities to references): ``'like chelsea (cos 0.62)'`` and
    ``'most like: rocket (cos 0.70)'``."""
    predicted = int(scores.argmax())
    similarity = score_name == "cos"
    text = f"{'like ' if similarity else ''}{id2label[target]} ({score_name} {scores[target]:.2f})"
    if predicted != target:
        text += f"\n{'most like' if similarity else 'predicted'}: {id2label[predicted]} ({score_name} {scores[predicted]:.2f})"
    return text
