"""The metric groups a comparison can compute: the built-in ones of
:data:`~captum_gmar.names.METRIC_GROUPS` (imported when used) and those registered with
:func:`register_metric_group`::

    from captum_gmar.evaluation.metrics import Column, MetricGroup, register_metric_group

    @register_metric_group
    class MapMaximum(MetricGroup):
        key = "maximum"
        columns = (Column("map_maximum", "Largest value of the map"),)

        def compute(self, inputs):
            return {"map_maximum": inputs.maps.flatten(1).amax(1)}

    compare(model, data, metrics=["faithfulness", "maximum"])
"""

from __future__ import annotations

import importlib

from ...names import METRIC_GROUPS
from .base import Column, MetricGroup, Task

__all__ = ["metric_columns", "metric_group", "metric_keys", "register_metric_group"]

_REGISTERED: dict[str, type[MetricGroup]] = {}


def register_metric_group(group: type[MetricGroup]) -> type[MetricGroup]:
    """Add ``group`` to the groups a comparison can compute, under its ``key`` (usable as a
    class decorator; returns the class).

    Raises:
        TypeError: ``group`` is not a :class:`MetricGroup` subclass with a ``key`` and ``columns``.
        ValueError: its key or one of its columns is taken by another group.
    """
    if not (isinstance(group, type) and issubclass(group, MetricGroup)) or not getattr(group, "key", None):
        raise TypeError(f"a metric group is a MetricGroup subclass with a key and columns, got {group!r}")
    taken = {column.name for key in metric_keys() if key != group.key for column in metric_group(key).columns}
    clash = [column.name for column in group.columns if column.name in taken]
    if group.key in METRIC_GROUPS or clash:
        raise ValueError(f"metric group {group.key!r}: {'its key' if group.key in METRIC_GROUPS else f'column {clash[0]!r}'} is taken")
    _REGISTERED[group.key] = group
    return group


def metric_keys() -> tuple[str, ...]:
    """The keys of every group, built-in first, in the order their columns are written."""
    return (*METRIC_GROUPS, *_REGISTERED)


def metric_group(key: str) -> type[MetricGroup]:
    """The group class of ``key``.

    Raises:
        ValueError: naming the known keys.
    """
    if key in _REGISTERED:
        return _REGISTERED[key]
    if key not in METRIC_GROUPS:
        raise ValueError(f"unknown metric group {key!r}; choose from {', '.join(metric_keys())}")
    module, name = METRIC_GROUPS[key].split(":")
    group: type[MetricGroup] = getattr(importlib.import_module(module), name)
    return group


def metric_columns(task: Task | None = None) -> dict[str, Column]:
    """Every group's columns, in the summary's order, name -> :class:`Column`; with
    ``task``, only those defined for it."""
    return {column.name: column for key in metric_keys() for column in metric_group(key).columns if task is None or task in column.tasks}
