"""``captum-gmar demo``: GMAR, rollout and IG on a reference model's bundled scenes; for
``dinov2-small-backbone``, GMAR, rollout, AttnLRP and GAE on composites of real photos."""

from __future__ import annotations

import argparse

from .. import loading
from ..names import REFERENCE_MODELS
from .compare import announce_subject, check_photos, classifier, photo_similarity, results_files, run_comparison, scene_tasks
from .options import SIMILARITY_MODEL, RunOptions, add_run_options
from .output import check_output


def add_parser(commands: argparse._SubParsersAction, help: str) -> None:
    """``demo``'s parser, among ``commands``."""
    parser = commands.add_parser("demo", help=help, description=help)
    parser.add_argument(
        "--model",
        choices=list(REFERENCE_MODELS),
        default="vit-tiny",
        help=f"a reference model (default vit-tiny); {SIMILARITY_MODEL} explains the similarity of composites of real photos",
    )
    add_run_options(parser, "demo-output")
    # IG's 50 steps of the 12 bundled items at once take 13 GB on dinov2-small; 100 at a time, 2.5 GB
    parser.set_defaults(options=RunOptions.demo, ig_internal_batch_size=100)


def run(options: RunOptions) -> None:
    """The demo's comparison (see :meth:`~captum_gmar.cli.options.RunOptions.demo`)."""
    check_output(options.out, figure=False, files=results_files(options))
    announce_subject(
        options.model, loading.model_folder(options.model, embedding=options.model == SIMILARITY_MODEL), options.model == SIMILARITY_MODEL
    )
    if options.model == SIMILARITY_MODEL:
        check_photos()
        # the 4 of 16 composites drawn whose embedding ranks their own photos highest: the
        # question "what makes it similar to photo k?" is then asked of a photo the model sees
        run_comparison(options, photo_similarity(options, composites=4, candidates=16))
        return
    from ..reference import load_sample_scenes

    tasks = scene_tasks(load_sample_scenes(options.model or loading.DEFAULT_MODEL), options.model, loading.model_folder(options.model))
    run_comparison(options, classifier(options, tasks))
