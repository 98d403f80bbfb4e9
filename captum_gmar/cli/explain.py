"""``captum-gmar explain``: explain one image file with the chosen methods, as a figure or
an interactive page: a class (or the predicted one), or with ``--similar-to`` its
similarity to each reference image. A folder of images is explained image by image into a
maps folder (:mod:`~captum_gmar.cli.explain_folder`)."""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import loading
from ..errors import InsufficientMemoryError, TooSlowError
from ..names import GALLERY_MAX
from .announce import announce, warn_if_far
from .arguments import int_at_least
from .images import read_image
from .options import (
    FOLDER_BATCH,
    FOLDER_GALLERY,
    MODELS_HELP,
    PAGE_CLASSES,
    CommandError,
    ExplainOptions,
    add_again,
    add_center,
    add_device,
    add_methods,
    add_reading,
)
from .output import check_output

if TYPE_CHECKING:
    import torch

    from ..vit.architectures import ForeignModule


def add_parser(commands: argparse._SubParsersAction, help: str) -> None:
    """``explain``'s parser, among ``commands``."""
    parser = commands.add_parser("explain", help=help, description=help)
    parser.add_argument(
        "image",
        help="image file (PNG, JPEG, ...); or a folder of images (class folders, a labels.csv, or none) or a saved "
        "Hugging Face data set: every image is explained and the maps are kept in --out (docs/dataset-maps.md)",
    )
    parser.add_argument("--model", default=None, help=MODELS_HELP)
    parser.add_argument(
        "--target",
        default=None,
        help="class index or name to explain (default: the predicted class); for a folder also label (each image's label) "
        "or all (each reference or prompt)",
    )
    parser.add_argument(
        "--similar-to",
        nargs="+",
        metavar="IMAGE",
        default=None,
        help="reference image(s): explain the image's similarity to each, for an embedding model (or a classifier's backbone)",
    )
    add_center(parser, "--similar-to")
    parser.add_argument(
        "--text",
        nargs="+",
        metavar="PROMPT",
        default=None,
        help="with a folder, for a zero-shot image-text model (CLIP, MetaCLIP 2, SigLIP): the prompts that are its classes",
    )
    add_methods(parser, ["gmar-l1", "rollout"])
    parser.add_argument("--native-resolution", action="store_true", help="explain the image at its own size instead of the model's")
    add_device(parser)
    parser.add_argument(
        "--out",
        default=None,
        help="figure file, its format from the extension: .png, .pdf, .svg, ... (default explanation.png); "
        f"or .html: one self-contained interactive page (without --target, of the top {PAGE_CLASSES} classes). "
        "For a folder: the maps folder (default maps)",
    )
    maps = parser.add_argument_group("a folder of images")
    maps.add_argument("--batch-size", type=int_at_least(1), default=None, help=f"images per batch (default {FOLDER_BATCH})")
    maps.add_argument(
        "--resolution",
        choices=["patches", "pixels"],
        default=None,
        help="maps on the patch grid (default) or at the input's pixels, as attribute returns them",
    )
    maps.add_argument("--float16", action="store_true", help="store the maps as float16 (half the size, about three significant digits)")
    maps.add_argument(
        "--gallery",
        type=int_at_least(0, most=GALLERY_MAX),
        default=None,
        help=f"images whose maps report.html shows, at most {GALLERY_MAX} (default {FOLDER_GALLERY}; 0 for no page)",
    )
    maps.add_argument("--overlays", action="store_true", help="also write each map over its image as a PNG, in overlays/")
    add_reading(maps, "a folder")
    add_again(maps, "job whose maps", "maps")
    parser.set_defaults(options=ExplainOptions.from_arguments)


def run(options: ExplainOptions) -> None:
    """Explain ``options.image`` (see the module's docstring), or every image of a folder
    (:mod:`~captum_gmar.cli.explain_folder`); every file is checked before the model loads."""
    if options.folder:
        from .explain_folder import run as run_folder

        run_folder(options)
        return
    check_output(options.out, figure=True)
    for path in [options.image, *(options.similar_to or [])]:  # the same file under any name: a hard link, a path through a link
        if os.path.exists(options.out) and os.path.exists(path) and os.path.samefile(options.out, path):
            raise CommandError(f"--out {options.out!r} is the image {path!r}, which the figure would replace: name another file")
    page = Path(options.out).suffix.lower() == ".html"
    similarity = options.similar_to is not None
    folder = loading.model_folder(options.model, embedding=similarity)
    config = loading.read_config(folder)
    patch_size = config.get("patch_size", 1)
    patch_side = patch_size if isinstance(patch_size, int) else min(patch_size)
    least = patch_side if options.native_resolution else None  # else the image processor resizes any image to the model's size
    image = read_image(options.image, least)
    references = [read_image(path, least) for path in options.similar_to or []]
    target = None if similarity or options.target is None else class_index(options.target, config["id2label"])
    if similarity:
        announce(options.model, folder, [Path(path).name for path in options.similar_to or ()], "references")
    else:
        announce(options.model, folder, loading.class_names(config))
        warn_if_far(options.model, [image.size])
    device, described = _device_and_description(options.device)
    model = loading.load_model(options.model, embedding=similarity).to(device)

    import torch

    from ..evaluation.methods import build_methods
    from ..evaluation.report import class_title
    from ..files import save_figure
    from ..imagedata.processing import load_processor, process_images
    from ..visualization import comparison_grid, to_display_image
    from ..vit.model import VisionTransformer
    from ..vit.outputs import score_function

    processor = load_processor(model.name_or_path)
    resize = _resize_options(processor, model, options.native_resolution)
    pixel_values = process_images(processor, image, **resize)
    if similarity:
        from ..vit.similarity import SimilarityModel, embed_images

        embeddings = torch.cat([embed_images(model, process_images(processor, r, **resize).to(device)) for r in references])
        model = SimilarityModel(model, embeddings, embeddings.mean(0) if options.center == "references" else None)
    methods = build_methods(model, options.methods)
    for method in methods:  # an image too large (or too slow) for a method fails before the prediction's pass
        if hasattr(method.attribution, "check_memory"):  # the package's methods; Captum's have no estimate
            try:
                method.attribution.check_memory(pixel_values.shape)
            except (InsufficientMemoryError, TooSlowError) as error:
                hint = "; or drop --native-resolution to explain it at the model's size" if options.native_resolution else ""
                raise CommandError(f"{error}{hint}") from error
    x = pixel_values.to(device)
    with torch.no_grad():
        scores = score_function(VisionTransformer(model))(x)[0].cpu()
    if similarity:
        id2label = {k: Path(path).name for k, path in enumerate(options.similar_to or ())}
        for k, name in id2label.items():
            print(f"similarity to {name}: cos {scores[k]:.3f}{' (centred)' if options.center == 'references' else ''}")
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
    title = f"{Path(options.image).name} ({height}x{width} px as the model saw it)" + (
        ": why it is similar to each reference" if similarity else ""
    )
    caption = f"model: {loading.model_name(options.model)}; device: {described}; {', '.join(timings)}"
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    if page:
        from ..pages import explanation_page

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
        ).save(options.out)
        print(f"wrote {options.out}")
        return
    figure = comparison_grid(
        [shown] * len(targets),
        maps,
        row_titles=[class_title(scores, t, id2label, score_name) for t in targets],
        cell_size=2.6,
        title=title,
        caption=caption,
    )
    save_figure(figure, options.out, dpi=150)
    print(f"wrote {options.out}")


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


def _device_and_description(name: str) -> tuple[torch.device, str]:
    import torch

    from ..evaluation.distributed import Launch, describe_device, select_device

    device = select_device(name, Launch(), torch.cuda.device_count())
    return device, f"{describe_device(device)}, torch {torch.__version__}"


def _resize_options(processor: Any, model: ForeignModule, native: bool) -> dict[str, Any]:
    """The image processor's options: its own resizing; the model's training size where the
    processor does not resize; none with ``--native-resolution``."""
    from ..imagedata.processing import processor_options

    if native:
        return {"do_resize": False, "do_center_crop": False}

    return processor_options(processor, model.config.image_size)
