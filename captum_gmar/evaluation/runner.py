"""The side-by-side comparison: every method, every metric, on a data set of explanation tasks.

An item of the data set (see :mod:`~captum_gmar.evaluation.data`) is one explanation: an
image, the class to explain and, where known, the object's mask (and the other labelled
objects' masks, for class sensitivity). Items are read ``batch_size`` at a time in the
data set's order; every method explains the same batch, the metrics score its maps, and
each method and item gives one row.

The batch is the unit of work: rows are written to the results file batch by batch, a
resumed run skips the finished batches, and processes started by ``torchrun`` share
the batches out (:mod:`~captum_gmar.evaluation.distributed`). An item is therefore
always explained in the same batch, and its row does not depend on how the run was
interrupted or spread over processes (timings aside).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import RankFailedError
from ..files import open_no_follow, replacing, write_atomic
from ..vit.model import VisionTransformer
from ..vit.outputs import model_fingerprint, score_function
from .cost import measure_cost
from .data import Batch, collate
from .diagnostics.ablation import AblationKind, ablation_methods
from .distributed import Context, current_context
from .methods import Method, build_methods
from .metrics.base import MetricGroup, MetricInputs
from .metrics.registry import metric_group, metric_keys
from .report import ResultsWriter, read_csv
from .settings import Settings

Row = dict[str, Any]


def settings_methods(model_or_vit: nn.Module | VisionTransformer, settings: Settings) -> list[Method]:
    """The methods of ``settings`` (``methods`` with the IG and relevance-map options; not
    the ablations) for a model or its wrapper (see :func:`~.methods.build_methods`)."""
    return build_methods(
        model_or_vit,
        settings.methods,
        ig_steps=settings.ig_steps,
        ig_internal_batch_size=settings.ig_internal_batch_size,
        relevance_map=settings.relevance_map,
    )


def compare(
    model: nn.Module,
    dataset: Dataset,
    settings: Settings | None = None,
    *,
    results: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    workers: int = 0,
    **overrides: Any,
) -> list[Row] | None:
    """Run the methods of ``settings`` on every item of ``dataset`` and score them.

    ``compare(model, data, Settings(methods=["gmar-l1", "ig"]))`` and
    ``compare(model, data, methods=["gmar-l1", "ig"])`` are the same call: keyword
    arguments other than those below are fields of :class:`~.settings.Settings`, which
    replace those of ``settings`` (by default ``Settings()``).

    Under ``torchrun`` (inside :func:`~captum_gmar.evaluation.distributed.process_group`)
    each process explains its share of the batches on its own device, and rank 0 gets
    (or writes) every row.

    Args:
        model: a supported classifier, or a head on an embedding such as a
            :class:`~captum_gmar.vit.similarity.SimilarityModel` (its outputs are then the
            scores perturbed, and Chefer's perturbation AUCs, which count correct top
            classes, are left out); moved to the device and put in eval mode.
        dataset: a map-style data set of explanation tasks (see
            :mod:`~captum_gmar.evaluation.data`), e.g. :class:`~.data.SceneTasks`.
        settings: what is computed, :class:`~.settings.Settings` (methods, metrics,
            batch size, seed, ...); saved beside ``results``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see
            :func:`~captum_gmar.evaluation.distributed.select_device`).
        progress: a progress bar (rank 0), counting the items of the whole job.
        results: a CSV file to append the rows to as each batch finishes, with the
            run's settings beside it (``<name>.run.json``); memory then stays flat
            however long the data set. Without it the rows are returned. Neither may
            be a symbolic link.
        resume: keep the finished batches of ``results`` and compute only the rest; the
            settings, data set and model must be those of the run that wrote it. A
            batch cut short by a crash is computed again. Items that a data set skipped
            as unreadable (``skip_unreadable=True`` of the image folders) count as
            finished: each is named on stderr once, when read, and listed in
            ``<name>.run.json`` (``unreadable``: item, naming entries, error).
        workers: processes reading and preprocessing items (``DataLoader``'s ``num_workers``).
        overrides: fields of :class:`~.settings.Settings`, replacing those of ``settings``.

    Raises:
        ValueError: a setting out of range (see :class:`~.settings.Settings`), ``resume``
            without ``results``, a results file that is a symbolic link, or one that
            another run wrote (resuming).

    Returns:
        Without ``results``: one row per method and item (rank 0; ``[]`` on other ranks):
        ``method``, ``item`` (index in ``dataset``), the item's naming entries
        (``scene``, ``file``, ...), ``target`` and the metric columns of
        :func:`~captum_gmar.evaluation.report.summary_columns` that were computed. With
        ``results``: ``None``, the rows are in the file (:func:`~.report.read_csv`).
    """
    settings = dataclasses.replace(settings or Settings(), **overrides)
    if resume and results is None:
        raise ValueError("resume=True needs the results file to resume")
    linked = [path for path in (Path(results), run_file(results)) if path.is_symlink()] if results is not None else []
    if linked:  # writing there would replace the link, or append to what it points to
        raise ValueError(f"{str(linked[0])!r} is a symbolic link: name a results file of its own, not a link")
    ctx = current_context(device)
    torch.manual_seed(settings.seed)
    model = model.to(ctx.device).eval()
    vit = VisionTransformer(model)  # the one wrapper of the model: every method and metric group shares it
    built = settings_methods(vit, settings) + ablation_methods(vit, cast("tuple[AblationKind, ...]", settings.ablation))
    count = len(cast(Sized, dataset))  # a map-style data set, with a length (see the docstring)
    batches = [range(start, min(start + settings.batch_size, count)) for start in range(0, count, settings.batch_size)]
    data = {"items": count, "data_fingerprint": getattr(dataset, "fingerprint", None)}
    seen = ctx.exchange(lambda: data)
    if any(other != data for other in seen):
        raise ValueError(f"the processes see different data ({seen}); every rank must read the same data set")
    # as it reads back from JSON (tuples become lists), to compare with a saved run
    identity = json.loads(json.dumps({**dataclasses.asdict(settings), **data, "model_fingerprint": model_fingerprint(model)}))
    run = _Run(ctx, vit, built, dataset, settings, workers)
    if results is None:
        rows: list[Row] = []
        run(batches, lambda batch_rows, unreadable: rows.extend(batch_rows), progress)
        return rows
    path = Path(results)
    # rank 0's answer, which every rank receives
    done = (
        ctx.exchange(lambda: _prepare_results(path, identity, [m.name for m in built], batches, resume) if ctx.rank == 0 else None)[0]
        or set()
    )
    writer = ResultsWriter(path, append=True) if ctx.rank == 0 else None

    def emit(batch_rows: list[Row], unreadable: list[Row]) -> None:
        if writer is None:  # the other ranks pass their rows to rank 0
            return
        writer.write(batch_rows)
        if unreadable:  # after the rows: a batch is finished once both are saved
            _add_unreadable(path, unreadable)

    try:
        run([batch for k, batch in enumerate(batches) if k not in done], emit, progress)
    finally:
        if writer:
            writer.close()
    return None


def run_file(results: str | os.PathLike[str]) -> Path:
    """Where the settings of the run that writes ``results`` are kept: ``<name>.run.json``."""
    return Path(results).with_suffix(".run.json")


def _prepare_results(path: Path, identity: dict[str, Any], names: list[str], batches: list[range], resume: bool) -> set[int]:
    """Start a results file, or, resuming, check that it was made by the same run, drop
    the rows of unfinished batches (and a last line cut short) and return the finished
    batches' numbers."""
    if not (resume and path.is_file()):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, "")
        _write_run_file(path, identity)
        return set()
    if not run_file(path).is_file():
        raise ValueError(f"cannot resume {str(path)!r}: {str(run_file(path))!r}, the settings of the run that wrote it, is missing")
    saved = json.loads(run_file(path).read_text())
    changed = [f"{key} {saved.get(key)!r} then, {value!r} now" for key, value in identity.items() if saved.get(key) != value]
    if changed:
        raise ValueError(
            f"cannot resume {str(path)!r}: it was made by another run ({'; '.join(changed)}); use another output or start over"
        )
    _drop_cut_line(path)
    methods_of: dict[int, set[str]] = {}
    for row in read_csv(path):
        methods_of.setdefault(row["item"], set()).add(row["method"])
    skipped = {entry["item"] for entry in saved.get("unreadable", [])}
    done = {k for k, batch in enumerate(batches) if all(item in skipped or methods_of.get(item, set()) >= set(names) for item in batch)}
    finished = {item for k in done for item in batches[k]}
    if set(methods_of) - finished:  # rows of a batch cut short: it is computed again
        _keep_items(path, finished)
    if skipped - finished:  # ... and its unreadable items read again
        _write_run_file(path, {**saved, "unreadable": [entry for entry in saved["unreadable"] if entry["item"] in finished]})
    return done


def _add_unreadable(path: Path, entries: list[Row]) -> None:
    """List items skipped as unreadable in the run's settings file (see :func:`compare`)."""
    saved = json.loads(run_file(path).read_text())
    _write_run_file(path, {**saved, "unreadable": saved.get("unreadable", []) + entries})


def _write_run_file(path: Path, run: dict[str, Any]) -> None:
    """Replace ``<name>.run.json`` at once (a crash leaves the old or the new one), with
    ``unreadable_count`` kept equal to the length of the ``unreadable`` list."""
    unreadable = run.get("unreadable", [])
    write_atomic(run_file(path), json.dumps({**run, "unreadable": unreadable, "unreadable_count": len(unreadable)}, indent=2))


def _keep_items(path: Path, items: set[int]) -> None:
    """Rewrite a results file with only the rows of ``items``, line by line (into a new
    file that then replaces it)."""
    with open(path, newline="", encoding="utf-8") as source, replacing(path, newline="") as target:
        reader, writer = csv.reader(source), csv.writer(target)
        header = next(reader)
        writer.writerow(header)
        column = header.index("item")
        writer.writerows(line for line in reader if int(line[column]) in items)


def _drop_cut_line(path: Path) -> None:
    """Truncate a file after its last newline: a crash may cut the last row short."""
    with open_no_follow(path, "r+b") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


class _Run:
    """Explains and scores batches on this process, exchanging rows with the others."""

    def __init__(
        self, ctx: Context, vit: VisionTransformer, methods: list[Method], dataset: Dataset, settings: Settings, workers: int
    ) -> None:
        self.ctx, self.vit, self.methods, self.dataset, self.settings, self.workers = ctx, vit, methods, dataset, settings, workers
        self.score_fn = score_function(vit)
        self.warm = False
        # the chosen groups, in the order their columns are written, each built once for the run
        self.groups: list[MetricGroup] = [metric_group(key)(vit, methods, settings) for key in metric_keys() if key in settings.metrics]

    def __call__(self, batches: list[range], emit: Callable[[list[Row], list[Row]], None], progress: bool) -> None:
        """Explain ``batches`` (every process the same list): rank ``r`` takes every
        ``W``-th from the ``r``-th; rank 0 passes each step's rows and the items it
        skipped as unreadable (``item``, naming entries, ``error``; each named on stderr)
        to ``emit``, in order."""
        ctx = self.ctx
        mine = batches[ctx.rank :: ctx.world_size]
        loader = iter(DataLoader(self.dataset, batch_sampler=[list(b) for b in mine], collate_fn=collate, num_workers=self.workers))
        # closed (its line ended) on an error too, so that the error starts a line
        with tqdm(total=sum(map(len, batches)), unit="item", desc="compare", disable=not progress or ctx.rank != 0) as bar:
            for step in range(math.ceil(len(batches) / ctx.world_size)):

                def work(step: int = step) -> tuple[list[Row], list[Row]]:  # a rank past its last batch sends nothing
                    if step >= len(mine):
                        return [], []
                    batch, items = next(loader), mine[step]
                    unreadable = [
                        {"item": items[entry["position"]], **{k: v for k, v in entry.items() if k != "position"}}
                        for entry in batch.unreadable
                    ]
                    return self.score(batch, [items[p] for p in batch.positions]), unreadable

                try:
                    parts = ctx.exchange(work)
                except RankFailedError as error:  # keep the batches the other ranks finished
                    parts = error.completed
                    if ctx.rank == 0:
                        self.pass_on(parts, emit, bar)
                    ctx.barrier()  # ... before the failing rank exits and the launcher stops the others
                    raise
                if ctx.rank == 0:
                    self.pass_on(parts, emit, bar)

    def pass_on(self, parts: list[tuple[list[Row], list[Row]]], emit: Callable[[list[Row], list[Row]], None], bar: tqdm) -> None:
        """Rank 0: the ranks' rows and unreadable items of one step to ``emit``."""
        rows = [row for part_rows, _ in parts for row in part_rows]
        unreadable = [entry for _, entries in parts for entry in entries]
        for entry in unreadable:
            tqdm.write(f"skipped: {entry['error']}", file=sys.stderr)
        emit(rows, unreadable)
        bar.update(len(rows) // len(self.methods) + len(unreadable))

    def score(self, batch: Batch, items: list[int]) -> list[Row]:
        """Rows of every method for ``batch``, whose images are the data set's ``items``
        (the readable items of a batch: not always consecutive)."""
        if not items:
            return []
        dev, settings = self.ctx.device, self.settings
        x, t = batch.pixel_values.to(dev), batch.targets.to(dev)
        if not self.warm:  # lazy initialisation and kernel choice stay out of the timings
            for method in self.methods:
                method(x[:1], t[:1])
            self.warm = True
        # robustness and sanity re-run the methods: only on the first robustness_limit items
        keep = slice(0, sum(item < settings.robustness_limit for item in items))
        for group in self.groups:
            group.start_batch(x, t, keep)
        rows = []
        for method in self.methods:
            cost = measure_cost(method.maps_and_head_weights, x, t, device=dev, repeats=1, warmup=0)
            maps, weights = cost.output
            inputs = MetricInputs(self.vit, method, batch, x, t, maps, weights, keep, self.score_fn)
            columns = {name: values for group in self.groups for name, values in group.compute(inputs).items()}
            for i in range(len(t)):
                row: Row = {"method": method.name, "item": items[i], **batch.info[i], "target": int(t[i])}
                row["seconds_per_image"] = cost.seconds_median / len(t)
                row["peak_memory_mb"] = cost.peak_memory_bytes / 2**20
                row.update({name: float(values[i]) for name, values in columns.items()})
                rows.append(row)
        return rows
