"""Module paths that moved when the package was laid out by role, kept importable.

``import captum_gmar.evaluation.faithfulness`` (an old path, as earlier code and notebooks
have it) gives the module at its new path, ``captum_gmar.evaluation.metrics.faithfulness``:
the same module object, imported only when asked for. :data:`MOVED` is the one list of
such paths; new code uses the new ones.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

#: old dotted path -> the module's path now
MOVED: dict[str, str] = {
    "captum_gmar.evaluation.files": "captum_gmar.files",
    "captum_gmar.attribution": "captum_gmar.methods.base",
    "captum_gmar.gmar": "captum_gmar.methods.gmar",
    "captum_gmar.attention_rollout": "captum_gmar.methods.attention_rollout",
    "captum_gmar.gae": "captum_gmar.methods.gae",
    "captum_gmar.gradcam": "captum_gmar.methods.gradcam",
    "captum_gmar.lrp": "captum_gmar.methods.lrp",
    "captum_gmar.raw_attention": "captum_gmar.methods.raw_attention",
    "captum_gmar.rollout": "captum_gmar.core.rollout",
    "captum_gmar.maps": "captum_gmar.core.maps",
    "captum_gmar.lrp_rules": "captum_gmar.core.lrp_rules",
    "captum_gmar.formatting": "captum_gmar.core.formatting",
    "captum_gmar.memory": "captum_gmar.core.memory",
    "captum_gmar.architectures": "captum_gmar.vit.architectures",
    "captum_gmar.capture": "captum_gmar.vit.capture",
    "captum_gmar.models": "captum_gmar.vit.model",
    "captum_gmar.model_state": "captum_gmar.vit.model_state",
    "captum_gmar.propagation": "captum_gmar.vit.propagation",
    "captum_gmar.zero_shot": "captum_gmar.vit.zero_shot",
    "captum_gmar.similarity": "captum_gmar.vit.similarity",
    "captum_gmar.datasets": "captum_gmar.imagedata",
    "captum_gmar.evaluation.faithfulness": "captum_gmar.evaluation.metrics.faithfulness",
    "captum_gmar.evaluation.localisation": "captum_gmar.evaluation.metrics.localisation",
    "captum_gmar.evaluation.robustness": "captum_gmar.evaluation.metrics.robustness",
    "captum_gmar.evaluation.sanity": "captum_gmar.evaluation.metrics.sanity",
    "captum_gmar.evaluation.invariance": "captum_gmar.evaluation.metrics.invariance",
    "captum_gmar.evaluation.head_importance": "captum_gmar.evaluation.diagnostics.head_importance",
    "captum_gmar.evaluation.head_profile": "captum_gmar.evaluation.diagnostics.head_profile",
    "captum_gmar.evaluation.weight_decomposition": "captum_gmar.evaluation.diagnostics.weight_decomposition",
    "captum_gmar.evaluation.ablation": "captum_gmar.evaluation.diagnostics.ablation",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path of :data:`MOVED` and loads it as the module at its new path."""

    def __init__(self) -> None:
        #: old path -> the module's own spec, between create_module and exec_module
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[spec.name] = module.__spec__  # the import system sets the old path's spec on it next
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__spec__.name if module.__spec__ else "", module.__spec__)  # its own spec back


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
