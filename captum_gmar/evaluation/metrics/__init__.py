"""The metrics of a comparison, one module per property measured, each with its metric
group (:class:`~.base.MetricGroup`: the columns it declares and computes):

- :mod:`.faithfulness`: deletion, insertion and Chefer's perturbation AUCs;
- :mod:`.localisation`: pointing game, mass inside the mask, class sensitivity, Gini index;
- :mod:`.robustness`: Captum's infidelity and sensitivity;
- :mod:`.heads`: GMAR's head weights against head masking;
- :mod:`.sanity` (and :mod:`.invariance`): randomisation and implementation-invariance checks.

:mod:`.registry` lists the groups; a new one is registered with
:func:`register_metric_group` (see ``docs/extending.md``).
"""

from .base import Column, MetricGroup, MetricInputs
from .registry import metric_columns, metric_group, metric_keys, register_metric_group

__all__ = ["Column", "MetricGroup", "MetricInputs", "metric_columns", "metric_group", "metric_keys", "register_metric_group"]
