"""The commands' options: each defined once here, parsed by the argument types of
:mod:`~captum_gmar.cli.arguments`, and the typed, frozen options objects the commands run with.

An options object checks what the parser alone cannot (an option that applies only with
another, e.g. ``--limit`` without ``--data``) in its ``__post_init__``, so a mistake is a
one-line error before anything loads. A run's settings (methods, metrics, batch size, ...)
are :class:`~captum_gmar.evaluation.settings.Settings`, whose defaults are the options'
defaults and whose checks are the only ones. torch-free, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..evaluation.settings import Settings
from ..names import GALLERY_MAX, METHOD_KEYS, REFERENCE_MODELS
from .arguments import choices, device, int_at_least

#: the defaults of a run's settings, which the options' defaults are
DEFAULTS = Settings()
#: classes explained on an ``explain --out page.html`` without ``--target``: the top ones
PAGE_CLASSES = 3
#: the model that ``--task similarity`` (compare) explains unless ``--model`` names another
SIMILARITY_MODEL = "dinov2-small-backbone"
MODELS_HELP = (
    f"a reference model ({', '.join(REFERENCE_MODELS)}), a folder saved with save_pretrained, "
    "or a model id in the Hugging Face cache (default vit-tiny)"
)


class CommandError(Exception):
    """A problem with the command's arguments or files, reported as ``error: ...``."""


# Options shared by commands, each defined once.


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")


def add_methods(parser: argparse.ArgumentParser, default: Sequence[str]) -> None:
    parser.add_argument(
        "--methods", type=choices(METHOD_KEYS, "method(s)"), default=tuple(default), help=f"comma-separated, of {', '.join(METHOD_KEYS)}"
    )


def add_center(parser: argparse.ArgumentParser, applies_to: str) -> None:
    parser.add_argument(
        "--center",
        choices=["none", "references"],
        default="none",
        help=f"with {applies_to}: none (default), the plain cosine; references, both embeddings less the references' mean embedding",
    )


def add_reading(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """How a folder of images (or a saved data set) is read: ``--skip-unreadable``,
    ``--follow-links``, ``--workers``."""
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help=f"with {applies_to}: skip images that cannot be read (truncated, empty, too large), naming each on stderr, "
        "instead of stopping at the first",
    )
    parser.add_argument(
        "--follow-links",
        action="store_true",
        help=f"with {applies_to}: read files that symbolic links in the folder lead to outside it (by default such a link is refused, "
        "as a .. path is)",
    )
    parser.add_argument(
        "--workers", type=int_at_least(0), default=0, help="processes reading and preprocessing images (default 0: the main process)"
    )


def add_again(parser: argparse.ArgumentParser, continued: str, replaced: str) -> None:
    """``--resume`` and ``--overwrite`` of a job whose files are in ``--out``."""
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help=f"continue the {continued} is in --out, skipping what is finished")
    again.add_argument(
        "--overwrite", action="store_true", help=f"start over, replacing the {replaced} in --out (never a file captum-gmar did not write)"
    )


def add_scene_source(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where the evaluation scenes' Fashion-MNIST is."""
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory of the scenes (default: the Debian package's)")


def add_run_options(parser: argparse.ArgumentParser, out: str) -> None:
    """The options of a comparison that ``demo`` and ``compare`` share; the defaults of
    the settings among them are :class:`~captum_gmar.evaluation.settings.Settings`'."""
    add_device(parser)
    parser.add_argument(
        "--batch-size", type=int_at_least(1), default=DEFAULTS.batch_size, help="explanations per batch (default %(default)s)"
    )
    parser.add_argument(
        "--ig-steps", type=int_at_least(1), default=DEFAULTS.ig_steps, help="IntegratedGradients steps (default %(default)s)"
    )
    parser.add_argument(
        "--ig-internal-batch-size",
        type=int_at_least(1),
        default=DEFAULTS.ig_internal_batch_size,
        help="images per IG pass (default: every step of the batch at once; demo: 100)",
    )
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=DEFAULTS.seed,
        help="seed of the scenes, of the order of --data and of the metrics' noise (default %(default)s)",
    )
    parser.add_argument("--figure-rows", type=int_at_least(0), default=6, help="explanations drawn in the figure, 0 for none (default 6)")
    parser.add_argument(
        "--gallery",
        type=int_at_least(0, most=GALLERY_MAX),
        default=48,
        help=f"explained items whose maps report.html shows, at most {GALLERY_MAX} (default 48; the page says how many more there were)",
    )
    parser.add_argument(
        "--out",
        default=out,
        help=f"folder of the results, made if missing (default {out}); not a figure file: the figure is its comparison.png. "
        "An existing folder must be empty or one captum-gmar wrote",
    )


# The options objects the commands run with.


def run_settings(args: argparse.Namespace, **fixed: Any) -> Settings:
    """The settings of :func:`add_run_options`' options in ``args``, with those in ``fixed``."""
    return Settings(
        batch_size=args.batch_size, ig_steps=args.ig_steps, ig_internal_batch_size=args.ig_internal_batch_size, seed=args.seed, **fixed
    )


@dataclass(frozen=True)
class RunOptions:
    """A comparison of ``demo`` or ``compare``: what it computes, on which model (``None``:
    vit-tiny), where, and where its results go."""

    settings: Settings
    model: str | None
    device: str
    out: str
    figure_rows: int
    gallery: int
    #: for a similarity: ``"references"`` centres the embeddings on the references' mean
    center: Literal["none", "references"] = "none"
    workers: int = 0
    resume: bool = False

    @classmethod
    def demo(cls, args: argparse.Namespace) -> RunOptions:
        """``demo``'s: GMAR, rollout and IG on a classifier's scenes, localisation only; for
        the embedding model, AttnLRP and GAE (whose maps move with the named photo, where
        GMAR's and rollout's barely do) instead of IG, on centred similarities, deletion to
        the mean image (a blurred photo keeps most of its similarity: docs/similarity.md)."""
        similarity = args.model == SIMILARITY_MODEL
        settings = run_settings(
            args,
            methods=("gmar-l1", "rollout", *(("attnlrp", "gae") if similarity else ("ig",))),
            metrics=("localisation",),
            robustness_limit=0,
            baseline="zero" if similarity else "blur",
        )
        return cls(
            settings, args.model, args.device, args.out, args.figure_rows, args.gallery, center="references" if similarity else "none"
        )


@dataclass(frozen=True)
class CompareOptions:
    """``compare``'s: the comparison, and the data it runs on: ``scenes`` evaluation
    scenes (composites of the bundled photos for ``task="similarity"``), or the folder
    ``data``."""

    run: RunOptions
    task: str
    scenes: int
    data: str | None
    limit: int | None
    data_dir: str | None
    skip_unreadable: bool
    follow_links: bool
    overwrite: bool
    #: whether ``--metrics`` was given: localisation is then required, not skipped without masks
    metrics_given: bool

    def __post_init__(self) -> None:
        if self.task == "similarity" and self.data is not None:
            raise CommandError("--task similarity runs on composites of the bundled photos (--scenes of them); --data is for classes")
        if self.task != "similarity" and self.run.center != "none":
            raise CommandError("--center applies to --task similarity (it centres the embeddings the similarity compares)")
        if self.data is None:
            for given, option in ((self.skip_unreadable, "--skip-unreadable"), (self.follow_links, "--follow-links")):
                if given:
                    raise CommandError(f"{option} applies to --data: the evaluation scenes are generated, not read from image files")
            if self.limit is not None:
                raise CommandError("--limit applies to --data; the number of scenes is --scenes")
        elif self.data_dir is not None:
            raise CommandError("--data-dir is the Fashion-MNIST folder that scenes are drawn from; it does not apply with --data")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> CompareOptions:
        similarity = args.task == "similarity"
        settings = run_settings(
            args,
            methods=args.methods,
            metrics=args.metrics or DEFAULTS.metrics,
            ablation=args.ablation,
            relevance_map=args.relevance_map,
            deletion_steps=args.deletion_steps,
            robustness_limit=args.robustness_scenes,
            baseline="zero" if similarity else "blur",  # a blurred photo keeps most of its similarity (docs/similarity.md)
        )
        model = args.model or (SIMILARITY_MODEL if similarity else None)
        run = RunOptions(settings, model, args.device, args.out, args.figure_rows, args.gallery, args.center, args.workers, args.resume)
        return cls(
            run,
            args.task,
            args.scenes,
            args.data,
            args.limit,
            args.data_dir,
            args.skip_unreadable,
            args.follow_links,
            args.overwrite,
            args.metrics is not None,
        )


#: a folder's images per batch, unless ``--batch-size`` says
FOLDER_BATCH = 32
#: images in a maps folder's report.html, unless ``--gallery`` says
FOLDER_GALLERY = 24
#: the options that apply only to a folder of images, by their ``ExplainOptions`` field
_FOLDER_ONLY = {
    "text": "--text",
    "batch_size": "--batch-size",
    "resolution": "--resolution",
    "float16": "--float16",
    "gallery": "--gallery",
    "overlays": "--overlays",
    "skip_unreadable": "--skip-unreadable",
    "follow_links": "--follow-links",
    "workers": "--workers",
    "resume": "--resume",
    "overwrite": "--overwrite",
}


@dataclass(frozen=True)
class ExplainOptions:
    """``explain``'s: the image (or folder of images), the model, and what to explain: a
    class (``target``: an index or a name; ``None``: the predicted one) or the similarity
    to each of ``similar_to``; for a folder also each image's ``label``, or ``all``
    references or ``text`` prompts, and how its maps are kept."""

    image: str
    model: str | None
    target: str | None
    similar_to: tuple[str, ...] | None
    center: Literal["none", "references"]
    methods: tuple[str, ...]
    native_resolution: bool
    device: str
    out: str
    text: tuple[str, ...] | None = None
    batch_size: int | None = None
    resolution: Literal["patches", "pixels"] | None = None
    float16: bool = False
    gallery: int | None = None
    overlays: bool = False
    skip_unreadable: bool = False
    follow_links: bool = False
    workers: int = 0
    resume: bool = False
    overwrite: bool = False

    @property
    def folder(self) -> bool:
        """Whether ``image`` is a folder (of images, or a saved data set)."""
        return Path(self.image).is_dir()

    def __post_init__(self) -> None:
        if self.similar_to is None and self.center != "none":
            raise CommandError("--center applies to --similar-to (it centres the embeddings the similarity compares)")
        if self.text is not None and self.similar_to is not None:
            raise CommandError("--text makes prompts the classes, --similar-to reference images: give one of the two")
        if self.folder:
            if self.native_resolution:
                raise CommandError(
                    "--native-resolution applies to one image: a folder's images are brought to the model's size, to batch them"
                )
            return
        given = [option for field, option in _FOLDER_ONLY.items() if getattr(self, field) not in (None, False, 0)]
        if given:
            raise CommandError(f"{given[0]} applies to a folder of images; {self.image!r} is one image")
        if self.similar_to is not None and self.target is not None:
            raise CommandError("--target names a class; with --similar-to each reference image is explained in turn")
        if self.target in ("label", "all"):
            raise CommandError(f"--target {self.target} applies to a folder of images; for one image give a class index or name")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ExplainOptions:
        similar_to = tuple(args.similar_to) if args.similar_to is not None else None
        folder = Path(args.image).is_dir()
        return cls(
            args.image,
            args.model,
            args.target,
            similar_to,
            args.center,
            args.methods,
            args.native_resolution,
            args.device,
            args.out or ("maps" if folder else "explanation.png"),
            text=tuple(args.text) if args.text is not None else None,
            batch_size=args.batch_size,
            resolution=args.resolution,
            float16=args.float16,
            gallery=args.gallery,
            overlays=args.overlays,
            skip_unreadable=args.skip_unreadable,
            follow_links=args.follow_links,
            workers=args.workers,
            resume=args.resume,
            overwrite=args.overwrite,
        )


@dataclass(frozen=True)
class ExportOptions:
    """``export-scenes``': ``n`` scenes of ``seed`` drawn from Fashion-MNIST's ``split``, of
    ``items`` items each (``None``: half with one, half with two), into the folder ``dir``."""

    dir: str
    n: int
    seed: int
    items: int | None
    data_dir: str | None
    split: Literal["test", "train"] = "test"

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ExportOptions:
        return cls(args.dir, args.n, args.seed, None if args.items == "mixed" else int(args.items), args.data_dir, args.split)
