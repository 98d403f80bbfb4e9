"""A maps folder's (method, class) groups clustered, each on its own: on ``workers``
processes where there are cores to use, and dealt round robin to the ranks of a
``torchrun`` job, every rank getting every group's outcome back (:func:`explore
<captum_gmar.exploration.folder.explore>` runs it; rank 0 writes the folder)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..evaluation.distributed import Context
from .normalise import Part, flat_maps
from .strategies import Strategies, find_strategies
from .tables import Rows

__all__ = ["cluster_groups"]


def cluster_groups(
    values: dict[str, np.ndarray],
    groups: dict[int, np.ndarray],
    rows: dict[str, Rows],
    clustering: dict[str, Any],
    part: Part,
    needed: int,
    workers: int,
    context: Context,
    progress: bool,
) -> dict[tuple[str, int], tuple[Strategies | str, int]]:
    """Every (method, target) group clustered, or why it was not, and its flat maps: this
    rank's share of the groups (round robin) on ``workers`` processes, gathered from every rank.

    Args:
        values: method -> its maps ``(N, h, w)``, row ``i`` of every method the same image.
        groups: target -> its rows.
        rows: method -> the records' fields (the margins and scores, for the confidence).
        clustering: :func:`~captum_gmar.exploration.strategies.find_strategies`' settings.
        part: the part of a map that counts as its mass.
        needed: the fewest maps that are not flat a group needs to be clustered.
        workers: processes to cluster on (1: this one).
        context: the ranks of a ``torchrun`` job (one rank without).
        progress: whether rank 0 shows a progress bar.
    """
    jobs = [(key, target) for key in values for target in groups][context.rank :: context.world_size]
    tasks = [(values[key][groups[target]], _confidence(rows[key], groups[target]), part, needed, clustering) for key, target in jobs]
    bar = tqdm(total=len(jobs), unit="group", desc="cluster", disable=not progress or context.rank != 0)
    results = []
    with _pool(min(workers, len(tasks))) as pool:
        for result in (map if pool is None else pool.map)(_cluster_group, tasks):
            results.append(result)
            bar.update(1)
    bar.close()
    mine = dict(zip(jobs, results))
    return {group: outcome for share in context.exchange(lambda: mine) for group, outcome in share.items()}


def _pool(workers: int) -> Any:
    """A pool of ``workers`` spawned processes (a fork of a process that runs torch's
    threads may hang), or, for one worker, a context that gives ``None``."""
    if workers <= 1:
        return nullcontext()
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _cluster_group(task: tuple[np.ndarray, np.ndarray, Part, int, dict[str, Any]]) -> tuple[Strategies | str, int]:
    """One group's strategies (or why it was not clustered) and its number of flat maps."""
    group, confidence, part, needed, clustering = task
    flat = int(flat_maps(group, part).sum())
    if len(group) - flat < needed:
        return f"{len(group)} maps, {flat} of them flat: fewer than the {needed} that clustering needs", flat
    return find_strategies(group, **clustering, confidence=confidence), flat


def _confidence(fields: Rows, members: np.ndarray) -> np.ndarray:
    """The model's confidence on a group's images: their margins (the score less the
    other classes' best), or their scores where the job has one class (no margin)."""
    margin = fields.margin[members]
    return margin if np.isfinite(margin).any() else fields.score[members]
