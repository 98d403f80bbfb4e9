"""The ``captum-gmar`` command line: ``demo``, ``compare``, ``explain`` and ``export-scenes``.

Every argument is checked by the parser, and every file named on the command line before
any model loads, so a mistake costs a one-line error, not a run. torch, transformers
and matplotlib are imported only once the arguments are good: ``--help``, ``--version``
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import InsufficientMemoryError, NonFiniteError, RankFailedError, TooSlowError, UnsupportedModelError
from .names import (
    ABLATION_KINDS,
    DEFAULT_METRIC_KEYS,
    EMBEDDING_MODEL_CLASSES,
    METHOD_KEYS,
    METRIC_KEYS,
    REFERENCE_MODELS,
    RELEVANCE_MAPS,
    SUPPORTED_FAMILIES,
    SUPPORTED_MODEL_CLASSES,
    ZERO_SHOT_MODEL_CLASSES,
)

if TYPE_CHECKING:  # imported where used, so that --help stays fast
    import torch
    from matplotlib.figure import Figure
    from PIL import Image

    from .evaluation.data import HubDatasetTasks, ImageFolderTasks, SceneTasks
    from .evaluation.methods import Method
    from .imagedata.scenes import Scenes
    from .vit.blocks import ForeignModule

#: errors reported as one line (``captum-gmar CMD: error: ...``, exit status 2)
_USER_ERRORS = (InsufficientMemoryError, NonFiniteError, TooSlowError, UnsupportedModelError, FileNotFoundError, ValueError)
#: ``--relevance-map`` in the words of the report's header
_RELEVANCE_MAP_WORDS = {
    "positive": "the positive part of the relevance",
    "signed": "the signed relevance",
    "abs": "the absolute value of the relevance",
}
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
#: the list, in each results folder of ``demo`` and ``compare``, of the files they wrote
#: there: the only ones a later run may replace
MANIFEST = ".captum-gmar-output.json"
#: the most items a comparison's report.html shows the maps of (the page stays a few MB)
GALLERY_MAX = 200
#: classes explained on an ``explain --out page.html`` without ``--target``: the top ones
PAGE_CLASSES = 3


class CommandError(Exception):
    """A problem with the command's arguments or files, reported as ``error: ...``."""


# Argument types: each turns a string into a value or raises ArgumentTypeError, which the
# parser reports with the usage line.


def _int_at_least(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def _at_most(parse: Callable[[str], int], most: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        value = parse(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, got {value}")
        return value

    return check


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto (CUDA when available), cpu, cuda or cuda:N")
    return text


def _folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return text


def _choices(allowed: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        keys = [key.strip() for key in text.split(",") if key.strip()]
        unknown = [key for key in keys if key not in allowed]
        if unknown or not keys:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
        return keys

    return parse


# Checks of files and models, before anything is loaded.


def model_folder(spec: str | None, embedding: bool = False) -> Path:
    """The folder holding ``config.json`` for ``--model``: a reference model's name, a
    folder saved with ``save_pretrained``, or a Hugging Face model id in the local hub
    cache (never downloaded); checks that it holds weights of a supported class, reading
    only ``config.json``: a classifier, or with ``embedding`` (a similarity to explain) an
    embedding model, a zero-shot model or a classifier (whose backbone is then used)."""
    if spec is None or spec in REFERENCE_MODELS:  # bundled: the DINOv2 weights are built in the user cache on first load
        spec = spec or "vit-tiny"
        folder = Path(__file__).resolve().parent / REFERENCE_MODELS[spec]
    else:
        folder = Path(spec) if Path(spec).exists() else hub_snapshot(spec) or Path(spec)
        if not (folder / "config.json").is_file():
            names = ", ".join(REFERENCE_MODELS)
            raise CommandError(
                f"model {spec!r} is neither a reference model ({names}), nor a folder with a config.json (save one with save_pretrained), "
                f"nor a model in the Hugging Face cache (download one with: hf download MODEL_ID)"
            )
        if not any((folder / name).is_file() for name in _WEIGHTS):
            raise CommandError(
                f"model folder {spec!r} has a config.json but no weights ({' or '.join(_WEIGHTS[::2])}); save the model with save_pretrained"
            )
    architectures = set(_config(folder).get("architectures") or [])
    embedders = set(EMBEDDING_MODEL_CLASSES) | set(ZERO_SHOT_MODEL_CLASSES)
    if architectures & embedders and not embedding:
        raise CommandError(
            f"model {spec!r} is a {', '.join(sorted(architectures))}, which returns an embedding, not classes: "
            "explain its similarity to reference images with --similar-to (explain) or --task similarity (compare)"
        )
    if architectures and not architectures & (set(SUPPORTED_MODEL_CLASSES) | (embedders if embedding else set())):
        swin = " (windowed attention has no global map to roll out)" if any("swin" in a.lower() for a in architectures) else ""
        embeddings = f"; for similarity, the embedding models {', '.join(EMBEDDING_MODEL_CLASSES)}" if embedding else ""
        raise CommandError(
            f"model {spec!r} is a {', '.join(sorted(architectures))}, which this package cannot explain{swin}; "
            f"supported: {SUPPORTED_FAMILIES} image classifiers ({', '.join(SUPPORTED_MODEL_CLASSES)}){embeddings}"
        )
    return folder


def hub_snapshot(repo_id: str) -> Path | None:
    """The folder of model ``repo_id`` (``"google/vit-base-patch16-224"``) in the local
    Hugging Face cache (``HF_HUB_CACHE``), as ``hf download`` left it; ``None`` where it
    is not cached or ``repo_id`` is not a model id. Nothing is downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        return None


def _config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CommandError(f"cannot read {folder / 'config.json'}: {error}") from error


def check_output(path: str, figure: bool, files: Sequence[str] = ()) -> None:
    """``--out`` before any work, in a place that can be written (the missing folders of
    its path are made later): a figure file in a format matplotlib writes, or an ``.html``
    page (``figure=True``; one that exists is replaced, as named), or a results folder that is
    new, empty or written by this package (its :data:`MANIFEST`), where none of
    ``files`` exists unless this package wrote it. A symbolic link is refused where a file
    would be written: this package replaces its files, it never writes through a link
    (a results folder reached through a link is fine)."""
    from matplotlib.backend_bases import FigureCanvasBase  # light: no backend, no pyplot

    out = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.is_symlink() and figure:
        raise CommandError(
            f"--out {path!r} is a symbolic link (to {os.readlink(out)!r}), which captum-gmar does not write through: name a file"
        )
    if out.is_symlink() and not out.exists():
        raise CommandError(
            f"--out {path!r} is a symbolic link to {os.readlink(out)!r}, which does not exist: name a folder for the results"
        )
    if figure:
        if out.is_dir():
            raise CommandError(f"--out {path!r} is a folder: name the figure file, e.g. {str(out / 'explanation.png')!r}")
        if out.suffix.lower().lstrip(".") not in {*formats, "html"}:
            raise CommandError(
                f"--out {path!r}: the figure's format comes from its extension, one of {', '.join('.' + f for f in sorted(formats))}, "
                "or .html for an interactive page"
            )
    elif out.exists() and not out.is_dir():
        raise CommandError(f"--out {path!r} is a file: name a folder for the results")
    elif out.suffix.lower().lstrip(".") in formats:
        raise CommandError(
            f"--out {path!r} names a figure, but --out is the folder of the results (the figure is its comparison.png): "
            f"name a folder, e.g. {str(out.with_suffix(''))!r}"
        )
    elif out.is_dir() and any(out.iterdir()):
        for name in (MANIFEST, *files):
            if (out / name).is_symlink():
                raise CommandError(
                    f"--out {path!r} holds {name!r} as a symbolic link (to {os.readlink(out / name)!r}), which captum-gmar "
                    "does not write through: remove the link, or name a new or empty folder"
                )
        _check_own_files(path, files)
    existing = out.parent if figure else out
    while not existing.exists():  # the nearest part of the path that exists must be a writable folder
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"--out {path!r}: {str(existing)!r} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK) or (figure and out.exists() and not os.access(out, os.W_OK)):
        raise CommandError(f"--out {path!r}: {str(out if figure and out.exists() else existing)!r} is not writable")


def _check_own_files(path: str, files: Sequence[str]) -> None:
    """Refuse a non-empty results folder without this package's :data:`MANIFEST` (naming
    its first files), or one where a file of ``files`` exists that the manifest does not
    list: only files this package wrote are ever replaced."""
    out = Path(path)
    if not (out / MANIFEST).is_file():
        names = sorted(entry.name for entry in out.iterdir())
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise CommandError(f"--out {path!r} holds files captum-gmar did not write ({shown}): name a new or empty folder")
    own = _own_files(out)
    foreign = [name for name in files if (out / name).exists() and name not in own]
    if foreign:
        raise CommandError(
            f"--out {path!r} holds {foreign[0]!r}, which captum-gmar did not write and does not replace: move it, or name a new or empty folder"
        )


def _own_files(out: Path) -> set[str]:
    """The files this package wrote in the results folder ``out``, as its :data:`MANIFEST` lists them."""
    try:
        return set(json.loads((out / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CommandError(f"cannot read {str(out / MANIFEST)!r} ({error!r}): name a new or empty folder for --out") from error


def _claim_files(out: Path, files: Sequence[str]) -> None:
    """List ``files`` in ``out``'s :data:`MANIFEST` (making the folder), before any of
    them is written, so that a run cut short leaves them marked as this package's."""
    from .evaluation.files import write_atomic

    own = _own_files(out) if (out / MANIFEST).is_file() else set()
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(
        out / MANIFEST, json.dumps({"written_by": f"captum-gmar {__version__}", "files": sorted(own | set(files))}, indent=2) + "\n"
    )


def _results_files(args: argparse.Namespace) -> list[str]:
    """The files ``demo`` and ``compare`` write in ``--out`` (``results.run.json`` is the
    runner's :func:`~captum_gmar.evaluation.runner.run_file` of ``results.csv``)."""
    return [
        "results.csv",
        "results.run.json",
        "summary.md",
        "summary.json",
        "report.html",
        *(["comparison.png"] if args.figure_rows else []),
    ]


def class_index(target: str, id2label: dict[str, str]) -> int:
    """``--target``: a class index, or a class name of ``id2label`` (case-insensitive)."""
    if re.fullmatch(r"-?\d+", target):
        index = int(target)
        if not 0 <= index < len(id2label):
            raise CommandError(f"--target {index} is out of range: the model has {len(id2label)} classes (0..{len(id2label) - 1})")
        return index
    by_name = {name.lower(): int(index) for index, name in id2label.items()}
    if target.lower() not in by_name:
        raise CommandError(f"--target {target!r} is not a class of this model; its classes: {', '.join(id2label.values())}")
    return by_name[target.lower()]


def read_image(path: str, patch_size: int | None = None) -> Image.Image:
    """The image file as RGB (a PIL image); with ``patch_size`` (an image explained at its
    own size, ``--native-resolution``) at least one patch in each direction."""
    from .imagedata.folder import not_a_file
    from .imagedata.folder import read_image as read_rgb

    why = not_a_file(path)
    if why:
        raise CommandError(f"image {path!r} {why}")
    rgb = read_rgb(".", path)
    if patch_size is not None and min(rgb.size) < patch_size:
        raise CommandError(
            f"image {path!r} is {rgb.width}x{rgb.height} px, smaller than one {patch_size}x{patch_size} patch of the model: "
            "drop --native-resolution to explain it at the model's size"
        )
    return rgb


# Commands.


def load_model(spec: str | None, embedding: bool = False) -> ForeignModule:
    """The model of ``--model``, in eval mode (offline); with ``embedding``, the model whose
    embedding a similarity compares: an embedding or zero-shot model as it is, a
    classifier's backbone (its ``base_model``)."""
    if spec is None or spec in REFERENCE_MODELS:
        from .reference import load_reference_model

        model = load_reference_model(name=spec or "vit-tiny")
    else:
        import transformers

        folder = model_folder(spec, embedding)
        named = [
            name for name in _config(folder).get("architectures") or [] if name in (*EMBEDDING_MODEL_CLASSES, *ZERO_SHOT_MODEL_CLASSES)
        ]
        cls = getattr(transformers, named[0]) if named else transformers.AutoModelForImageClassification
        try:  # from the folder model_folder checked (a cached model's snapshot)
            model = cls.from_pretrained(folder, local_files_only=True).eval()
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot load the model in {spec!r}: {error}") from error
    if embedding and type(model).__name__ not in (*EMBEDDING_MODEL_CLASSES, *ZERO_SHOT_MODEL_CLASSES):
        backbone = getattr(model, "base_model", model)
        if backbone is model or type(backbone).__name__ not in EMBEDDING_MODEL_CLASSES:
            raise CommandError(
                f"{_model_name(spec)} ({type(model).__name__}) has no backbone among {', '.join(EMBEDDING_MODEL_CLASSES)} whose embedding could be compared"
            )
        return backbone
    return model


def _device_and_description(name: str) -> tuple[torch.device, str]:
    import torch

    from .evaluation.distributed import Launch, describe_device, select_device

    device = select_device(name, Launch(), torch.cuda.device_count())
    return device, f"{describe_device(device)}, torch {torch.__version__}"


@dataclass(frozen=True)
class _Subject:
    """What a comparison explains: the model, its tasks, the classes' names, what its
    scores are (``"p"``: probabilities; ``"cos"``: similarities) and the deletion baseline."""

    model: Any
    dataset: Any
    id2label: dict[int, str]
    score_name: str = "p"
    baseline: str = "blur"


def _classifier(args: argparse.Namespace, dataset: Any) -> Callable[[], _Subject]:
    def make() -> _Subject:
        model = load_model(args.model)
        return _Subject(model, dataset, model.config.id2label)

    return make


def _photo_similarity(args: argparse.Namespace, composites: int) -> Callable[[], _Subject]:
    """The real-photo similarity benchmark on ``--model``'s embedding; deletion to the mean
    image, since a blurred photo keeps most of its similarity (docs/similarity.md)."""

    def make() -> _Subject:
        from transformers import AutoImageProcessor

        from .evaluation.photo_similarity import photo_similarity

        backbone = load_model(args.model, embedding=True)
        processor = AutoImageProcessor.from_pretrained(backbone.name_or_path, local_files_only=True)
        bench = photo_similarity(backbone, processor, composites, seed=args.seed, center=args.center)
        return _Subject(bench.model, bench.tasks, dict(enumerate(bench.names)), score_name="cos", baseline="zero")

    return make


def _run_comparison(args: argparse.Namespace, make: Callable[[], _Subject], methods: list[str], metrics: list[str]) -> None:
    """Compare on the tasks of ``make()`` (in every process ``torchrun`` started), then, on
    rank 0, summarise ``results.csv`` into summary.md / summary.json and draw the figure."""
    import torch

    from .evaluation.distributed import describe_device, process_group
    from .evaluation.runner import compare

    out = Path(args.out)
    with process_group(args.device) as ctx:
        devices = ctx.all_gather(describe_device(ctx.device))
        described = (
            devices[0]
            if ctx.world_size == 1
            else f"{ctx.world_size} processes: " + ", ".join(f"rank {r} {d}" for r, d in enumerate(devices))
        )
        described += f", torch {torch.__version__}"
        if ctx.rank == 0:  # the only process that writes to --out
            _claim_files(out, _results_files(args))
        subject = make()
        compare(
            subject.model,
            subject.dataset,
            methods=methods,
            metrics=metrics,
            device=args.device,
            batch_size=args.batch_size,
            robustness_limit=args.robustness_scenes,
            ig_steps=args.ig_steps,
            ig_internal_batch_size=args.ig_internal_batch_size,
            deletion_steps=args.deletion_steps,
            seed=args.seed,
            results=out / "results.csv",
            resume=args.resume,
            workers=args.workers,
            ablation=args.ablation,
            baseline=subject.baseline,
            relevance_map=args.relevance_map,
        )
        if ctx.rank == 0:
            _report(args, subject, methods, ctx.device, described)


def _report(args: argparse.Namespace, subject: _Subject, methods: list[str], device: torch.device, described: str) -> None:
    from .evaluation.data import CompositeTasks
    from .evaluation.files import write_atomic
    from .evaluation.methods import build_methods
    from .evaluation.photo_similarity import add_class_specificity
    from .evaluation.report import (
        ablation_markdown,
        ablation_table,
        comparison_figure,
        markdown_table,
        read_csv,
        summarize,
        summary_columns,
    )
    from .evaluation.runner import run_file, score_function
    from .vit.model import VisionTransformer

    out = Path(args.out)
    rows = list(read_csv(out / "results.csv"))
    summary = summarize(rows)
    if isinstance(subject.dataset, CompositeTasks) and "mass_inside" in rows[0]:
        summary = add_class_specificity(summary, rows)
    unreadable = json.loads(run_file(out / "results.csv").read_text()).get("unreadable_count", 0)
    skipped = [f"{unreadable} unreadable image(s) skipped, listed in {run_file(out / 'results.csv')}"] if unreadable else []
    if not rows:
        raise CommandError(f"no image could be read: {skipped[0]}")
    what = [f"Model: {_model_name(args.model)}"]
    if subject.score_name == "cos":
        what.append(f"explained: cosine similarity of the embeddings{' less the references mean' if args.center == 'references' else ''}")
    what += [f"deletion/insertion baseline: {'the mean image' if subject.baseline == 'zero' else subject.baseline}"]
    if {"attnlrp", "cplrp"} & set(methods):
        what.append(f"AttnLRP and CP-LRP map: {_RELEVANCE_MAP_WORDS[args.relevance_map]}")
    what.append(f"device: {described}")
    header = "; ".join([*what, f"command: `captum-gmar {' '.join(sys.argv[1:])}`", *skipped]) + "\n\n"
    table = markdown_table(summary)
    if args.ablation:
        ablation = ablation_table(rows)
        columns = [c for c in summary_columns() if any(c in entry for entry in ablation.values())]
        table += "\nGMAR's ablations, paired on the same items with GMAR (L1) and with attention rollout:\n\n" + ablation_markdown(
            ablation, columns
        )
    write_atomic(out / "summary.md", header + table)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    model, dataset = subject.model, subject.dataset
    built = build_methods(
        model, methods, ig_steps=args.ig_steps, ig_internal_batch_size=args.ig_internal_batch_size, relevance_map=args.relevance_map
    )
    _gallery_report(args, subject, built, rows, summary, [*what, f"command: captum-gmar {' '.join(sys.argv[1:])}", *skipped], device)
    written = [out / "results.csv", out / "summary.md", out / "report.html"]
    if args.figure_rows:
        timings = ", ".join(f"{entry['method']} {entry['seconds_per_image'] * 1000:.1f} ms" for entry in summary)
        looked_at = "what made each composite similar to the named photo" if subject.score_name == "cos" else "what the model looked at"
        figure = comparison_figure(
            built,
            dataset,
            sorted({row["item"] for row in rows})[: args.figure_rows],  # explained items: not the skipped ones
            device,
            subject.id2label,
            score_function(VisionTransformer(model)),
            mean=dataset.image_mean,
            std=dataset.image_std,
            title=f"{_model_name(args.model)}: {looked_at}, according to each method",
            caption=f"device: {described}; time per image: {timings}",
            score_name=subject.score_name,
        )
        save_figure(figure, out / "comparison.png", dpi=130)
        written.append(out / "comparison.png")
    print(table)
    for line in skipped:
        print(line)
    print(f"wrote {', '.join(map(str, written))}")


def _gallery_report(
    args: argparse.Namespace,
    subject: _Subject,
    methods: list[Method],
    rows: list[dict],
    summary: list[dict],
    header: list[str],
    device: torch.device,
) -> None:
    """``report.html``: the settings, the summary sortable by any column, and the maps of
    the first ``--gallery`` explained items (recomputed, ``--batch-size`` at a time)."""
    import torch

    from .evaluation.data import collate
    from .evaluation.report import class_title, summary_columns
    from .evaluation.runner import score_function
    from .pages import comparison_report, gallery_card
    from .visualization import to_display_image
    from .vit.model import VisionTransformer

    explained = sorted({row["item"] for row in rows})  # not the skipped ones
    items = explained[: args.gallery]
    metrics: dict[int, dict[str, dict[str, float]]] = {item: {} for item in items}
    for row in rows:
        if row["item"] in metrics:
            metrics[row["item"]][row["method"]] = {c: row[c] for c in summary_columns() if c in row}
    cards = []  # thumbnails only: a gallery of 200 items holds no full-size maps
    score = score_function(VisionTransformer(subject.model))
    dataset = subject.dataset
    for start in range(0, len(items), args.batch_size):
        batch = collate([dataset[int(i)] for i in items[start : start + args.batch_size]])
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
        summary,
        summary_columns(),
        header,
        [m.name for m in methods],
        cards,
        left_out=len(explained) - len(items),
        title=f"{_model_name(args.model)}: comparison of {', '.join(m.name for m in methods)}",
    ).save(Path(args.out) / "report.html")


def _model_name(spec: str | None) -> str:
    if spec is None:
        return "vit-tiny"
    return Path(spec).name if Path(spec).is_dir() else spec  # a reference model's name or a hub model id as given


def _scene_tasks(scenes: Scenes, spec: str | None, folder: Path) -> SceneTasks:
    """The scenes' explanation tasks for the model ``--model``: as ``vit-tiny`` takes them,
    or through the model's own image processor (``dinov2-small``'s resizes them)."""
    from .evaluation.data import SceneTasks

    if spec in (None, "vit-tiny"):
        return SceneTasks(scenes)
    from transformers import AutoImageProcessor

    return SceneTasks(scenes, AutoImageProcessor.from_pretrained(folder, local_files_only=True))


def cmd_demo(args: argparse.Namespace) -> None:
    """GMAR, rollout and IG on a reference model's bundled scenes; for
    ``dinov2-small-backbone``, GMAR, rollout and AttnLRP on composites of real photos."""
    check_output(args.out, figure=False, files=_results_files(args))
    args.robustness_scenes, args.deletion_steps, args.resume, args.workers, args.ablation = 0, 16, False, 0, []
    if args.model == "dinov2-small-backbone":
        _check_photos()
        args.center = "references"
        _run_comparison(args, _photo_similarity(args, composites=4), ["gmar-l1", "rollout", "attnlrp"], ["localisation"])
        return
    from .reference import load_sample_scenes

    tasks = _scene_tasks(load_sample_scenes(args.model), args.model, model_folder(args.model))
    _run_comparison(args, _classifier(args, tasks), ["gmar-l1", "rollout", "ig"], ["localisation"])


def cmd_compare(args: argparse.Namespace) -> None:
    """Every chosen method and metric on evaluation scenes from the test split, or on the
    user's data (``--data``)."""
    check_output(args.out, figure=False, files=_results_files(args))
    if args.ablation and not {"gmar-l1", "rollout"} <= set(args.methods):
        raise CommandError("--ablation is paired with GMAR (L1) and attention rollout: --methods must include gmar-l1 and rollout")
    similarity = args.task == "similarity"
    if similarity:
        if args.data is not None:
            raise CommandError("--task similarity runs on composites of the bundled photos (--scenes of them); --data is for classes")
        args.model = args.model or "dinov2-small-backbone"
        _check_photos()
    elif args.center != "none":
        raise CommandError("--center applies to --task similarity (it centres the embeddings the similarity compares)")
    folder = model_folder(args.model, embedding=similarity)  # a bad model folder fails before the data is read
    if args.data is None and args.limit is not None:
        raise CommandError("--limit applies to --data; the number of scenes is --scenes")
    if args.data is None and args.skip_unreadable:
        raise CommandError("--skip-unreadable applies to --data: the evaluation scenes are generated, not read from image files")
    if args.data is None and args.follow_links:
        raise CommandError("--follow-links applies to --data: the evaluation scenes are generated, not read from image files")
    if args.data is not None and args.data_dir is not None:
        raise CommandError("--data-dir is the Fashion-MNIST folder that scenes are drawn from; it does not apply with --data")
    results = Path(args.out) / "results.csv"
    if results.is_file() and results.stat().st_size and not (args.resume or args.overwrite):
        raise CommandError(f"{results} exists: add --resume to continue that run, or --overwrite to start over")
    metrics = args.metrics or list(DEFAULT_METRIC_KEYS)
    if similarity:
        _run_comparison(args, _photo_similarity(args, composites=args.scenes), args.methods, metrics)
        return
    if args.data is None:
        from .imagedata.fashion_mnist import resolve_data_dir
        from .imagedata.scenes import make_scenes

        resolve_data_dir(args.data_dir)
        dataset: SceneTasks | ImageFolderTasks | HubDatasetTasks = _scene_tasks(
            make_scenes(args.scenes, "test", seed=args.seed, data_dir=args.data_dir), args.model, folder
        )
    else:
        dataset = _user_data(args, folder)
    if not dataset.has_masks:
        if args.metrics and "localisation" in args.metrics:
            raise CommandError(
                f"--metrics localisation needs masks, and {args.data!r} has none (a masks/ folder, a mask column or a boxes.csv)"
            )
        metrics = [m for m in metrics if m != "localisation"]
        if os.environ.get("RANK", "0") == "0":  # once, not once per process
            print(f"{args.data} has no masks: localisation metrics are skipped")
    _run_comparison(args, _classifier(args, dataset), args.methods, metrics)


def _check_photos() -> None:
    """The bundled photos need scikit-image and scikit-learn: say so before any work."""
    import importlib.util

    missing = [name for name in ("skimage", "sklearn") if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(
            f'the bundled photos need scikit-image and scikit-learn ({", ".join(missing)} missing): pip install "captum-gmar[photos]"'
        )


def _user_data(args: argparse.Namespace, folder: Path) -> ImageFolderTasks | HubDatasetTasks:
    """``--data`` read with the model's image processor; every file is checked here, before
    the model loads (images are decoded later, batch by batch)."""
    config = _config(folder)
    if not (folder / "preprocessor_config.json").is_file():
        raise CommandError(
            f"model folder {str(folder)!r} has no image processor (preprocessor_config.json): save the model's with processor.save_pretrained(DIR)"
        )
    from transformers import AutoImageProcessor

    from .evaluation.data import open_dataset

    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    return open_dataset(
        args.data,
        processor,
        config["id2label"],
        config.get("image_size", 224),
        limit=args.limit,
        seed=args.seed,
        skip_unreadable=args.skip_unreadable,
        follow_links=args.follow_links,
    )


def cmd_export_scenes(args: argparse.Namespace) -> None:
    """Write N test-split scenes as an image folder with a mirrored masks/ tree."""
    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"{args.dir!r} exists and is not an empty folder: export into a new one")
    from .imagedata.fashion_mnist import CLASS_NAMES, resolve_data_dir
    from .imagedata.folder import export_scenes
    from .imagedata.scenes import make_scenes

    resolve_data_dir(args.data_dir)
    scenes = make_scenes(args.n, "test", seed=args.seed, data_dir=args.data_dir)
    written = export_scenes(scenes, out, CLASS_NAMES)
    print(
        f"wrote {written} images ({args.n} scenes, {int((scenes.num_items == 2).sum())} with two items, each written once per item) and their masks to {out}"
    )


def cmd_explain(args: argparse.Namespace) -> None:
    """Explain one image file with the chosen methods: a class (or the predicted one), or
    with ``--similar-to`` its similarity to each reference image."""
    check_output(args.out, figure=True)
    for path in [args.image, *(args.similar_to or [])]:  # the same file under any name: a hard link, a path through a link
        if os.path.exists(args.out) and os.path.exists(path) and os.path.samefile(args.out, path):
            raise CommandError(f"--out {args.out!r} is the image {path!r}, which the figure would replace: name another file")
    page = Path(args.out).suffix.lower() == ".html"
    similarity = args.similar_to is not None
    if similarity and args.target is not None:
        raise CommandError("--target names a class; with --similar-to each reference image is explained in turn")
    if not similarity and args.center != "none":
        raise CommandError("--center applies to --similar-to (it centres the embeddings the similarity compares)")
    folder = model_folder(args.model, embedding=similarity)
    config = _config(folder)
    patch_size = config.get("patch_size", 1)
    patch_side = patch_size if isinstance(patch_size, int) else min(patch_size)
    least = patch_side if args.native_resolution else None  # else the image processor resizes any image to the model's size
    image = read_image(args.image, least)
    references = [read_image(path, least) for path in args.similar_to or []]
    target = None if similarity or args.target is None else class_index(args.target, config["id2label"])
    device, described = _device_and_description(args.device)
    model = load_model(args.model, embedding=similarity).to(device)

    import torch
    from transformers import AutoImageProcessor

    from .evaluation.methods import build_methods
    from .evaluation.report import class_title
    from .evaluation.runner import score_function
    from .visualization import comparison_grid, to_display_image
    from .vit.model import VisionTransformer

    processor = AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    options = _resize_options(processor, model, args.native_resolution)
    pixel_values = processor(images=image, return_tensors="pt", **options)["pixel_values"]
    if similarity:
        from .vit.similarity import SimilarityModel, embed_images

        embeddings = torch.cat(
            [embed_images(model, processor(images=r, return_tensors="pt", **options)["pixel_values"].to(device)) for r in references]
        )
        model = SimilarityModel(model, embeddings, embeddings.mean(0) if args.center == "references" else None)
    methods = build_methods(model, args.methods)
    for method in methods:  # an image too large (or too slow) for a method fails before the prediction's pass
        if hasattr(method.attribution, "check_memory"):  # the package's methods; Captum's have no estimate
            try:
                method.attribution.check_memory(pixel_values.shape)
            except (InsufficientMemoryError, TooSlowError) as error:
                hint = "; or drop --native-resolution to explain it at the model's size" if args.native_resolution else ""
                raise CommandError(f"{error}{hint}") from error
    x = pixel_values.to(device)
    with torch.no_grad():
        scores = score_function(VisionTransformer(model))(x)[0].cpu()
    if similarity:
        id2label = {k: Path(path).name for k, path in enumerate(args.similar_to)}
        for k, name in id2label.items():
            print(f"similarity to {name}: cos {scores[k]:.3f}{' (centred)' if args.center == 'references' else ''}")
        targets = list(id2label)
    else:
        id2label = model.config.id2label
        predicted = int(scores.argmax())
        print(f"predicted: {id2label[predicted]} (class {predicted}), p {scores[predicted]:.3f}")
        targets = [predicted if target is None else target]
        if page and target is None:  # a page has room for the top classes: a select chooses among them
            targets = scores.topk(min(PAGE_CLASSES, len(scores))).indices.tolist()
        if targets[0] != predicted:
            print(f"explaining: {id2label[targets[0]]} (class {targets[0]}), p {scores[targets[0]]:.3f}")
    maps, head_weights, timings = {}, {}, []
    rows = x.expand(len(targets), -1, -1, -1)  # one row per explained class or reference
    for method in methods:
        start = time.perf_counter()
        method_maps, weights = method.maps_and_head_weights(rows, torch.tensor(targets, device=device))
        maps[method.name] = method_maps.cpu()
        if weights is not None:
            head_weights[method.name] = weights.cpu()
        seconds = time.perf_counter() - start
        timings.append(f"{method.name} {seconds:.2f} s")
        print(f"{method.name}: {seconds:.3f} s")
    shown = to_display_image(pixel_values[0], processor.image_mean, processor.image_std)
    height, width = pixel_values.shape[-2:]
    score_name = "cos" if similarity else "p"
    title = f"{Path(args.image).name} ({height}x{width} px as the model saw it)" + (
        ": why it is similar to each reference" if similarity else ""
    )
    caption = f"model: {_model_name(args.model)}; device: {described}; {', '.join(timings)}"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if page:
        from .pages import explanation_page

        top = scores.topk(min(PAGE_CLASSES, len(scores))).indices.tolist() if not similarity else list(id2label)
        explanation_page(
            shown,
            maps,
            [class_title(scores, t, id2label, score_name).split("\n")[0] for t in targets],  # the page lists the top scores
            head_weights=head_weights,
            scores=[(id2label[t], float(scores[t])) for t in top],
            score_name=score_name,
            title=title,
            caption=caption,
        ).save(args.out)
        print(f"wrote {args.out}")
        return
    figure = comparison_grid(
        [shown] * len(targets),
        maps,
        row_titles=[class_title(scores, t, id2label, score_name) for t in targets],
        cell_size=2.6,
        title=title,
        caption=caption,
    )
    save_figure(figure, args.out, dpi=150)
    print(f"wrote {args.out}")


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """Save ``figure`` to ``path`` in the format of its extension, replacing the file at once
    (:func:`~captum_gmar.evaluation.files.write_atomic`: a symbolic link there is replaced, not written through)."""
    import io

    from .evaluation.files import write_atomic

    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".").lower(), dpi=dpi)
    write_atomic(path, buffer.getvalue())


def _resize_options(processor: Any, model: ForeignModule, native: bool) -> dict[str, Any]:
    """The image processor's options: its own resizing; the model's training size where the
    processor does not resize; none with ``--native-resolution``."""
    if native:
        return {"do_resize": False, "do_center_crop": False}
    from .evaluation.data import processor_options

    return processor_options(processor, model.config.image_size)


def _add_run_options(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--device", type=_device, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=32, help="explanations per batch (default 32)")
    parser.add_argument("--ig-steps", type=_int_at_least(1), default=50, help="IntegratedGradients steps (default 50)")
    parser.add_argument(
        "--ig-internal-batch-size",
        type=_int_at_least(1),
        default=None,
        help="images per IG pass (default: every step of the batch at once; demo: 100)",
    )
    parser.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="seed of the scenes, of the order of --data and of the metrics' noise (default 0)"
    )
    parser.add_argument("--figure-rows", type=_int_at_least(0), default=6, help="explanations drawn in the figure, 0 for none (default 6)")
    parser.add_argument(
        "--gallery",
        type=_at_most(_int_at_least(0), GALLERY_MAX),
        default=48,
        help=f"explained items whose maps report.html shows, at most {GALLERY_MAX} (default 48; the page says how many more there were)",
    )
    parser.add_argument(
        "--out",
        default=out,
        help=f"folder of the results, made if missing (default {out}); not a figure file: the figure is its comparison.png. "
        "An existing folder must be empty or one captum-gmar wrote",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captum-gmar", description="GMAR attributions for Hugging Face vision transformers")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    models = (
        f"a reference model ({', '.join(REFERENCE_MODELS)}), a folder saved with save_pretrained, "
        "or a model id in the Hugging Face cache (default vit-tiny)"
    )

    demo = commands.add_parser("demo", help="GMAR, rollout and IG on a reference model and its bundled scenes")
    demo.add_argument(
        "--model",
        choices=list(REFERENCE_MODELS),
        default="vit-tiny",
        help="a reference model (default vit-tiny); dinov2-small-backbone explains the similarity of composites of real photos",
    )
    _add_run_options(demo, "demo-output")
    # IG's 50 steps of the 12 bundled items at once take 13 GB on dinov2-small; 100 at a time, 2.5 GB
    demo.set_defaults(run=cmd_demo, ig_internal_batch_size=100, relevance_map="positive")

    comp = commands.add_parser(
        "compare",
        help="compare methods on evaluation scenes, on your own images (--data), or on the similarity of real photos (--task similarity)",
    )
    comp.add_argument(
        "--model",
        default=None,
        help=models + "; with --task similarity an embedding model (default dinov2-small-backbone) or a classifier's backbone",
    )
    comp.add_argument(
        "--task",
        choices=["classes", "similarity"],
        default="classes",
        help="classes (default): explain the model's classes; similarity: explain the cosine similarity of the embeddings of composites "
        "of the bundled photos to another view of each photo, the photo's cell being the ground truth",
    )
    comp.add_argument(
        "--center",
        choices=["none", "references"],
        default="none",
        help="with --task similarity: none (default), the plain cosine; references, both embeddings less the references' mean embedding",
    )
    data = comp.add_mutually_exclusive_group()
    data.add_argument(
        "--scenes", type=_int_at_least(1), default=1000, help="evaluation scenes, or composites with --task similarity (default 1000)"
    )
    data.add_argument(
        "--data",
        type=_folder,
        default=None,
        help="your images: a folder with one subfolder per class (or a labels.csv), optional masks/ or boxes.csv; or a folder saved by datasets' save_to_disk",
    )
    comp.add_argument(
        "--limit", type=_int_at_least(1), default=None, help="with --data: evaluate N items, drawn in an order shuffled by --seed"
    )
    comp.add_argument(
        "--methods",
        type=_choices(METHOD_KEYS, "method(s)"),
        default=list(METHOD_KEYS),
        help=f"comma-separated, of {', '.join(METHOD_KEYS)}",
    )
    comp.add_argument(
        "--metrics",
        type=_choices(METRIC_KEYS, "metric group(s)"),
        default=None,
        help=f"comma-separated, of {', '.join(METRIC_KEYS)} (default: all but sanity; localisation only where there are masks)",
    )
    comp.add_argument(
        "--ablation",
        type=_choices(ABLATION_KINDS, "ablation(s)"),
        default=[],
        help="also GMAR (L1) with one layer's head weights uniform (layers) or only one head's weight its own (heads), paired with gmar-l1 and rollout",
    )
    comp.add_argument(
        "--relevance-map",
        choices=RELEVANCE_MAPS,
        default="positive",
        help="how AttnLRP's and CP-LRP's signed relevance becomes their map: its positive part (default), the signed sum, or its absolute value",
    )
    comp.add_argument("--deletion-steps", type=_int_at_least(1), default=16, help="steps of the deletion/insertion curves")
    comp.add_argument("--robustness-scenes", type=_int_at_least(0), default=100, help="explanations scored by infidelity/sensitivity")
    comp.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory of the scenes (default: the Debian package's)")
    comp.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="with --data: skip images that cannot be read (truncated, empty, too large), naming each on stderr, instead of stopping at the first",
    )
    comp.add_argument(
        "--follow-links",
        action="store_true",
        help="with --data: read files that symbolic links in the folder lead to outside it (by default such a link is refused, as a .. path is)",
    )
    comp.add_argument(
        "--workers", type=_int_at_least(0), default=0, help="processes reading and preprocessing images (default 0: the main process)"
    )
    again = comp.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run whose results.csv is in --out, skipping finished batches")
    again.add_argument(
        "--overwrite", action="store_true", help="start over, replacing the results in --out (never a file captum-gmar did not write)"
    )
    _add_run_options(comp, "comparison-output")
    comp.set_defaults(run=cmd_compare)

    export = commands.add_parser("export-scenes", help="write test-split scenes as an image folder with masks, for --data")
    export.add_argument("dir", help="new or empty folder")
    export.add_argument("--n", type=_int_at_least(1), default=200, help="scenes (default 200)")
    export.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the scenes (default 0)")
    export.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory (default: the Debian package's)")
    export.set_defaults(run=cmd_export_scenes)

    explain = commands.add_parser("explain", help="explain one image file")
    explain.add_argument("image", help="image file (PNG, JPEG, ...)")
    explain.add_argument("--model", default=None, help=models)
    explain.add_argument("--target", default=None, help="class index or name to explain (default: the predicted class)")
    explain.add_argument(
        "--similar-to",
        nargs="+",
        metavar="IMAGE",
        default=None,
        help="reference image(s): explain the image's similarity to each, for an embedding model (or a classifier's backbone)",
    )
    explain.add_argument(
        "--center",
        choices=["none", "references"],
        default="none",
        help="with --similar-to: none (default), the plain cosine; references, both embeddings less the references' mean embedding",
    )
    explain.add_argument(
        "--methods",
        type=_choices(METHOD_KEYS, "method(s)"),
        default=["gmar-l1", "rollout"],
        help=f"comma-separated, of {', '.join(METHOD_KEYS)}",
    )
    explain.add_argument("--native-resolution", action="store_true", help="explain the image at its own size instead of the model's")
    explain.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N")
    explain.add_argument(
        "--out",
        default="explanation.png",
        help="figure file, its format from the extension: .png, .pdf, .svg, ... (default explanation.png); "
        f"or .html: one self-contained interactive page (without --target, of the top {PAGE_CLASSES} classes)",
    )
    explain.set_defaults(run=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")  # files only
    # torchrun and accelerate launch set these; errors then name the process
    rank = int(os.environ.get("RANK", "0"))
    where = f" (rank {rank})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    try:
        args.run(args)
    except RankFailedError as error:  # raised on every rank; the failing one reports it
        user_error = isinstance(error.error, (CommandError, *_USER_ERRORS))
        if error.rank != rank:
            raise SystemExit(2 if user_error else 1) from None
        if not user_error:
            sys.stderr.write(error.remote_traceback)
        parser.exit(2 if user_error else 1, f"captum-gmar {args.command}{where}: error: {error.error}\n")
    except (CommandError, *_USER_ERRORS) as error:
        parser.exit(2, f"captum-gmar {args.command}{where}: error: {error}\n")
    except KeyboardInterrupt:
        kept = f"; the finished batches are in {Path(args.out) / 'results.csv'}: add --resume to go on" if args.command == "compare" else ""
        parser.exit(130, f"captum-gmar {args.command}{where}: interrupted{kept}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
