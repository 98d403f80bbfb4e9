"""The ``captum-gmar`` command line: ``demo``, ``compare`` and ``explain``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; must precede pyplot's import by the modules below

import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from .evaluation.methods import METHOD_KEYS, build_methods  # noqa: E402
from .evaluation.report import comparison_figure, markdown_table, summarize, write_csv  # noqa: E402
from .evaluation.runner import METRIC_KEYS, compare, explanation_tasks, resolve_device  # noqa: E402
from .visualization import comparison_grid, to_display_image  # noqa: E402


class CommandError(Exception):
    """A problem with the command's arguments or files, reported as ``error: ...``."""


def load_model(path: str | None) -> nn.Module:
    """The bundled reference model when ``path`` is None, else a model directory saved
    with ``save_pretrained`` (read offline)."""
    if path is None:
        from .reference import load_reference_model

        return load_reference_model()
    if not Path(path, "config.json").is_file():
        raise CommandError(f"model directory {path!r} does not exist or has no config.json (save one with save_pretrained)")
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(path, local_files_only=True).eval()


def _keys(text: str, allowed: Sequence[str], what: str) -> list[str]:
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in allowed]
    if unknown or not keys:
        raise CommandError(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
    return keys


def _run_comparison(
    args: argparse.Namespace,
    scenes,
    methods: list[str],
    metrics: list[str],
    robustness_limit: int = 0,
    deletion_steps: int = 16,
) -> list[dict]:
    out = Path(args.out)
    model = load_model(args.model)
    device = resolve_device(args.device)
    rows = compare(
        model,
        scenes,
        methods=methods,
        metrics=metrics,
        device=str(device),
        batch_size=args.batch_size,
        robustness_limit=robustness_limit,
        ig_steps=args.ig_steps,
        ig_internal_batch_size=args.ig_internal_batch_size,
        deletion_steps=deletion_steps,
        seed=args.seed,
    )
    summary = summarize(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    header = (
        f"Device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}); "
        f"torch {torch.__version__}; command: `captum-gmar {' '.join(sys.argv[1:])}`\n\n"
    )
    (out / "summary.md").write_text(header + markdown_table(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    built = build_methods(model, methods, ig_steps=args.ig_steps, ig_internal_batch_size=args.ig_internal_batch_size)
    tasks = explanation_tasks(scenes)
    rows_to_draw = range(min(args.figure_rows, len(tasks)))
    figure = comparison_figure(built, tasks, rows_to_draw, device, model.config.id2label)
    figure.savefig(out / "comparison.png", dpi=120)
    print(markdown_table(summary))
    print(f"wrote {out / 'results.csv'}, {out / 'summary.md'} and {out / 'comparison.png'}")
    return summary


def cmd_demo(args: argparse.Namespace) -> None:
    """GMAR, rollout and IG on the bundled scenes with the bundled model."""
    from .reference import load_sample_scenes

    args.model = None
    _run_comparison(args, load_sample_scenes(), ["gmar-l1", "rollout", "ig"], ["localisation"])


def cmd_compare(args: argparse.Namespace) -> None:
    """Every chosen method and metric on N evaluation scenes from the test split."""
    from .datasets.scenes import make_scenes

    methods = _keys(args.methods, METHOD_KEYS, "method(s)")
    metrics = _keys(args.metrics, METRIC_KEYS, "metric group(s)")
    if args.scenes < 1:
        raise CommandError(f"--scenes must be at least 1, got {args.scenes}")
    load_model(args.model)  # fail on a bad model directory before generating scenes
    scenes = make_scenes(args.scenes, "test", seed=args.seed, data_dir=args.data_dir)
    _run_comparison(args, scenes, methods, metrics, args.robustness_scenes, args.deletion_steps)


def cmd_explain(args: argparse.Namespace) -> None:
    """Explain one image file for one class with the chosen methods."""
    methods = _keys(args.methods, METHOD_KEYS, "method(s)")
    model = load_model(args.model)
    try:
        image = matplotlib.image.imread(args.image)
    except (OSError, ValueError, SyntaxError) as error:
        raise CommandError(f"cannot read image {args.image!r}: {error}") from error
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    from transformers import AutoImageProcessor

    processor_dir = args.model or str(_reference_dir())
    try:
        processor = AutoImageProcessor.from_pretrained(processor_dir, local_files_only=True)
    except OSError as error:
        raise CommandError(f"{processor_dir!r} has no image processor (preprocessor_config.json): {error}") from error
    pixel_values = processor(images=image, return_tensors="pt")["pixel_values"]
    num_labels = model.config.num_labels
    if not 0 <= args.target < num_labels:
        raise CommandError(f"--target {args.target} is out of range: the model has {num_labels} classes (0..{num_labels - 1})")
    device = resolve_device(args.device)
    model = model.to(device).eval()
    x, target = pixel_values.to(device), torch.tensor([args.target], device=device)
    maps = {}
    for method in build_methods(model, methods):
        start = time.perf_counter()
        maps[method.name] = method(x, target).cpu()
        print(f"{method.name}: {time.perf_counter() - start:.3f} s")
    shown = to_display_image(pixel_values[0], processor.image_mean, processor.image_std)
    figure = comparison_grid([shown], maps, row_titles=[model.config.id2label[args.target]], cell_size=2.4)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


def _reference_dir() -> Path:
    from .reference import REFERENCE_MODEL_DIR

    return REFERENCE_MODEL_DIR


def _add_run_options(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=32, help="explanations per batch (default 32)")
    parser.add_argument("--ig-steps", type=int, default=50, help="IntegratedGradients steps (default 50)")
    parser.add_argument("--ig-internal-batch-size", type=int, default=None, help="IG's internal batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of scenes and metric noise (default 0)")
    parser.add_argument("--figure-rows", type=int, default=6, help="explanations drawn in the figure (default 6)")
    parser.add_argument("--out", default=out, help=f"output directory (default {out})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captum-gmar", description="GMAR attributions for Hugging Face vision transformers")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="GMAR, rollout and IG on the bundled scenes and model")
    _add_run_options(demo, "demo-output")
    demo.set_defaults(run=cmd_demo)

    comp = commands.add_parser("compare", help="compare methods on N evaluation scenes")
    comp.add_argument("--model", default=None, help="model directory (default: the bundled reference model)")
    comp.add_argument("--scenes", type=int, default=1000, help="evaluation scenes (default 1000)")
    comp.add_argument("--methods", default=",".join(METHOD_KEYS), help=f"comma-separated, of {', '.join(METHOD_KEYS)}")
    comp.add_argument("--metrics", default=",".join(METRIC_KEYS), help=f"comma-separated, of {', '.join(METRIC_KEYS)}")
    comp.add_argument("--deletion-steps", type=int, default=16, help="steps of the deletion/insertion curves")
    comp.add_argument("--robustness-scenes", type=int, default=100, help="explanations scored by infidelity/sensitivity")
    comp.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory (default: the Debian package's)")
    _add_run_options(comp, "comparison-output")
    comp.set_defaults(run=cmd_compare)

    explain = commands.add_parser("explain", help="explain one image file")
    explain.add_argument("image", help="image file (PNG, JPEG)")
    explain.add_argument("--model", default=None, help="model directory (default: the bundled reference model)")
    explain.add_argument("--target", type=int, required=True, help="class index to explain")
    explain.add_argument("--methods", default="gmar-l1,rollout", help=f"comma-separated, of {', '.join(METHOD_KEYS)}")
    explain.add_argument("--device", default="auto", help="auto, cpu or cuda")
    explain.add_argument("--out", default="explanation.png", help="figure file (default explanation.png)")
    explain.set_defaults(run=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        args.run(args)
    except (CommandError, ValueError, FileNotFoundError) as error:
        parser.exit(2, f"captum-gmar {args.command}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
