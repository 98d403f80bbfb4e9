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

from ..files import open_no_follow
from ..pages.report import summary_cell
from ..visualization import comparison_grid, to_display_image
from .cost import COST_COLUMNS
from .data import collate
from .methods import Method
from .metrics.registry import metric_columns


def summary_columns() -> dict[str, str]:
    """The columns of the summary, in order, name -> how to read them: every metric group's
    (:func:`~captum_gmar.evaluation.metrics.registry.metric_columns`), then the cost's
    (:data:`~captum_gmar.evaluation.cost.COST_COLUMNS`)."""
    return {**{name: column.description for name, column in metric_columns().items()}, **COST_COLUMNS}


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float | str]]:
    """Per method: the mean of each metric over the rows where it was computed, with the
    standard error of the mean (``<column>_sem``) and the row count; peak memory is the
    maximum over batches. One pass over ``rows`` (e.g. :func:`read_csv`), so a results
    file of any length is summarised in constant memory."""
    names = summary_columns()
    counts: dict[str, int] = {}
    stats: dict[str, dict[str, _Running]] = {}
    for row in rows:
        method = str(row["method"])
        counts[method] = counts.get(method, 0) + 1
        columns = stats.setdefault(method, {})
        for column in names:
            value = row.get(column)
            if value is not None and not math.isnan(float(value)):
                columns.setdefault(column, _Running()).add(float(value))
    summary = []
    for method, count in counts.items():
        entry: dict[str, float | str] = {"method": method, "explanations": count}
        for column in names:
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
    """``method`` minus ``baseline`` on the same items, per metric of :func:`summary_columns` (the
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
    columns = [c for c in summary_columns() if c not in COST_COLUMNS]
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
    if column in summary_columns():
        return float(text)
    if column != "method" and re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"True": True, "False": False}.get(text, text)


def markdown_table(summary: Sequence[dict]) -> str:
    """The summary as a Markdown table: one row per method, ``mean ± sem`` per metric."""
    descriptions = summary_columns()
    columns = [c for c in descriptions if any(c in entry for entry in summary)]
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for entry in summary:
        cells = [summary_cell(entry, column) if column in entry else "" for column in columns]
        lines.append(f"| {entry['method']} | " + " | ".join(cells) + " |")
    legend = [f"- `{column}`: {descriptions[column]}" for column in columns]
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
    column_notes: Mapping[str, str] | None = None,
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
        column_notes: method name -> a line under its column's title (e.g. its class specificity).
    """
    batch = collate([dataset[int(i)] for i in indices])
    x, t = batch.pixel_values.to(device), batch.targets.to(device)
    maps = {m.name: m(x, t).cpu() for m in methods}
    with torch.no_grad():
        scores = score_fn(x).cpu()
    images = [to_display_image(image, mean=mean, std=std) for image in x]
    titles = [class_title(row_scores, int(target), id2label, score_name) for row_scores, target in zip(scores, t)]
    masks = batch.masks if batch.has_mask.any() else None
    named = "named photo (its place in the composite)" if score_name == "cos" else None  # what the outline is
    return comparison_grid(
        images, maps, row_titles=titles, masks=masks, title=title, caption=caption, column_notes=column_notes, mask_label=named
    )


def class_title(scores: Tensor, target: int, id2label: Mapping[int, str], score_name: str = "p") -> str:
    """``'Sneaker (p 0.93)'`` for the explained class, plus ``'predicted: Bag (p 0.80)'``
    on a second line when the top class differs; ``scores`` ``(K,)``. With
    ``score_name="cos"`` (similarities to references) the named reference's rank among
    the ``K`` too: ``'like chelsea (cos 0.62, rank 2 of 9)'`` and ``'most like: rocket
    (cos 0.70)'``."""
    predicted = int(scores.argmax())
    similarity = score_name == "cos"
    rank = f", rank {int((scores > scores[target]).sum()) + 1} of {len(scores)}" if similarity else ""
    text = f"{'like ' if similarity else ''}{id2label[target]} ({score_name} {scores[target]:.2f}{rank})"
    if predicted != target:
        text += f"\n{'most like' if similarity else 'predicted'}: {id2label[predicted]} ({score_name} {scores[predicted]:.2f})"
    return text


def ablation_table(
    rows: Iterable[Mapping[str, Any]], base: str = "GMAR (L1)", rollout: str = "Attention rollout"
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Every ablated variant of ``base`` against ``base`` and against ``rollout``, paired
    on the same items (:func:`paired_differences`).

    Args:
        rows: a comparison's rows (e.g. ``list(read_csv(path))``) with ``base``,
            ``rollout`` and the variants named ``"<base>, ..."``.

    Returns:
        ``{variant: {column: {"vs_gmar": {mean, sem, count}, "vs_rollout": {...}}}}``, the
        variants in the order they first appear.

    Raises:
        ValueError: ``rows`` hold no variant of ``base``.
    """
    rows = list(rows)
    variants = list(dict.fromkeys(str(r["method"]) for r in rows if str(r["method"]).startswith(f"{base}, ")))
    if not variants:
        raise ValueError(f"the rows hold no ablated variant of {base!r}")
    table = {}
    for variant in variants:
        against = {"vs_gmar": paired_differences(rows, variant, base), "vs_rollout": paired_differences(rows, variant, rollout)}
        table[variant] = {c: {k: against[k][c] for k in against} for c in summary_columns() if all(c in against[k] for k in against)}
    return table


def ablation_markdown(table: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]], columns: Sequence[str]) -> str:
    """:func:`ablation_table` as Markdown: one row per variant, per column of ``columns``
    the paired change against GMAR and against rollout, ``mean ± sem``."""
    header = [f"{c} − GMAR | {c} − rollout" for c in columns]
    lines = ["| variant | " + " | ".join(header) + " |", "|---" * (2 * len(columns) + 1) + "|"]
    for variant, entry in table.items():
        cells = []
        for column in columns:
            for side in ("vs_gmar", "vs_rollout"):
                value = entry.get(column, {}).get(side)
                cells.append(f"{value['mean']:+.3f} ± {value['sem']:.3f}" if value else "")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
