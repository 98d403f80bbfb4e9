"""``captum-gmar compare``: every chosen method and metric on evaluation scenes, on the
user's images (``--data``) or on the similarity of composites of the bundled photos
(``--task similarity``); a results folder written by
:func:`~captum_gmar.evaluation.write_report`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import loading
from ..names import ABLATION_KINDS, METRIC_KEYS, RELEVANCE_MAPS
from .announce import announce, sample_sizes, warn_if_far
from .arguments import choices, folder, int_at_least
from .options import (
    DEFAULTS,
    MODELS_HELP,
    CommandError,
    CompareOptions,
    RunOptions,
    add_again,
    add_center,
    add_methods,
    add_reading,
    add_run_options,
    add_scene_source,
)
from .output import check_output

if TYPE_CHECKING:
    from ..evaluation.data import HubDatasetTasks, ImageFolderTasks, SceneTasks
    from ..imagedata.scenes import Scenes


def add_parser(commands: argparse._SubParsersAction, help: str) -> None:
    """``compare``'s parser, among ``commands``."""
    parser = commands.add_parser("compare", help=help, description=help)
    parser.add_argument(
        "--model",
        default=None,
        help=MODELS_HELP + "; with --task similarity an embedding model (default dinov2-small-backbone) or a classifier's backbone",
    )
    parser.add_argument(
        "--task",
        choices=["classes", "similarity"],
        default="classes",
        help="classes (default): explain the model's classes; similarity: explain the cosine similarity of the embeddings of composites "
        "of the bundled photos to another view of each photo, the photo's cell being the ground truth",
    )
    add_center(parser, "--task similarity")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--scenes", type=int_at_least(1), default=1000, help="evaluation scenes, or composites with --task similarity (default 1000)"
    )
    data.add_argument(
        "--data",
        type=folder,
        default=None,
        help="your images: a folder with one subfolder per class (or a labels.csv), optional masks/ or boxes.csv; or a folder saved by datasets' save_to_disk",
    )
    parser.add_argument(
        "--limit", type=int_at_least(1), default=None, help="with --data: evaluate N items, drawn in an order shuffled by --seed"
    )
    add_methods(parser, DEFAULTS.methods)
    parser.add_argument(
        "--metrics",
        type=choices(METRIC_KEYS, "metric group(s)"),
        default=None,
        help=f"comma-separated, of {', '.join(METRIC_KEYS)} (default: all but sanity; localisation only where there are masks)",
    )
    parser.add_argument(
        "--ablation",
        type=choices(ABLATION_KINDS, "ablation(s)"),
        default=DEFAULTS.ablation,
        help="also GMAR (L1) with one layer's head weights uniform (layers) or only one head's weight its own (heads), paired with gmar-l1 and rollout",
    )
    parser.add_argument(
        "--relevance-map",
        choices=RELEVANCE_MAPS,
        default=DEFAULTS.relevance_map,
        help="how AttnLRP's and CP-LRP's signed relevance becomes their map: its positive part (default), the signed sum, or its absolute value",
    )
    parser.add_argument(
        "--deletion-steps", type=int_at_least(1), default=DEFAULTS.deletion_steps, help="steps of the deletion/insertion curves"
    )
    parser.add_argument(
        "--robustness-scenes", type=int_at_least(0), default=DEFAULTS.robustness_limit, help="explanations scored by infidelity/sensitivity"
    )
    add_scene_source(parser)
    add_reading(parser, "--data")
    add_again(parser, "run whose results.csv", "results")
    add_run_options(parser, "comparison-output")
    parser.set_defaults(options=CompareOptions.from_arguments)


def run(options: CompareOptions) -> None:
    """Every chosen method and metric on evaluation scenes from the test split, on the
    user's data (``--data``), or on composites of the bundled photos."""
    comparison = options.run
    check_output(comparison.out, figure=False, files=results_files(comparison))
    similarity = options.task == "similarity"
    if similarity:
        check_photos()
    model_folder = loading.model_folder(comparison.model, embedding=similarity)  # a bad model folder fails before the data is read
    announce_subject(comparison.model, model_folder, similarity)
    results = Path(comparison.out) / "results.csv"
    if results.is_file() and results.stat().st_size and not (comparison.resume or options.overwrite):
        raise CommandError(f"{results} exists: add --resume to continue that run, or --overwrite to start over")
    if similarity:
        run_comparison(comparison, photo_similarity(comparison, composites=options.scenes))
        return
    if options.data is None:
        from ..imagedata.fashion_mnist import resolve_data_dir
        from ..imagedata.scenes import make_scenes

        resolve_data_dir(options.data_dir)
        scenes = make_scenes(options.scenes, "test", seed=comparison.settings.seed, data_dir=options.data_dir)
        dataset: SceneTasks | ImageFolderTasks | HubDatasetTasks = scene_tasks(scenes, comparison.model, model_folder)
    else:
        dataset = _user_data(options, model_folder)
        warn_if_far(comparison.model, sample_sizes(dataset))
    if not dataset.has_masks:
        if options.metrics_given and "localisation" in comparison.settings.metrics:
            raise CommandError(
                f"--metrics localisation needs masks, and {options.data!r} has none (a masks/ folder, a mask column or a boxes.csv)"
            )
        metrics = tuple(m for m in comparison.settings.metrics if m != "localisation")
        comparison = replace(comparison, settings=replace(comparison.settings, metrics=metrics))
        if os.environ.get("RANK", "0") == "0":  # once, not once per process
            print(f"{options.data} has no masks: localisation metrics are skipped")
    run_comparison(comparison, classifier(comparison, dataset))


def announce_subject(model: str | None, folder: Path, similarity: bool) -> None:
    """The line naming the model and its classes, or for a similarity the bundled photos
    whose reference views stand for them."""
    if similarity:
        from ..imagedata.photos import PHOTOS

        announce(model, folder, list(PHOTOS), "references (another view of each bundled photo)")
    else:
        announce(model, folder, loading.class_names(loading.read_config(folder)))


def results_files(options: RunOptions) -> list[str]:
    """The files ``demo`` and ``compare`` write in ``--out``: the runner's rows and settings,
    and :func:`~captum_gmar.evaluation.write_report`'s files."""
    from ..evaluation.results_folder import RESULTS, report_files
    from ..evaluation.runner import run_file

    return [RESULTS, run_file(RESULTS).name, *report_files(options.figure_rows > 0)]


@dataclass(frozen=True)
class Subject:
    """What a comparison explains: the model, its tasks and the classes' names."""

    model: Any
    dataset: Any
    id2label: dict[int, str]


def classifier(options: RunOptions, dataset: Any) -> Callable[[], Subject]:
    """The model ``--model`` on ``dataset``, loaded when called."""

    def make() -> Subject:
        model = loading.load_model(options.model)
        return Subject(model, dataset, model.config.id2label)

    return make


def photo_similarity(options: RunOptions, composites: int, candidates: int | None = None) -> Callable[[], Subject]:
    """The real-photo similarity benchmark on ``--model``'s embedding, loaded when called
    (``candidates``: see :func:`~captum_gmar.evaluation.photo_similarity.photo_similarity`)."""

    def make() -> Subject:
        from ..evaluation.photo_similarity import photo_similarity
        from ..imagedata.processing import load_processor

        backbone = loading.load_model(options.model, embedding=True)
        processor = load_processor(backbone.name_or_path)
        bench = photo_similarity(backbone, processor, composites, seed=options.settings.seed, center=options.center, candidates=candidates)
        return Subject(bench.model, bench.tasks, dict(enumerate(bench.names)))

    return make


def run_comparison(options: RunOptions, make: Callable[[], Subject]) -> None:
    """Compare on the tasks of ``make()`` (in every process ``torchrun`` started), then, on
    rank 0, write the results folder and print the summary."""
    import torch

    from ..evaluation.distributed import describe_device, process_group
    from ..evaluation.results_folder import write_report
    from ..evaluation.runner import compare
    from ..files import claim_files

    out = Path(options.out)
    with process_group(options.device) as ctx:
        devices = ctx.all_gather(describe_device(ctx.device))
        described = (
            devices[0]
            if ctx.world_size == 1
            else f"{ctx.world_size} processes: " + ", ".join(f"rank {r} {d}" for r, d in enumerate(devices))
        )
        if ctx.rank == 0:  # the only process that writes to --out
            claim_files(out, results_files(options))
        subject = make()
        compare(
            subject.model,
            subject.dataset,
            options.settings,
            results=out / "results.csv",
            resume=options.resume,
            device=options.device,
            workers=options.workers,
        )
        if ctx.rank != 0:
            return
        print(_writing(options, len(subject.dataset)), flush=True)  # the maps are computed again: this takes a while
        report = write_report(
            out,
            subject.model,
            subject.dataset,
            model_name=loading.model_name(options.model),
            id2label=subject.id2label,
            explained="cosine similarity of the embeddings" + (" less the references mean" if options.center == "references" else ""),
            device=ctx.device,
            device_description=f"{described}, torch {torch.__version__}",
            command=f"captum-gmar {' '.join(sys.argv[1:])}",
            figure_rows=options.figure_rows,
            gallery=options.gallery,
        )
    print(report.table)
    for line in report.skipped:
        print(line)
    print(f"wrote {', '.join(map(str, report.files))}")


def _writing(options: RunOptions, items: int) -> str:
    """What :func:`~captum_gmar.evaluation.write_report` is about to write for a run on
    ``items`` explanation tasks."""
    gallery = f"report.html (maps of {min(options.gallery, items)} items)"
    figure = f" and comparison.png ({min(options.figure_rows, items)} rows)" if options.figure_rows else ""
    return f"writing summary.md, summary.json, {gallery}{figure} in {options.out}, computing their maps again ..."


def scene_tasks(scenes: Scenes, spec: str | None, model_folder: Path) -> SceneTasks:
    """The scenes' explanation tasks for the model ``--model``: as ``vit-tiny`` takes them,
    or through the model's own image processor (``dinov2-small``'s resizes them)."""
    from ..evaluation.data import SceneTasks

    if spec in (None, "vit-tiny"):
        return SceneTasks(scenes)
    from ..imagedata.processing import load_processor

    return SceneTasks(scenes, load_processor(model_folder))


def check_photos() -> None:
    """The bundled photos need scikit-image and scikit-learn: say so before any work."""
    import importlib.util

    missing = [name for name in ("skimage", "sklearn") if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(
            f'the bundled photos need scikit-image and scikit-learn ({", ".join(missing)} missing): pip install "captum-gmar[photos]"'
        )


def _user_data(options: CompareOptions, model_folder: Path) -> ImageFolderTasks | HubDatasetTasks:
    """``--data`` read with the model's image processor; every file is checked here, before
    the model loads (images are decoded later, batch by batch)."""
    config = loading.read_config(model_folder)
    if not (model_folder / "preprocessor_config.json").is_file():
        raise CommandError(
            f"model folder {str(model_folder)!r} has no image processor (preprocessor_config.json): "
            "save the model's with processor.save_pretrained(DIR)"
        )
    from ..evaluation.data import open_dataset
    from ..imagedata.processing import load_processor

    assert options.data is not None  # the caller reads scenes otherwise
    processor = load_processor(model_folder)
    return open_dataset(
        options.data,
        processor,
        config["id2label"],
        config.get("image_size", 224),
        limit=options.limit,
        seed=options.run.settings.seed,
        skip_unreadable=options.skip_unreadable,
        follow_links=options.follow_links,
    )
