"""The options of the commands that read a maps folder (``explore``, ``heads``, ``repair``):
one frozen object per command, checked in one line each before anything loads. The
options shared by every command are in :mod:`captum_gmar.cli.options`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, cast

from .options import CommandError

__all__ = ["ExploreOptions", "HeadsOptions", "RepairOptions", "check_model_of", "cluster_and_model", "load_model_of"]

_Options = TypeVar("_Options", bound="_ClusterOptions")


@dataclass(frozen=True)
class ExploreOptions:
    """``explore``'s: the maps folder ``maps`` explored into ``out``, which of its
    methods and explained classes (``None``: all), the clustering's settings, and the image
    folder its thumbnails come from."""

    maps: str
    out: str
    methods: tuple[str, ...] | None
    classes: tuple[str, ...] | None
    clusters: int | None
    max_clusters: int
    neighbours: int
    images: str | None
    seed: int
    model: str | None
    workers: int
    feature_layer: int | None = None

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ExploreOptions:
        def listed(text: str | None) -> tuple[str, ...] | None:
            return None if text is None else tuple(key.strip() for key in text.split(",") if key.strip())

        return cls(
            args.maps,
            args.out,
            listed(args.methods),
            listed(args.classes),
            args.clusters,
            args.max_clusters,
            args.neighbours,
            args.images,
            args.seed,
            args.model,
            args.workers,
            args.feature_layer,
        )

    def __post_init__(self) -> None:
        if self.model is None and self.feature_layer is not None:
            raise CommandError("--feature-layer chooses the model's layer whose features are clustered: give --model too")
        if self.model is not None and self.images is None:
            raise CommandError(
                "--model runs the causal check, which masks the clusters' images: name the image folder the job read (--images)"
            )
        if self.clusters is not None and self.clusters > self.max_clusters:
            raise CommandError(f"--clusters {self.clusters} is more than --max-clusters {self.max_clusters}: raise --max-clusters too")


class _ClusterOptions:
    """The options of a command that names a ``--cluster METHOD:CLASS:RANK``: made from the
    parser's arguments by field name, the cluster refused in one line before anything loads."""

    cluster: str

    @classmethod
    def from_arguments(cls: type[_Options], args: argparse.Namespace) -> _Options:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cast(Any, cls))})

    def __post_init__(self) -> None:
        _check_cluster(self.cluster)


@dataclass(frozen=True)
class HeadsOptions(_ClusterOptions):
    """``heads``': the cluster ``cluster`` of the maps folder ``maps``, its images read from
    ``images``, located with ``model``; the results in ``out``, and the model without the
    first ``remove`` heads (``mode``)."""

    maps: str
    model: str
    cluster: str
    images: str
    out: str
    remove: int | None
    mode: Literal["zero", "mean"]
    max_images: int
    budget: int | None
    seed: int


def _check_cluster(spec: str) -> None:
    """A ``--cluster METHOD:CLASS:RANK`` refused in one line before anything loads."""
    from ..heads.cluster import parse_cluster

    try:
        parse_cluster(spec)
    except ValueError as error:
        raise CommandError(f"--cluster: {error}") from None


@dataclass(frozen=True)
class RepairOptions(_ClusterOptions):
    """``repair``'s: the cluster ``cluster`` of the maps folder ``maps`` (its images in
    ``images``) repaired in ``model`` with ``how``, trained and measured on the labelled
    folder ``data``; the repaired model in ``out``."""

    maps: str
    model: str
    cluster: str
    images: str
    data: str
    out: str
    how: Literal["heads", "finetune", "auto"]
    budget: float
    steps: int
    max_images: int
    seed: int
    feature_layer: int | None = None
    #: repair a cluster the model does not confirm as a shortcut
    force: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feature_layer is not None and not self.cluster.startswith("features:"):
            raise CommandError(
                "--feature-layer chooses the layer of a cluster of the model's features (--cluster features:CLASS:RANK): "
                f"{self.cluster} is a cluster of maps"
            )


def cluster_and_model(maps: str, cluster: str, model: str) -> tuple[Any, Any]:
    """The cluster ``METHOD:CLASS:RANK`` of the maps folder ``maps`` (refused in one line
    before the model loads), and the model ``model``, refused where it is not the one the
    maps explain (:func:`load_model_of`)."""
    from ..heads.cluster import find_cluster

    found = find_cluster(maps, cluster)
    return found, load_model_of(maps, model)


def load_model_of(maps: str, model: str) -> Any:
    """The model ``model`` (a folder or a bundled model's name), loaded and checked to be
    the one whose maps ``maps`` holds (:func:`check_model_of`); each refused in one line."""
    from .. import loading

    try:
        loaded = loading.load_model(model)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    check_model_of(maps, loaded, model)
    return loaded


def check_model_of(maps: str, model: Any, name: str) -> None:
    """Refuse a model whose weights are not those of the model the maps folder's job
    explained (its ``model_fingerprint``; a job that recorded none is not checked): every
    check and repair of its clusters would measure another model."""
    from ..dataset_maps.checks import read_job
    from ..vit.outputs import model_fingerprint

    job = read_job(maps) or {}
    made_by = job.get("model_fingerprint")
    if made_by is not None and made_by != model_fingerprint(model):
        raise CommandError(
            f"{maps} holds the maps of another model than {name} (their weights differ): name the model they explain"
            + (f" (--model {job['model']})" if isinstance(job.get("model"), str) else "")
        )
