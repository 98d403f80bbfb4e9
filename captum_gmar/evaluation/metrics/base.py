"""What a metric group is: the columns it declares and how it computes them for one batch.

A group (faithfulness, localisation, ...) is a small class: its ``key`` (what
``compare(metrics=...)`` and ``--metrics`` name), its :class:`Column` declarations (name,
description, which way is better, the tasks it applies to) and :meth:`MetricGroup.compute`,
which turns one method's maps of one batch into one value per example and column. The
comparison (:mod:`captum_gmar.evaluation.runner`) builds each chosen group once per run and
calls it for every method and batch; the summary's columns and their descriptions come
from the declarations (:func:`~captum_gmar.evaluation.metrics.registry.metric_columns`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from torch import Tensor

from ...vit.embedding import EmbeddingHead

if TYPE_CHECKING:  # the harness's types, for annotations only
    from ...vit.model import VisionTransformer
    from ..data import Batch
    from ..methods import Method

#: what a comparison explains: a classifier's (or zero-shot model's) classes, or the
#: similarity of embeddings (a head on an embedding such as a SimilarityModel)
Task = Literal["classes", "similarity"]
TASKS: tuple[Task, ...] = ("classes", "similarity")


@dataclass(frozen=True)
class Column:
    """One column of the results and the summary."""

    #: the column's name in ``results.csv`` and the summary
    name: str
    #: how to read it (the summary's legend and the report's tooltip)
    description: str
    #: which way is better, where one is
    better: Literal["lower", "higher"] | None = None
    #: the tasks it is defined for; left out of the others
    tasks: tuple[Task, ...] = TASKS


@dataclass(frozen=True)
class MetricInputs:
    """What a group computes one method's columns of one batch from."""

    #: the model explained, wrapped once for the run
    vit: VisionTransformer
    #: the method whose maps these are
    method: Method
    #: the batch as the data set gave it (masks, other objects' masks)
    batch: Batch
    #: ``(B, C, H, W)`` pixel values and ``(B,)`` targets on the run's device
    x: Tensor
    t: Tensor
    #: ``(B, H, W)`` the method's maps, and its ``(B, L, H)`` head weights (GMAR) or ``None``
    maps: Tensor
    weights: Tensor | None
    #: the first items of the batch that the metrics which re-run methods score (the rest NaN)
    keep: slice
    #: the class scores the perturbation metrics read (softmax, sigmoid or the similarity)
    score_fn: Callable[[Tensor], Tensor]


class MetricGroup(ABC):
    """A group of metric columns, built once per comparison.

    Subclasses set :attr:`key` and :attr:`columns` and implement :meth:`compute`; one
    that needs the whole batch's state before the methods' maps (e.g. a reference map
    computed once per batch) overrides :meth:`start_batch`.

    Args:
        vit: the model explained.
        methods: the comparison's methods, in order.
        settings: the run's settings (see :class:`~captum_gmar.evaluation.runner.Settings`).
    """

    #: the name ``compare(metrics=...)`` and ``--metrics`` use
    key: ClassVar[str]
    #: the columns it may compute, in the summary's order
    columns: ClassVar[tuple[Column, ...]]

    def __init__(self, vit: VisionTransformer, methods: list[Method], settings: Any) -> None:
        self.vit, self.methods, self.settings = vit, methods, settings
        #: what the comparison explains: a head on an embedding is a similarity
        self.task: Task = "similarity" if isinstance(vit.model, EmbeddingHead) else "classes"
        #: the names of this group's columns defined for the task
        self.wanted = {column.name for column in self.columns if self.task in column.tasks}

    def start_batch(self, x: Tensor, t: Tensor, keep: slice) -> None:  # noqa: B027 (most groups need nothing here)
        """Called once per batch, before the methods' maps are scored."""

    @abstractmethod
    def compute(self, inputs: MetricInputs) -> dict[str, Tensor]:
        """The group's columns for one method's maps of one batch, each ``(B,)`` (NaN where
        a column does not apply to an item), in the order they are written to the results."""
