"""``captum-gmar explain FOLDER``: every image of a folder (or saved data set) explained,
the maps kept in ``--out`` (:func:`~captum_gmar.dataset_maps.explain_dataset`), with a
``report.html`` of the first images and, with ``--overlays``, every map drawn over its
image. Every argument and file is checked before the model loads."""

from __future__ import annotations

import shutil
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .. import loading
from ..dataset_maps.checks import MAPS_FILES, job_to_resume, shard_paths
from ..files import check_not_in_use
from ..names import ZERO_SHOT_MODELS
from .announce import announce, sample_sizes, warn_if_far
from .images import read_image
from .options import FOLDER_BATCH, FOLDER_GALLERY, CommandError, ExplainOptions
from .output import check_output

#: besides the maps: the gallery page and the overlays' folder
PAGE, OVERLAYS = "report.html", "overlays"


def run(options: ExplainOptions) -> None:
    """Explain every image of the folder ``options.image`` into the maps folder ``options.out``."""
    check_output(options.out, figure=False, files=[*MAPS_FILES, PAGE, OVERLAYS])
    _check_maps_folder(options)
    similarity = options.similar_to is not None
    folder = loading.model_folder(options.model, embedding=similarity)
    config = loading.read_config(folder)
    zero_shot = any(name in ZERO_SHOT_MODELS for name in config.get("architectures") or [])
    if options.text is not None and not zero_shot:
        raise CommandError(
            f"--text applies to zero-shot image-text models ({', '.join(ZERO_SHOT_MODELS)}); "
            f"{loading.model_name(options.model)} is a {', '.join(config.get('architectures') or ['model'])}: explain its classes"
        )
    if zero_shot and options.text is None:
        raise CommandError(f"{loading.model_name(options.model)} is a zero-shot image-text model: give its classes as --text prompts")
    if not (folder / "preprocessor_config.json").is_file():
        raise CommandError(f"model folder {str(folder)!r} has no image processor (preprocessor_config.json)")
    if similarity:
        names = [Path(path).name for path in options.similar_to or ()]
        references = [read_image(path) for path in options.similar_to or ()]
    elif options.text is not None:
        names, references = list(options.text), []
    else:
        names, references = loading.class_names(config), []
    announce(options.model, folder, names, "references" if similarity else "prompts" if options.text is not None else "classes")
    target: int | str = _target(options.target, names)
    if target == "label" and similarity:
        raise CommandError(
            "--target label explains each image's label; with --similar-to the references are the classes: use predicted, all or a reference"
        )

    from ..evaluation.data import open_dataset
    from ..imagedata.processing import load_processor

    processor = load_processor(folder)
    size = config.get("image_size", config.get("vision_config", {}).get("image_size", 224))
    reading: dict[str, Any] = {"skip_unreadable": options.skip_unreadable, "follow_links": options.follow_links}
    classes: dict[int | str, str] | None = None if similarity else dict(enumerate(names))
    try:
        data = open_dataset(options.image, processor, classes, size, **reading)
    except (ValueError, FileNotFoundError) as error:
        if target == "label" or classes is None:
            raise CommandError(str(error)) from error
        print(f"no labels read ({error}); explaining every image of {options.image!r}, the index's label -1", file=sys.stderr)
        try:
            data = open_dataset(options.image, processor, None, size, **reading)
        except (ValueError, FileNotFoundError) as unlabelled:
            raise CommandError(str(unlabelled)) from unlabelled
    warn_if_far(options.model, sample_sizes(data))
    _explain(options, data, processor, names, references, target)


def _target(given: str | None, names: list[str]) -> int | str:
    """``--target``: ``predicted`` (default), ``label``, ``all``, or a class index or name of ``names``."""
    if given in (None, "predicted", "label", "all"):
        return given or "predicted"
    from ..imagedata.folder import ClassNames

    try:
        return ClassNames(dict(enumerate(names))).index(given, "--target")
    except ValueError as error:
        raise CommandError(str(error)) from error


def _check_maps_folder(options: ExplainOptions) -> None:
    """``--out`` as a maps folder, before any work: no job running there, no maps that
    this job would neither resume nor overwrite (:func:`~captum_gmar.dataset_maps.checks.job_to_resume`)."""
    check_not_in_use(options.out)
    job_to_resume(options.out, options.resume, options.overwrite)


def _explain(options: ExplainOptions, data: Any, processor: Any, names: list[str], references: list[Any], target: int | str) -> None:
    import torch

    from ..dataset_maps import explain_dataset
    from ..dataset_maps.gallery import write_gallery, write_overlays
    from ..evaluation.distributed import describe_device, process_group
    from ..files import claim_files, folder_lock
    from ..imagedata.processing import process_images
    from ..vit.model import VisionTransformer

    out = Path(options.out)
    kept: dict[str, tuple[int, int]] = {}

    def claim(held: ExitStack) -> None:
        """Rank 0: the folder locked for the whole job, its pictures included."""
        claim_files(out, [*MAPS_FILES, PAGE, OVERLAYS])
        held.enter_context(folder_lock(out))
        _check_maps_folder(options)  # again, under the lock
        if options.resume:
            kept.update(_shard_states(out))
        else:  # the pictures of another job would name this one's records
            _remove_pictures(out)

    with process_group(options.device) as ctx, ExitStack() as held:
        ctx.exchange(lambda: claim(held) if ctx.rank == 0 else None)  # its error reaches every rank
        model: Any = loading.load_model(options.model, embedding=options.similar_to is not None).to(ctx.device)
        about: dict[str, Any] = {"model": loading.model_name(options.model)}
        if options.similar_to is not None:
            from ..vit.similarity import SimilarityModel, embed_images

            pixels = process_images(processor, references, **data.options)  # as the data's images
            embeddings = embed_images(model, pixels.to(ctx.device))
            model = SimilarityModel(model, embeddings, embeddings.mean(0) if options.center == "references" else None)
            about.update(references=names, center=options.center)
        elif options.text is not None:
            from transformers import AutoProcessor

            tokens = AutoProcessor.from_pretrained(model.name_or_path, local_files_only=True)(
                text=list(options.text), padding=True, return_tensors="pt"
            )
            model = VisionTransformer(model, text=tokens)
            about.update(prompts=names)
        records = explain_dataset(
            model,
            data,
            options.methods,
            options.out,
            target=target,
            class_names=names,
            resolution=options.resolution or "patches",
            dtype="float16" if options.float16 else "float32",
            batch_size=options.batch_size or FOLDER_BATCH,
            resume=options.resume,
            overwrite=options.overwrite,
            device=options.device,
            workers=options.workers,
            about=about,
        )
        if records is None:  # not rank 0
            return
        now = _shard_states(out)
        if any(now.get(name) != state for name, state in kept.items()):  # the resume removed maps the pictures may show
            _remove_pictures(out)
        images = records.images
        print(f"wrote {len(records)} maps of {images} images to {out / 'shards'}, their index {out / 'index.csv'}")
        if records.unreadable:
            print(f"skipped {len(records.unreadable)} unreadable images, listed in {out / 'unreadable.csv'}")
        gallery = FOLDER_GALLERY if options.gallery is None else options.gallery
        header = [
            f"model: {loading.model_name(options.model)}; data: {options.image}; target: {target}",
            f"device: {describe_device(ctx.device)}, torch {torch.__version__}",
            f"command: captum-gmar {' '.join(sys.argv[1:])}",
        ]
        if gallery:
            print(f"writing {out / PAGE} (the first {min(gallery, images)} images) ...", flush=True)
            write_gallery(out / PAGE, data, records, gallery, header, names)
        if options.overlays:
            print(f"writing {len(records)} overlays to {out / OVERLAYS} ...", flush=True)
            write_overlays(out / OVERLAYS, data, records)
        print("done")


def _shard_states(out: Path) -> dict[str, tuple[int, int]]:
    """Each shard's modification time and size: a resume that rewrites a shard or sets it
    aside (images changed, damage) removes maps that the pictures may show."""
    return {path.name: (path.lstat().st_mtime_ns, path.lstat().st_size) for path in shard_paths(out)}


def _remove_pictures(out: Path) -> None:
    """``report.html`` and the overlays, pictures of maps that are no longer there (written
    again where the command asks for them)."""
    (out / PAGE).unlink(missing_ok=True)
    shutil.rmtree(out / OVERLAYS, ignore_errors=True)
