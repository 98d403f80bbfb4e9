"""Explain a whole data set and keep every map: :func:`explain_dataset`.

Images are read ``batch_size`` at a time; every method explains the batch (the attention
methods on one shared pass, :func:`~captum_gmar.methods.shared.attribute_together`), and
the maps go to shards of bounded size (:mod:`~captum_gmar.dataset_maps.storage`), so
memory stays flat however many images there are. A job holds the folder's lock from start
to end (:func:`~captum_gmar.files.folder_lock`), so a second job there is refused. A job
killed at any point is resumed from its whole shards: the images they hold are not
explained again, unless their content or label changed since (the data set's
``source``), and a damaged shard is set aside (:mod:`~captum_gmar.dataset_maps.checks`)
and its images explained again. Under ``torchrun`` each process explains every ``W``-th
batch and writes shards of its own; no file is written by two processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..core.maps import patch_sums
from ..errors import DiskFullError
from ..evaluation.batches import Batch, collate
from ..evaluation.distributed import Context, current_context
from ..evaluation.methods import Method, build_methods
from ..files import check_folder, claim_files, folder_lock, write_atomic
from ..imagedata.folder import ClassNames
from ..methods.base import ViTAttribution
from ..methods.shared import attribute_together, shares_passes
from ..vit.model import VisionTransformer
from ..vit.outputs import logit_scores, model_fingerprint
from .checks import (
    FORMAT,
    INDEX,
    JOB_FILE,
    MAPS_FILES,
    SHARDS,
    UNREADABLE,
    Shard,
    check_shards,
    job_to_resume,
    remove_leftovers,
    set_aside,
)
from .storage import MapRecords, Record, ShardWriter, drop_items, load_maps, text_name, write_index

__all__ = ["TARGETS", "explain_dataset"]

#: the targets by name (besides a class index or name): each image's predicted class, its
#: label, or every class (for references and prompts, a few classes)
TARGETS = ("predicted", "label", "all")
#: ``target="all"`` explains each class: refused above this many (a classifier's 1,000
#: classes would write 1,000 maps per image and method)
ALL_TARGETS_MAX = 64
Resolution = Literal["patches", "pixels"]


@dataclass(frozen=True)
class _Plan:
    """What each batch does, fixed before any work."""

    vit: VisionTransformer
    methods: list[tuple[str, Method]]
    target: int | str
    output: Literal["patches", "input"]
    class_names: list[str]
    scores: Callable[[Tensor], Tensor]


def explain_dataset(
    model: nn.Module | VisionTransformer,
    data: Dataset,
    methods: Sequence[str] = ("gmar-l1", "rollout"),
    out: str | os.PathLike[str] = "maps",
    *,
    target: int | str = "predicted",
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    resolution: Resolution = "patches",
    dtype: Literal["float32", "float16"] = "float32",
    batch_size: int = 32,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = True,
    workers: int = 0,
    relevance_map: str = "positive",
    ig_steps: int = 50,
    shard_mb: float = 64.0,
    about: Mapping[str, Any] | None = None,
) -> MapRecords | None:
    """Explain every image of ``data`` with ``methods`` and write the maps to ``out``.

    Args:
        model: a supported classifier, a head on an embedding such as a
            :class:`~captum_gmar.vit.similarity.SimilarityModel` (the references are the
            classes), or a :class:`~captum_gmar.vit.model.VisionTransformer` (e.g. a
            zero-shot model with its ``text`` prompts); moved to the device, eval mode.
        data: a map-style data set of items (see :mod:`~captum_gmar.evaluation.data`), e.g.
            :func:`~captum_gmar.evaluation.data.open_dataset`'s; unlabelled items have
            ``label`` ``-1``.
        methods: keys of :func:`~captum_gmar.evaluation.methods.method_keys`.
        out: the maps folder (layout: :mod:`~captum_gmar.dataset_maps.storage`): new, empty,
            or one this package wrote.
        target: ``"predicted"`` (each image's top class), ``"label"`` (its label),
            ``"all"`` (every class, at most :data:`ALL_TARGETS_MAX`: for references or
            prompts), or one class for every image: its index or name.
        class_names: the classes' names (default: ``config.id2label``, else ``"class k"``).
        resolution: ``"patches"``: maps on the patch grid ``(h, w)`` (relevance
            propagation's and Captum's summed over each patch); ``"pixels"``: at the
            input's pixels ``(H, W)``, as ``attribute`` returns them.
        dtype: the maps' storage type; ``"float16"`` halves the files and keeps about
            three significant digits (values below 6e-5 lose more).
        batch_size: images per batch.
        resume: keep the shards of a job on the same model, data and settings in ``out``
            and explain only the images they lack. Damaged shards are set aside in
            ``shards/damaged/`` and the maps of images changed since they were made
            (another content or label, where the data set has ``source``, see
            :mod:`~captum_gmar.evaluation.data`) removed; stderr says so, and those images
            are explained again.
        overwrite: remove the maps of another job in ``out`` and start over.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress: a progress bar (images, images/s) on rank 0.
        workers: processes reading and preprocessing images (``DataLoader``'s ``num_workers``).
        relevance_map, ig_steps: how AttnLRP's and CP-LRP's relevance becomes a map, and
            IG's steps (see :func:`~captum_gmar.evaluation.methods.build_methods`).
        shard_mb: the maps a shard holds, in MiB (a process buffers one shard).
        about: more entries for ``maps.json`` that a resumed job must match (the
            command line records the model's name, the references, the prompts).

    Returns:
        The records (:func:`~captum_gmar.dataset_maps.storage.load_maps`) on rank 0,
        ``None`` on the others.

    Raises:
        ValueError: before any work: an unknown method, target or setting; ``target="label"``
            on unlabelled data; ``out`` in use by another job, holding maps of another job
            (without ``resume`` or ``overwrite``), shards without ``maps.json`` (without
            ``overwrite``), a damaged ``maps.json``, or files this package did not write.
        ~captum_gmar.errors.DiskFullError: the disk filled up; the shards written are
            whole, so the job resumes once there is space.
    """
    if resolution not in ("patches", "pixels"):
        raise ValueError(f"resolution must be 'patches' or 'pixels', got {resolution!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if batch_size < 1 or shard_mb <= 0:
        raise ValueError(f"batch_size must be at least 1 and shard_mb positive, got {batch_size} and {shard_mb}")
    if resume and overwrite:
        raise ValueError("resume keeps the maps in out, overwrite removes them: choose one")
    ctx = current_context(device)
    vit = model if isinstance(model, VisionTransformer) else VisionTransformer(model.to(ctx.device).eval())
    vit.model.to(ctx.device).eval()
    built = build_methods(vit, list(methods), ig_steps=ig_steps, relevance_map=relevance_map)
    names = _class_names(vit, class_names)
    plan = _Plan(
        vit,
        list(zip(methods, built)),
        _target(target, names, data),
        "patches" if resolution == "patches" else "input",
        names,
        logit_scores(vit),
    )
    count = len(cast(Sized, data))
    job = json.loads(
        json.dumps(  # as it reads back from JSON, to compare with a saved job
            {
                "format": FORMAT,
                "methods": {key: method.name for key, method in plan.methods},
                "target": target,
                "resolution": resolution,
                "dtype": dtype,
                "relevance_map": relevance_map,
                "ig_steps": ig_steps,
                "items": count,
                "data_fingerprint": getattr(data, "fingerprint", None),
                "model_fingerprint": model_fingerprint(vit.model),
                "classes": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
                # every class's name, for readers that show a label or a prediction that was never explained
                "class_names": names,
                **(about or {}),
            }
        )
    )
    folder = Path(out)
    with ExitStack() as held:
        # rank 0 locks the folder for the whole job and prepares it; its error (a job running
        # there, another job's maps, a damaged maps.json) reaches every rank
        done: set[int] = ctx.exchange(lambda: _prepare(folder, job, data, resume, overwrite, progress, held) if ctx.rank == 0 else set())[0]
        seen = ctx.exchange(lambda: (folder / JOB_FILE).is_file())
        if not all(seen):  # each rank resumes from, and writes into, the one folder
            raise ValueError(
                f"out {str(folder)!r} must be on a file system every process sees; ranks {[r for r, s in enumerate(seen) if not s]} do not see it"
            )
        remaining = [item for item in range(count) if item not in done]
        batches = [remaining[start : start + batch_size] for start in range(0, len(remaining), batch_size)]
        writer = ShardWriter(folder, ctx.rank, job["methods"], getattr(torch, dtype), int(shard_mb * 2**20))
        try:
            _explain_batches(plan, data, batches[ctx.rank :: ctx.world_size], writer, ctx, workers, progress)
            ctx.barrier()  # every rank's shards are written
            if ctx.rank != 0:
                return None
            records = load_maps(folder)
            write_index(folder, dict(enumerate(names)), records)
        except DiskFullError as error:
            raise DiskFullError(
                f"{error}: the maps written so far are whole; free some space, then resume the job (--resume, resume=True)"
            ) from error
        return records


def _explain_batches(
    plan: _Plan, data: Dataset, mine: list[list[int]], writer: ShardWriter, ctx: Context, workers: int, progress: bool
) -> None:
    """Explain this rank's batches (``mine``, items) into ``writer``'s shards, with what
    identifies each image's content (``data.source``, where the data set has it)."""
    source = getattr(data, "source", None)
    contents: dict[int, str] = {}

    def identified() -> Iterator[list[int]]:
        # the loader reads a batch's images after taking its items from here, so a file
        # replaced after being identified is found changed on resume, never the other way round
        for items in mine:
            if source is not None:
                contents.update((item, source(item).content) for item in items)
            yield items

    loader = DataLoader(data, batch_sampler=identified(), collate_fn=collate, num_workers=workers)
    described = "explain" if ctx.world_size == 1 else f"explain (rank 0 of {ctx.world_size})"
    with tqdm(total=sum(map(len, mine)), unit="image", desc=described, disable=not progress or ctx.rank != 0) as bar:
        for items, batch in zip(mine, loader):
            unreadable = [{"item": items[e["position"]], "image": _image_name(e), "error": e["error"]} for e in batch.unreadable]
            for entry in unreadable:
                tqdm.write(f"skipped: {entry['error']}", file=sys.stderr)
            records = _explain_batch(plan, batch, [items[p] for p in batch.positions], ctx.device)
            writer.add(records, unreadable, {item: contents.pop(item, "") for item in items})
            bar.update(len(items))
    writer.flush()


def _class_names(vit: VisionTransformer, given: Sequence[str] | Mapping[int, str] | None) -> list[str]:
    """The names of the model's ``K`` classes (prompts, references)."""
    count = vit.num_labels
    if given is None:
        id2label = getattr(getattr(vit.model, "config", None), "id2label", None) or {}
        given = {int(k): str(v) for k, v in id2label.items()} if len(id2label) == count else {}
    named = dict(enumerate(given)) if not isinstance(given, Mapping) else dict(given)
    if len(named) not in (0, count):
        raise ValueError(f"class_names names {len(named)} classes; the model has {count}")
    return [str(named.get(k, f"class {k}")) for k in range(count)]


def _target(target: int | str, names: list[str], data: Dataset) -> int | str:
    """``target`` checked: a name of :data:`TARGETS`, or a class index."""
    if target == "label":
        if not getattr(data, "labelled", True):
            raise ValueError("target='label' explains each image's label, but the data has none: read it with the model's classes")
        return target
    if target == "all" and len(names) > ALL_TARGETS_MAX:
        raise ValueError(
            f"target='all' would explain each of the model's {len(names)} classes on every image; "
            f"it is for references or prompts (at most {ALL_TARGETS_MAX}): choose a class, 'label' or 'predicted'"
        )
    if target in TARGETS:
        return target
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        raise ValueError(f"target must be a class index or name or one of {', '.join(TARGETS)}, got {target!r}")
    if isinstance(target, int):
        if not 0 <= target < len(names):
            raise ValueError(f"target {target} is not a class of the model (0..{len(names) - 1})")
        return target
    return ClassNames(dict(enumerate(names))).index(target, "target")


def _prepare(folder: Path, job: dict[str, Any], data: Dataset, resume: bool, overwrite: bool, progress: bool, held: ExitStack) -> set[int]:
    """Rank 0: check ``out``, lock it for the job (in ``held``), and start or resume the
    job there; the images already done."""
    check_folder(folder, MAPS_FILES)
    try:
        claim_files(folder, MAPS_FILES)
    except (FileExistsError, ValueError) as error:
        raise ValueError(str(error)) from None
    held.enter_context(folder_lock(folder))
    saved = job_to_resume(folder, resume, overwrite)
    if saved is None:
        # the old job's description goes first: a start killed half-way leaves no shards claimed by either job
        for name in (JOB_FILE, INDEX, UNREADABLE):
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder / SHARDS, ignore_errors=True)
        (folder / SHARDS).mkdir(parents=True)
        write_atomic(folder / JOB_FILE, json.dumps(job, indent=2) + "\n")
        return set()
    # "class_names" spells out the "classes" fingerprint: a folder written before it was kept resumes
    changed = [
        f"{key} {saved.get(key)!r} then, {value!r} now"
        for key, value in job.items()
        if saved.get(key) != value and not (key == "class_names" and key not in saved)
    ]
    if changed:
        raise ValueError(
            f"cannot resume {str(folder)!r}: its maps are of another job ({'; '.join(changed)}); use --overwrite or another folder"
        )
    remove_leftovers(folder)
    return _resumed(folder, saved, data, progress)


def _resumed(folder: Path, job: dict[str, Any], data: Dataset, progress: bool) -> set[int]:
    """Rank 0: the images a resumed job finds done. Damaged shards are set aside (kept in
    ``shards/damaged/``), and the maps of images changed since they were made (another
    content or label, :func:`_changed`) removed from their shards; stderr says so, and
    those images are explained again."""
    checked = check_shards(folder, job)
    for error in checked.damaged:
        moved = set_aside(error)
        print(f"set aside {str(error.path)!r} in {str(moved.parent)!r}: {error.reason}; its images are explained again", file=sys.stderr)
    changed = _changed(checked.shards, data, progress)
    if changed:
        for shard in checked.shards:
            if shard.items & changed.keys():
                drop_items(shard, set(changed))
        print(
            f"{len(changed)} of the images done changed since their maps were made (the first: "
            f"{text_name(next(iter(changed.values())))!r}): their maps are removed and those images explained again",
            file=sys.stderr,
        )
    return {item for shard in checked.shards for item in shard.items} - changed.keys()


def _changed(shards: list[Shard], data: Dataset, progress: bool) -> dict[int, str]:
    """The images of ``shards`` whose content or label differs now (``data.source``; a data
    set without it is trusted as its ``fingerprint`` says): item -> image name."""
    source = getattr(data, "source", None)
    if source is None:
        return {}
    changed = {}
    with tqdm(total=sum(len(shard.items) for shard in shards), unit="image", desc="check the images done", disable=not progress) as bar:
        for shard in shards:
            labels = dict(zip(shard.columns["item"], shard.columns["label"]))
            names = dict(zip(shard.columns["item"], shard.images)) | {entry["item"]: entry["image"] for entry in shard.unreadable}
            for item, content in shard.contents.items():
                now = source(item)
                if now.content != content or labels.get(item, now.label) != now.label:  # an unreadable image has no label stored
                    changed[item] = names[item]
                bar.update()
    return changed


def _image_name(info: Mapping[str, Any]) -> str:
    """How the index names an image: its file, or its row in a saved data set."""
    return str(info.get("file", info.get("index", "")))


def _explain_batch(plan: _Plan, batch: Batch, items: list[int], device: torch.device) -> list[Record]:
    """Every method's maps of one batch's readable images, as records (one per image and target)."""
    if not items:
        return []
    x = batch.pixel_values.to(device)
    labels = batch.targets
    rows = torch.arange(len(items))
    if plan.target == "all":  # every class of every image: one row each
        rows = rows.repeat_interleave(len(plan.class_names))
        x = x[rows.to(device)]
    given: Tensor | None = None
    if plan.target == "label":
        if (labels < 0).any():
            image = _image_name(batch.info[int((labels < 0).nonzero()[0])])
            raise ValueError(f"image {image!r} has no label (-1): target='label' needs every image labelled")
        given = labels.to(device)
    elif isinstance(plan.target, int):
        given = torch.full((len(rows),), plan.target, device=device)
    elif plan.target == "all":
        given = torch.arange(len(plan.class_names), device=device).repeat(len(items))
    maps: dict[str, Tensor] = {}
    logits: Tensor | None = None
    # one pass for the attention methods of each wrapped model (a registered method may wrap
    # its own); the first pass's logits give the predicted class the other methods explain
    groups: dict[int, list[tuple[str, Method]]] = {}
    for key, method in plan.methods:
        if shares_passes(method.attribution) and not method.options:
            groups.setdefault(id(cast(Any, method.attribution).vit), []).append((key, method))
    for shared in groups.values():
        results = attribute_together([cast(Any, m.attribution) for _, m in shared], x, given, output=plan.output)
        for (key, method), result in zip(shared, results):
            maps[key] = method.to_maps(result.attributions)
        if logits is None:
            logits = results[0].logits
            given = logits.argmax(-1) if given is None else given
    for key, method in plan.methods:
        if key in maps:
            continue
        if logits is not None and given is None:
            given = logits.argmax(-1)
        if isinstance(method.attribution, ViTAttribution) and not method.options:
            result = method.attribution.attribute_with_logits(x, given, output=plan.output)
            maps[key] = method.to_maps(result.attributions)
            logits = result.logits if logits is None else logits
        else:  # Captum's methods: pixel maps, summed over each patch for the patch grid
            if given is None:
                with torch.no_grad():
                    logits = plan.vit.logits(x).float()
                given = logits.argmax(-1)
            pixel = method(x, given)
            maps[key] = patch_sums(pixel, plan.vit.patch_size) if plan.output == "patches" else pixel
    if logits is None:  # methods that each returned no logits
        with torch.no_grad():
            logits = plan.vit.logits(x).float()
    explained = logits.argmax(-1) if given is None else given
    every = plan.scores(logits)
    scores = every.gather(1, explained[:, None])[:, 0]
    # the margin over the other classes' best: NaN where there is none
    others = (
        every.scatter(1, explained[:, None], float("-inf")).max(1).values if every.shape[1] > 1 else torch.full_like(scores, float("nan"))
    )
    margins, scores = (scores - others).cpu(), scores.cpu()
    predicted = logits.argmax(-1).cpu()
    explained = explained.cpu()
    # contiguous: a map that is a view of the attributions would keep all their channels alive in the buffer
    cpu_maps = {key: value.cpu().contiguous() for key, value in maps.items()}
    records = []
    for row, image in enumerate(rows.tolist()):
        info = batch.info[image]
        target = int(explained[row])
        records.append(
            Record(
                item=items[image],
                image=_image_name(info),
                target=target,
                target_name=plan.class_names[target],
                label=int(labels[image]),
                predicted=int(predicted[row]),
                score=float(scores[row]),
                margin=float(margins[row]),
                maps={key: value[row] for key, value in cpu_maps.items()},
            )
        )
    return records
