"""The results folder of a comparison: what :func:`write_report` adds beside ``results.csv``.

``compare(model, data, results=out / "results.csv")`` writes the rows and the run's
settings (``results.run.json``); ``write_report(out, model, data)`` then writes

- ``summary.md``: a header naming the model, the baseline, the device and the command,
  then the summary table (and GMAR's paired ablation table where the run had ablations);
- ``summary.json``: the summary, one entry per method;
- ``report.html``: the header, the summary sortable by any column, and the maps of the
  first ``gallery`` explained items (:func:`~captum_gmar.pages.comparison_report`);
- ``comparison.png``: the maps of the first ``figure_rows`` explained items.

The command line's ``compare`` and ``demo`` write their folders this way. Every file goes
through :mod:`~captum_gmar.files`: listed in the folder's manifest first,
written atomically, and never over a file the package did not write.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import Dataset

from ..files import claim_files, save_figure, write_atomic
from ..names import GALLERY_MAX
from ..pages import comparison_report, gallery_card
from ..visualization import to_display_image
from ..vit.model import VisionTransformer
from ..vit.outputs import score_function
from ..vit.similarity import SimilarityModel
from .data import CompositeTasks, collate
from .distributed import Launch, describe_device, select_device
from .methods import Method
from .photo_similarity import add_class_specificity
from .report import ablation_markdown, ablation_table, class_title, comparison_figure, markdown_table, read_csv, summarize, summary_columns
from .runner import run_file, settings_methods
from .settings import Settings

__all__ = ["RESULTS", "Report", "report_files", "write_report"]

#: the rows' file in a results folder, which :func:`write_report` reads
RESULTS = "results.csv"
#: how AttnLRP's and CP-LRP's map is made, in the words of the header
_RELEVANCE_MAP_WORDS = {
    "positive": "the positive part of the relevance",
    "signed": "the signed relevance",
    "abs": "the absolute value of the relevance",
}


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: the files, the summary table as Markdown and the
    lines about skipped images (empty where none was skipped)."""

    files: list[Path]
    table: str
    skipped: list[str]


def report_files(figure: bool) -> list[str]:
    """The files :func:`write_report` writes (``comparison.png`` where ``figure``)."""
    return ["summary.md", "summary.json", "report.html", *(["comparison.png"] if figure else [])]


def write_report(
    out: str | os.PathLike[str],
    model: nn.Module,
    dataset: Dataset,
    *,
    model_name: str | None = None,
    id2label: Mapping[int, str] | None = None,
    explained: str | None = None,
    device: str | torch.device = "auto",
    device_description: str | None = None,
    command: str | None = None,
    figure_rows: int = 6,
    gallery: int = 48,
) -> Report:
    """Write the summary, the report page and the figure of the comparison whose rows are
    ``out/results.csv`` (see the module's docstring), with the settings it ran with (read
    from ``out/results.run.json``).

    Args:
        out: the results folder, where :func:`~.runner.compare` wrote ``results.csv``.
        model, dataset: those the comparison ran on; the page's and the figure's maps are
            computed again, on ``device``.
        model_name: how the header names the model (default: its ``name_or_path``'s last
            part, else its class).
        id2label: the classes' names (default: the model's ``config.id2label``).
        explained: what the scores are, for a :class:`~captum_gmar.vit.similarity.SimilarityModel`
            (default: "cosine similarity of the embeddings", "less the centre" where it
            has one).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        device_description: the device in the header (default: described from ``device``).
        command: the command line that ran the comparison, named in the header.
        figure_rows: explained items in ``comparison.png``; 0 for no figure.
        gallery: explained items whose maps ``report.html`` shows, at most
            :data:`~captum_gmar.names.GALLERY_MAX` (the page says how many more there were).

    Raises:
        FileNotFoundError: no ``results.csv`` or ``results.run.json`` in ``out``.
        FileExistsError: ``out`` holds a file of those written here that the package did
            not write.
        ValueError: ``results.csv`` holds no row (no image could be read), or ``gallery``
            is out of range.
    """
    if not 0 <= gallery <= GALLERY_MAX:
        raise ValueError(f"gallery must be between 0 and {GALLERY_MAX}, got {gallery}")
    out = Path(out)
    saved = json.loads(run_file(out / RESULTS).read_text())
    settings = Settings(**{field.name: saved[field.name] for field in dataclasses.fields(Settings)})
    rows = list(read_csv(out / RESULTS))
    unreadable = saved.get("unreadable_count", 0)
    skipped = [f"{unreadable} unreadable image(s) skipped, listed in {run_file(out / RESULTS)}"] if unreadable else []
    if not rows:
        raise ValueError(f"no image could be read: {skipped[0]}" if skipped else f"{str(out / RESULTS)!r} holds no rows")
    claim_files(out, report_files(figure_rows > 0))
    summary = summarize(rows)
    if isinstance(dataset, CompositeTasks) and "mass_inside" in rows[0]:
        summary = add_class_specificity(summary, rows)
    device = select_device(device, Launch(), torch.cuda.device_count()) if isinstance(device, str) else device
    similarity = isinstance(model, SimilarityModel)
    what = [f"Model: {model_name or _name_of(model)}"]
    if similarity:
        centred = " less the centre" if model.center is not None else ""
        what.append(f"explained: {explained or 'cosine similarity of the embeddings' + centred}")
    if "faithfulness" in settings.metrics:  # the only group that fills the removed pixels
        what.append(f"deletion/insertion baseline: {'the mean image' if settings.baseline == 'zero' else settings.baseline}")
    if {"attnlrp", "cplrp"} & set(settings.methods):
        what.append(f"AttnLRP and CP-LRP map: {_RELEVANCE_MAP_WORDS[settings.relevance_map]}")
    described = device_description or f"{describe_device(device)}, torch {torch.__version__}"
    what.append(f"device: {described}")
    table = markdown_table(summary)
    if settings.ablation:
        ablation = ablation_table(rows)
        columns = [c for c in summary_columns() if any(c in entry for entry in ablation.values())]
        table += "\nGMAR's ablations, paired on the same items with GMAR (L1) and with attention rollout:\n\n" + ablation_markdown(
            ablation, columns
        )
    header = "; ".join([*what, *([f"command: `{command}`"] if command else []), *skipped]) + "\n\n"
    write_atomic(out / "summary.md", header + table)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    vit = VisionTransformer(model)  # one wrapper for the methods and the figure's scores
    methods = settings_methods(vit, settings)
    classes = dict(id2label) if id2label is not None else cast(Any, model).config.id2label
    subject = _Subject(model, dataset, classes, "cos" if similarity else "p")
    explained_items = sorted({row["item"] for row in rows})  # not the skipped ones
    name = model_name or _name_of(model)
    _gallery_page(
        out / "report.html",
        subject,
        methods,
        rows,
        summary,
        explained_items[:gallery],
        len(explained_items),
        [*what, *([f"command: {command}"] if command else []), *skipped],
        device,
        settings.batch_size,
        f"{name}: comparison of {', '.join(m.name for m in methods)}",
    )
    written = [out / RESULTS, out / "results.run.json", *(out / name for name in report_files(figure=False))]
    if figure_rows:
        timings = ", ".join(f"{entry['method']} {entry['seconds_per_image'] * 1000:.1f} ms" for entry in summary)
        looked_at = "what made each composite similar to the named photo" if similarity else "what the model looked at"
        caption = f"device: {described}; time per image: {timings}"
        if similarity:
            drawn = _composites_drawn(dataset, explained_items, figure_rows)
            caption = "\n".join(filter(None, [_similarity_legend(model.center is not None, len(classes)), drawn, caption]))
        figure = comparison_figure(
            methods,
            dataset,
            explained_items[:figure_rows],
            device,
            subject.id2label,
            score_function(vit),
            mean=subject.dataset.image_mean,
            std=subject.dataset.image_std,
            title=f"{name}: {looked_at}, according to each method",
            caption=caption,
            score_name=subject.score_name,
            column_notes={str(e["method"]): specificity_note(float(e["class_specificity"])) for e in summary if "class_specificity" in e},
        )
        save_figure(figure, out / "comparison.png", dpi=130)
        written.append(out / "comparison.png")
    return Report(written, table, skipped)


@dataclass(frozen=True)
class _Subject:
    """The model, its tasks, the classes' names and what its scores are (``"p"``:
    probabilities; ``"cos"``: similarities)."""

    model: Any
    dataset: Any
    id2label: Mapping[int, str]
    score_name: str


#: a class specificity below this in size (under 1% of a map's mass moved over a
#: composite's photos) reads as a map that does not change with the named photo
_SPECIFIC = 0.01


def specificity_note(specificity: float) -> str:
    """What a method's mean class specificity (:func:`~.photo_similarity.class_specificity`)
    says of its maps, with the value, for a column of the figure."""
    shown = f"{round(specificity, 2) or 0.0:.2f}"  # no "-0.00" for a value that rounds to nothing
    if specificity >= _SPECIFIC:
        return f"map moves onto the named photo (class specificity {shown})"
    if specificity <= -_SPECIFIC:
        return f"map moves off the named photo (class specificity {shown})"
    return f"map (nearly) the same whichever photo is named (class specificity {shown})"


def _similarity_legend(centred: bool, references: int) -> str:
    """What the numbers of a similarity's figure are: the row titles' and the columns'."""
    less = ", both less the mean of the references' embeddings" if centred else ""
    return (
        "above each composite: cos, the cosine similarity of the composite's embedding to the named photo's reference view "
        f"(another crop of the photo, mirrored){less}, and its rank among the {references} photos' references; "
        "the cyan outline is the named photo's cell. Class specificity: the sum over a composite's photos of the share of "
        "the map for each photo that lies on that photo's cell, less 1, averaged over the composites (0 when the map does "
        "not change with the named photo; up to 1 for 2 photos, 3 for 4)."
    )


def _composites_drawn(dataset: Dataset, explained: Sequence[int], rows: int) -> str:
    """Which composites a similarity's figure draws of those explained, and what their
    photos show ("" for data other than composites of the package's photos)."""
    if not isinstance(dataset, CompositeTasks):
        return ""
    from ..imagedata.photos import describe_photo

    drawn = list(dict.fromkeys(int(dataset.composite[i]) for i in explained[:rows]))
    total = len({int(dataset.composite[i]) for i in explained})
    photos = dict.fromkeys(dataset.names[p] for c in drawn for p in dataset.composites.photos[c] if p >= 0)
    shown = f"the first {len(drawn)} of the {total} composites explained" if len(drawn) < total else f"the {total} composites explained"
    return f"{shown}, one row per photo named; their photos: " + "; ".join(f"{name}, {describe_photo(name)}" for name in photos) + "."


def _name_of(model: nn.Module) -> str:
    path = getattr(model, "name_or_path", "")
    return Path(path).name if path else type(model).__name__


def _gallery_page(
    path: Path,
    subject: _Subject,
    methods: list[Method],
    rows: list[dict],
    summary: list[dict],
    items: Sequence[int],
    explained: int,
    header: list[str],
    device: torch.device,
    batch_size: int,
    title: str,
) -> None:
    """``report.html``: the header, the summary sortable by any column, and the maps of
    ``items`` (of ``explained`` items; recomputed, ``batch_size`` at a time)."""

    metrics: dict[int, dict[str, dict[str, float]]] = {item: {} for item in items}
    for row in rows:
        if row["item"] in metrics:
            metrics[row["item"]][row["method"]] = {c: row[c] for c in summary_columns() if c in row}
    cards = []  # thumbnails only: a gallery of 200 items holds no full-size maps
    score = score_function(VisionTransformer(subject.model))
    dataset = subject.dataset
    for start in range(0, len(items), batch_size):
        batch = collate([dataset[int(i)] for i in items[start : start + batch_size]])
        x, t = batch.pixel_values.to(device), batch.targets.to(device)
        maps = {method.name: method(x, t).cpu() for method in methods}
        with torch.no_grad():
            scores = score(x).cpu()
        for k, (item, image, row_scores, target) in enumerate(zip(items[start:], x, scores, t.tolist())):
            cards.append(
                gallery_card(
                    to_display_image(image, mean=dataset.image_mean, std=dataset.image_std),
                    {name: method_maps[k] for name, method_maps in maps.items()},
                    f"item {item}: " + class_title(row_scores, target, subject.id2label, subject.score_name).replace("\n", "; "),
                    subject.id2label[target],
                    metrics[item],
                )
            )
    comparison_report(
        summary, summary_columns(), header, [m.name for m in methods], cards, left_out=explained - len(items), title=title
    ).save(path)
