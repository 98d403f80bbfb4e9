"""``captum-gmar export-scenes``: scenes of Fashion-MNIST's test split (or its training
split, ``--split train``) written as an image folder with masks, which ``compare --data``,
``explain`` and ``repair --data`` read."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import int_at_least
from .options import CommandError, ExportOptions, add_scene_source


def add_parser(commands: argparse._SubParsersAction, help: str) -> None:
    """``export-scenes``' parser, among ``commands``."""
    parser = commands.add_parser("export-scenes", help=help, description=help)
    parser.add_argument("dir", help="new or empty folder")
    parser.add_argument("--n", type=int_at_least(1), default=200, help="scenes (default 200)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the scenes (default 0)")
    parser.add_argument(
        "--items",
        choices=["1", "2", "mixed"],
        default="mixed",
        help="items per scene: 1 (one image and one explanation per scene), 2, or mixed, half and half (default; "
        "a two-item scene is written once per item, in each item's class folder)",
    )
    parser.add_argument(
        "--split",
        choices=["test", "train"],
        default="test",
        help="Fashion-MNIST's split the items come from: test (default; to explain and compare) or train (labelled "
        "training images, e.g. repair's --data)",
    )
    add_scene_source(parser)
    parser.set_defaults(options=ExportOptions.from_arguments)


def run(options: ExportOptions) -> None:
    """Write ``--n`` scenes of ``--split`` as an image folder with a mirrored masks/ tree."""
    out = Path(options.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"{options.dir!r} exists and is not an empty folder: export into a new one")
    from ..imagedata.fashion_mnist import CLASS_NAMES, resolve_data_dir
    from ..imagedata.folder import export_scenes
    from ..imagedata.scenes import make_scenes

    resolve_data_dir(options.data_dir)
    scenes = make_scenes(options.n, options.split, seed=options.seed, num_items=options.items, data_dir=options.data_dir)
    written = export_scenes(scenes, out, CLASS_NAMES)
    two = int((scenes.num_items == 2).sum())
    print(
        f"wrote {written} images ({options.n} scenes{f', {two} with two items, each written once per item' if two else ''}) and their masks to {out}"
    )
