"""The ``captum-gmar`` command line: ``demo``, ``compare`` and ``explain``.

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
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InsufficientMemoryError, NonFiniteError, UnsupportedModelError
from .names import METHOD_KEYS, METRIC_KEYS, REFERENCE_MODELS, SUPPORTED_FAMILIES, SUPPORTED_MODEL_CLASSES

#: errors reported as one line (``captum-gmar CMD: error: ...``, exit status 2)
_USER_ERRORS = (InsufficientMemoryError, NonFiniteError, UnsupportedModelError, FileNotFoundError, ValueError)
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


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


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto (CUDA when available), cpu, cuda or cuda:N")
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


def model_folder(spec: str | None) -> Path:
    """The folder holding ``config.json`` for ``--model`` (a reference model's name, or a
    folder saved with ``save_pretrained``); checks that it holds weights of a supported
    class, reading only ``config.json``."""
    if spec is None or spec in REFERENCE_MODELS:
        return Path(__file__).resolve().parent / REFERENCE_MODELS[spec or "vit-tiny"]
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        names = ", ".join(REFERENCE_MODELS)
        raise CommandError(f"model {spec!r} is neither a reference model ({names}) nor a folder with a config.json (save one with save_pretrained)")
    if not any((folder / name).is_file() for name in _WEIGHTS):
        raise CommandError(f"model folder {spec!r} has a config.json but no weights ({' or '.join(_WEIGHTS[::2])}); save the model with save_pretrained")
    architectures = _config(folder).get("architectures") or []
    if architectures and not set(architectures) & set(SUPPORTED_MODEL_CLASSES):
        swin = " (windowed attention has no global map to roll out)" if any("swin" in a.lower() for a in architectures) else ""
        raise CommandError(
            f"model {spec!r} is a {', '.join(architectures)}, which this package cannot explain{swin}; "
            f"supported: {SUPPORTED_FAMILIES} image classifiers ({', '.join(SUPPORTED_MODEL_CLASSES)})"
        )
    return folder


def _config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CommandError(f"cannot read {folder / 'config.json'}: {error}") from error


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


def read_image(path: str, patch_size: int):
    """The image file as RGB (a PIL image); at least one patch in each direction."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise CommandError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise CommandError(f"cannot read image {path!r}: {error}") from error
    if min(rgb.size) < patch_size:
        raise CommandError(f"image {path!r} is {rgb.width}x{rgb.height} px, smaller than one {patch_size}x{patch_size} patch of the model")
    return rgb


# Commands.


def load_model(spec: str | None):
    """The model of ``--model``, in eval mode (offline)."""
    if spec is None or spec in REFERENCE_MODELS:
        from .reference import load_reference_model

        return load_reference_model(name=spec or "vit-tiny")
    from transformers import AutoModelForImageClassification

    try:
        return AutoModelForImageClassification.from_pretrained(spec, local_files_only=True).eval()
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot load the model in {spec!r}: {error}") from error


def _device_and_description(name: str):
    from .evaluation.runner import resolve_device

    device = resolve_device(name)
    import torch

    described = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return device, f"{device} ({described}), torch {torch.__version__}"


def _run_comparison(args: argparse.Namespace, scenes, methods: list[str], metrics: list[str]) -> list[dict]:
    out = Path(args.out)
    device, described = _device_and_description(args.device)
    model = load_model(args.model)
    from .evaluation.methods import build_methods
    from .evaluation.report import comparison_figure, markdown_table, summarize, write_csv
    from .evaluation.runner import compare, explanation_tasks, score_function
    from .models import VisionTransformer

    rows = compare(
        model,
        scenes,
        methods=methods,
        metrics=metrics,
        device=str(device),
        batch_size=args.batch_size,
        robustness_limit=args.robustness_scenes,
        ig_steps=args.ig_steps,
        ig_internal_batch_size=args.ig_internal_batch_size,
        deletion_steps=args.deletion_steps,
        seed=args.seed,
    )
    summary = summarize(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    header = f"Device: {described}; command: `captum-gmar {' '.join(sys.argv[1:])}`\n\n"
    (out / "summary.md").write_text(header + markdown_table(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    written = [out / "results.csv", out / "summary.md"]
    tasks = explanation_tasks(scenes)
    if args.figure_rows:
        built = build_methods(model, methods, ig_steps=args.ig_steps, ig_internal_batch_size=args.ig_internal_batch_size)
        timings = ", ".join(f"{entry['method']} {entry['seconds_per_image'] * 1000:.1f} ms" for entry in summary)
        figure = comparison_figure(
            built,
            tasks,
            range(min(args.figure_rows, len(tasks))),
            device,
            model.config.id2label,
            score_function(VisionTransformer(model)),
            title=f"{_model_name(args.model)}: what each method says the model looked at",
            caption=f"device: {described}; time per image: {timings}",
        )
        figure.savefig(out / "comparison.png", dpi=130)
        written.append(out / "comparison.png")
    print(markdown_table(summary))
    print(f"wrote {', '.join(map(str, written))}")
    return summary


def _model_name(spec: str | None) -> str:
    if spec is None:
        return "vit-tiny"
    return spec if spec in REFERENCE_MODELS else Path(spec).name


def cmd_demo(args: argparse.Namespace) -> None:
    """GMAR, rollout and IG on the bundled scenes with the bundled model."""
    from .reference import load_sample_scenes

    args.model, args.robustness_scenes, args.deletion_steps = None, 0, 16
    _run_comparison(args, load_sample_scenes(), ["gmar-l1", "rollout", "ig"], ["localisation"])


def cmd_compare(args: argparse.Namespace) -> None:
    """Every chosen method and metric on N evaluation scenes from the test split."""
    model_folder(args.model)  # a bad model folder fails before the scenes are drawn
    from .datasets.fashion_mnist import resolve_data_dir
    from .datasets.scenes import make_scenes

    resolve_data_dir(args.data_dir)
    scenes = make_scenes(args.scenes, "test", seed=args.seed, data_dir=args.data_dir)
    _run_comparison(args, scenes, args.methods, args.metrics)


def cmd_explain(args: argparse.Namespace) -> None:
    """Explain one image file with the chosen methods, for a class or the predicted one."""
    folder = model_folder(args.model)
    config = _config(folder)
    patch_size = config.get("patch_size", 1)
    image = read_image(args.image, patch_size if isinstance(patch_size, int) else min(patch_size))
    target = None if args.target is None else class_index(args.target, config["id2label"])
    device, described = _device_and_description(args.device)
    model = load_model(args.model).to(device)

    import torch
    from transformers import AutoImageProcessor

    from .attribution import AttentionAttribution
    from .evaluation.methods import build_methods
    from .evaluation.report import class_title
    from .evaluation.runner import score_function
    from .models import VisionTransformer
    from .visualization import comparison_grid, to_display_image

    processor = AutoImageProcessor.from_pretrained(model.name_or_path, local_files_only=True)
    pixel_values = processor(images=image, return_tensors="pt", **_resize_options(processor, model, args.native_resolution))["pixel_values"]
    methods = build_methods(model, args.methods)
    for method in methods:  # an image too large for a method fails before the prediction's pass
        if isinstance(method.attribution, AttentionAttribution):
            try:
                method.attribution.check_memory(pixel_values.shape)
            except InsufficientMemoryError as error:
                hint = "; or drop --native-resolution to explain it at the model's size" if args.native_resolution else ""
                raise CommandError(f"{error}{hint}") from error
    x = pixel_values.to(device)
    with torch.no_grad():
        scores = score_function(VisionTransformer(model))(x)[0].cpu()
    id2label = model.config.id2label
    predicted = int(scores.argmax())
    print(f"predicted: {id2label[predicted]} (class {predicted}), p {scores[predicted]:.3f}")
    target = predicted if target is None else target
    if target != predicted:
        print(f"explaining: {id2label[target]} (class {target}), p {scores[target]:.3f}")
    maps, timings = {}, []
    for method in methods:
        start = time.perf_counter()
        maps[method.name] = method(x, torch.tensor([target], device=device)).cpu()
        seconds = time.perf_counter() - start
        timings.append(f"{method.name} {seconds:.2f} s")
        print(f"{method.name}: {seconds:.3f} s")
    shown = to_display_image(pixel_values[0], processor.image_mean, processor.image_std)
    height, width = pixel_values.shape[-2:]
    figure = comparison_grid(
        [shown],
        maps,
        row_titles=[class_title(scores, target, id2label)],
        cell_size=2.6,
        title=f"{Path(args.image).name} ({height}x{width} px as the model saw it)",
        caption=f"model: {_model_name(args.model)}; device: {described}; {', '.join(timings)}",
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


def _resize_options(processor, model, native: bool) -> dict[str, Any]:
    """The image processor's options: its own resizing; the model's training size where the
    processor does not resize; none with ``--native-resolution``."""
    if native:
        return {"do_resize": False, "do_center_crop": False}
    if getattr(processor, "do_resize", False):
        return {}
    size = model.config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    return {"do_resize": True, "size": {"height": height, "width": width}}


def _add_run_options(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--device", type=_device, default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=32, help="explanations per batch (default 32)")
    parser.add_argument("--ig-steps", type=_int_at_least(1), default=50, help="IntegratedGradients steps (default 50)")
    parser.add_argument("--ig-internal-batch-size", type=_int_at_least(1), default=None, help="IG's internal batch size")
    parser.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of scenes and metric noise (default 0)")
    parser.add_argument("--figure-rows", type=_int_at_least(0), default=6, help="explanations drawn in the figure, 0 for none (default 6)")
    parser.add_argument("--out", default=out, help=f"output directory (default {out})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captum-gmar", description="GMAR attributions for Hugging Face vision transformers")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    models = f"a reference model ({', '.join(REFERENCE_MODELS)}) or a folder saved with save_pretrained (default vit-tiny)"

    demo = commands.add_parser("demo", help="GMAR, rollout and IG on the bundled scenes and model")
    _add_run_options(demo, "demo-output")
    demo.set_defaults(run=cmd_demo)

    comp = commands.add_parser("compare", help="compare methods on N evaluation scenes")
    comp.add_argument("--model", default=None, help=models)
    comp.add_argument("--scenes", type=_int_at_least(1), default=1000, help="evaluation scenes (default 1000)")
    comp.add_argument("--methods", type=_choices(METHOD_KEYS, "method(s)"), default=list(METHOD_KEYS), help=f"comma-separated, of {', '.join(METHOD_KEYS)}")
    comp.add_argument("--metrics", type=_choices(METRIC_KEYS, "metric group(s)"), default=list(METRIC_KEYS), help=f"comma-separated, of {', '.join(METRIC_KEYS)}")
    comp.add_argument("--deletion-steps", type=_int_at_least(1), default=16, help="steps of the deletion/insertion curves")
    comp.add_argument("--robustness-scenes", type=_int_at_least(0), default=100, help="explanations scored by infidelity/sensitivity")
    comp.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory (default: the Debian package's)")
    _add_run_options(comp, "comparison-output")
    comp.set_defaults(run=cmd_compare)

    explain = commands.add_parser("explain", help="explain one image file")
    explain.add_argument("image", help="image file (PNG, JPEG, ...)")
    explain.add_argument("--model", default=None, help=models)
    explain.add_argument("--target", default=None, help="class index or name to explain (default: the predicted class)")
    explain.add_argument("--methods", type=_choices(METHOD_KEYS, "method(s)"), default=["gmar-l1", "rollout"], help=f"comma-separated, of {', '.join(METHOD_KEYS)}")
    explain.add_argument("--native-resolution", action="store_true", help="explain the image at its own size instead of the model's")
    explain.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N")
    explain.add_argument("--out", default="explanation.png", help="figure file (default explanation.png)")
    explain.set_defaults(run=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")  # files only
    try:
        args.run(args)
    except (CommandError, *_USER_ERRORS) as error:
        parser.exit(2, f"captum-gmar {args.command}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
