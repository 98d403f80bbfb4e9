"""What a comparison computes: :class:`Settings`, the one declaration of a run's settings,
their defaults and their checks.

:func:`~captum_gmar.evaluation.runner.compare` takes them, a resumed run must match them
(they are saved beside its results), and the command line's defaults are read from here.
torch-free, so that ``captum-gmar --help`` can show the defaults at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..names import ABLATION_KINDS, DEFAULT_METRIC_KEYS, METHOD_KEYS, METRIC_KEYS, RELEVANCE_MAPS

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """What a comparison computes (see :func:`~captum_gmar.evaluation.runner.compare`).

    Sequences may be given as lists; they are kept as tuples. Every value is checked here,
    so that a mistake fails before any model runs.

    Raises:
        ValueError: an unknown method, metric group, ablation, baseline or relevance map;
            a count out of range; an ablation without ``gmar-l1`` and ``rollout``.
    """

    #: keys of :data:`~captum_gmar.names.METHOD_KEYS`
    methods: tuple[str, ...] = METHOD_KEYS
    #: groups of :data:`~captum_gmar.names.METRIC_KEYS`. ``"localisation"`` scores the
    #: items that have a mask (NaN for the others); class sensitivity needs an
    #: ``other_mask`` too. ``"robustness"`` (Captum's infidelity and sensitivity_max, which
    #: re-run the method) is limited to the first ``robustness_limit`` items; ``"heads"``
    #: scores GMAR's head weights; ``"sanity"`` (:mod:`~captum_gmar.evaluation.metrics.sanity`, also
    #: on the first ``robustness_limit`` items) correlates each map with attention
    #: rollout's and with the same method's on the model with its classifier head, or its
    #: last block, re-initialised, measures how much each map changes when every head is
    #: rescaled without changing the function (``invariance``, see
    #: :mod:`~captum_gmar.evaluation.metrics.invariance`), and gives GMAR's head-weight entropy and
    #: the share of its weights' deviation from uniform that changes with the explained
    #: class (every class explained: one more backward pass per class).
    metrics: tuple[str, ...] = DEFAULT_METRIC_KEYS
    #: explanations per batch (IG's steps are split by ``ig_internal_batch_size``)
    batch_size: int = 32
    #: the robustness and sanity metrics score the first this many items
    robustness_limit: int = 100
    #: IntegratedGradients' steps
    ig_steps: int = 50
    #: images per IG pass (``None``: every step of the batch at once)
    ig_internal_batch_size: int | None = None
    #: steps of the deletion and insertion curves
    deletion_steps: int = 16
    #: seeds torch and the robustness metrics' noise, so a run is reproducible
    seed: int = 0
    #: kinds of :mod:`~captum_gmar.evaluation.diagnostics.ablation` (``"layers"``, ``"heads"``): GMAR
    #: (L1) with one layer's head weights uniform, or with only one head's weight its own,
    #: added as methods scored like the others (the randomisation columns aside); needs
    #: ``gmar-l1`` and ``rollout`` among ``methods``, to pair them with
    #: (:func:`~.report.ablation_table`)
    ablation: tuple[str, ...] = ()
    #: ``"blur"`` or ``"zero"`` (the mean image, in normalised pixels): what the deletion
    #: curve replaces the pixels with and the insertion curve starts from (see
    #: :func:`~.metrics.faithfulness.deletion_auc`). A similarity keeps most of its value on a
    #: blurred image, so ``"zero"`` suits it better.
    baseline: str = "blur"
    #: how AttnLRP's and CP-LRP's signed relevance becomes their map: ``"positive"``,
    #: ``"signed"`` or ``"abs"`` (see :func:`~.methods.build_methods`)
    relevance_map: str = "positive"

    def __post_init__(self) -> None:
        for name in ("methods", "metrics", "ablation"):  # a list given, as JSON reads it back
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if any(m not in METRIC_KEYS for m in self.metrics):  # or a group registered in this process (the registry needs torch)
            from .metrics.registry import metric_keys

            unknown = [m for m in self.metrics if m not in metric_keys()]
            if unknown:
                raise ValueError(f"unknown metric group(s) {', '.join(unknown)}; choose from {', '.join(metric_keys())}")
        if any(m not in METHOD_KEYS for m in self.methods):  # or a method registered in this process
            from .methods import method_keys

            unknown = [m for m in self.methods if m not in method_keys()]
            if unknown:
                raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(method_keys())}")
        if not self.methods:
            raise ValueError(f"unknown method(s) (none given); choose from {', '.join(METHOD_KEYS)}")
        for name, least in (("batch_size", 1), ("robustness_limit", 0), ("ig_steps", 1), ("deletion_steps", 1), ("seed", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if self.ig_internal_batch_size is not None and self.ig_internal_batch_size < 1:
            raise ValueError(f"ig_internal_batch_size must be at least 1 (or None), got {self.ig_internal_batch_size}")
        unknown = [k for k in self.ablation if k not in ABLATION_KINDS]
        if unknown:
            raise ValueError(f"unknown ablation(s) {', '.join(unknown)}; choose from {', '.join(ABLATION_KINDS)}")
        if self.baseline not in ("blur", "zero"):
            raise ValueError(f"baseline must be 'blur' or 'zero', got {self.baseline!r}")
        if self.relevance_map not in RELEVANCE_MAPS:
            raise ValueError(f"relevance_map must be one of {', '.join(RELEVANCE_MAPS)}, got {self.relevance_map!r}")
        if self.ablation and not {"gmar-l1", "rollout"} <= set(self.methods):
            raise ValueError("an ablation is paired with GMAR (L1) and attention rollout: the methods must include gmar-l1 and rollout")
